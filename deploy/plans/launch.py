"""What launch-asg does: reuse an earlier run's unpromoted group of the very same image, or remove that
leftover and create a new template and group named after a stamp later than every group there is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploy.naming import Names
from deploy.plans.actions import Action
from deploy.plans.model import PROMOTED_TAG, Group


@dataclass(frozen=True)
class LaunchPlan:
    group: str  # the new group: the reused leftover, or one to create
    launch_template: str
    reused: bool  # the leftover of an earlier run is the new group; nothing is created
    remove_first: tuple[Action, ...] = ()  # the leftover of an earlier run, removed before anything is created


def plan_abort(pending: dict[str, Any], raw_group: dict[str, Any] | None, served: bool = False) -> list[Action]:
    """Remove a new group that never became healthy, and its launch template. Never one that was promoted
    (a run killed right after promoting it lost that record): it serves, so nothing is removed. SERVED: some of
    its instances were InService at the load balancer (they took live requests), so it drains before deletion."""
    if raw_group is not None and Group.from_aws(raw_group).tags.get(PROMOTED_TAG):
        return []
    actions = []
    if raw_group is not None:
        detail = "never promoted; it served, so it drains first" if served else "never promoted"
        actions.append(Action("delete-group", pending["group"], detail, (("drain", served),)))
    return [*actions, Action("delete-launch-template", pending["launch_template"])]


def plan_launch(
    names: Names,
    stamp: str,
    image_id: str | None,
    leftover: dict[str, Any] | None,
    leftover_raw: dict[str, Any] | None,
    leftover_served: bool = False,
) -> LaunchPlan:
    """LEFTOVER: the pending launch an earlier run recorded (LEFTOVER_RAW: its group as AWS describes it, None
    when gone); STAMP: later than every group of the environment, the leftover included (names only increase)."""
    if leftover and leftover_raw is not None and image_id and leftover.get("image_id") == image_id:
        promoted = Group.from_aws(leftover_raw).tags.get(PROMOTED_TAG)
        if not promoted:
            return LaunchPlan(leftover["group"], leftover["launch_template"], reused=True)
    remove = tuple(plan_abort(leftover, leftover_raw, leftover_served)) if leftover else ()
    return LaunchPlan(names.group(stamp), names.launch_template(stamp), reused=False, remove_first=remove)
