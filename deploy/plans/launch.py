"""What launch-asg does: reuse an earlier run's unpromoted group of the very same image, or remove that
leftover and create a new template and group named after a stamp later than every group there is."""

from __future__ import annotations

from dataclasses import dataclass

from deploy.naming import Names
from deploy.plans.actions import Action
from deploy.plans.model import PROMOTED_TAG, Group
from deploy.plans.pending import Pending


@dataclass(frozen=True)
class LaunchPlan:
    group: str  # the new group: the reused leftover, or one to create
    launch_template: str
    reused: bool  # the leftover of an earlier run is the new group; nothing is created
    remove_first: tuple[Action, ...] = ()  # the leftover of an earlier run, removed before anything is created


def plan_abort(pending: Pending, group: Group | None, served: bool = False) -> list[Action]:
    """Remove a new group that never became healthy, and its launch template. Never one that was promoted
    (a run killed right after promoting it lost that record): it serves, so nothing is removed. SERVED: some of
    its instances were InService at the load balancer (they took live requests), so it drains before deletion."""
    if group is not None and group.tags.get(PROMOTED_TAG):
        return []
    actions = []
    if group is not None:
        detail = "never promoted; it served, so it drains first" if served else "never promoted"
        actions.append(Action("delete-group", pending.group, detail, (("drain", served),)))
    template = [Action("delete-launch-template", pending.launch_template)] if pending.launch_template else []
    # Its own target group (an ALB; not the earlier layout's shared tg-NAME), out of the listeners first.
    names = [
        arn.split(":targetgroup/", 1)[-1].split("/", 1)[0]
        for arn in (group.raw if group else {}).get("TargetGroupARNs", [])
    ]
    own = [
        Action("delete-target-group", name, "out of the listeners first")
        for name in names
        if not name.startswith("tg-")
    ]
    return [*actions, *template, *own]


def plan_launch(
    names: Names,
    stamp: str,
    image_id: str | None,
    leftover: Pending | None,
    leftover_group: Group | None,
    leftover_served: bool = False,
) -> LaunchPlan:
    """LEFTOVER: the pending launch an earlier run recorded (LEFTOVER_GROUP: its group as AWS describes it, None
    when gone); STAMP: later than every group of the environment, the leftover included (names only increase)."""
    same = leftover is not None and image_id is not None and leftover.image_id == image_id
    if leftover and same and leftover_group is not None and not leftover_group.tags.get(PROMOTED_TAG):
        return LaunchPlan(leftover.group, leftover.launch_template or "", reused=True)
    remove = tuple(plan_abort(leftover, leftover_group, leftover_served)) if leftover else ()
    return LaunchPlan(names.group(stamp), names.launch_template(stamp), reused=False, remove_first=remove)
