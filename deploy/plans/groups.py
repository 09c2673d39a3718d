"""Which group serves, which are outdated, the next group's stamp, and what a rollback returns to."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from deploy.naming import MANAGED_BY, Names, stamp
from deploy.plans.model import DEPLOYED_TAG, IN_SERVICE, PROMOTED_TAG, RETIRE_AT_TAG, ROLLED_BACK_TAG, Group, Image


def next_stamp(now: datetime, taken: list[str], names: Names) -> str:
    """A stamp later than any of this environment's groups: two launches in one second never collide."""
    suffixes = (name[len(names.group_prefix) :] for name in taken if names.owns(name, names.group_prefix))
    # Only stamps order: an old-script suffix such as "v2" must not make every stamp look too early.
    latest = max((suffix for suffix in suffixes if re.fullmatch(r"\d{14}", suffix)), default="")
    candidate = now
    while stamp(candidate) <= latest or names.group(stamp(candidate)) in taken:
        candidate += timedelta(seconds=1)
    return stamp(candidate)


def name_stamp(name: str) -> str:
    """The YYYYmmddHHMMSS stamp that ends a group's name ('' for another suffix, such as the old scripts' v2)."""
    found = re.search(r"-(\d{14})$", name)
    return found.group(1) if found else ""


def launch_order(group: Group) -> tuple[str, str]:
    """Groups ordered as they were launched: by the stamp of their name, which the tool makes increase
    (next_stamp), never by a clock tag: two operators' clocks may disagree, the names cannot."""
    return (name_stamp(group.name), group.name)


def serving_group(groups: list[Group]) -> Group | None:
    """The group that serves: the newest one this tool promoted (tag Promoted, set once it was healthy), not rolled
    back (tag RolledBack) and not scaled in.

    Newest by the stamp of its name: the Promoted tag only marks a group as promoted; its value (the
    promoting machine's time) never orders. When none is, an environment made by the original scripts is
    being adopted: its newest group with instances (one without this tool's ManagedBy tag) serves. A group
    this tool launched but never promoted never counts: it is the leftover of a deploy that failed or was killed.
    """
    promoted = [group for group in groups if group.tags.get(PROMOTED_TAG) and not group.tags.get(ROLLED_BACK_TAG)]
    # A promoted group scaled in (a retirement of the group after it, rolled back) never serves again: a run killed
    # after it scaled in a newer group's predecessor cannot make that one serve.
    alive = [group for group in promoted if not group.scaled_in]
    if alive or promoted:
        return max(alive or promoted, key=launch_order)
    legacy = [group for group in groups if group.desired > 0 and group.tags.get("ManagedBy") != MANAGED_BY]
    return max(legacy, key=launch_order, default=None)


def outdated_groups(groups: list[Group], keep: set[str]) -> list[Group]:
    """Every group of the environment except those to keep, oldest first."""
    return sorted((group for group in groups if group.name not in keep), key=launch_order)


def rollback_target(images: list[Image], serving_image: str | None) -> str | None:
    """The most recently deployed image other than the one serving now."""
    deployed = [
        (image.tag(DEPLOYED_TAG), image.id) for image in images if image.tag(DEPLOYED_TAG) and image.id != serving_image
    ]
    return max(deployed)[1] if deployed else None


def window_end(group: Group) -> str:
    """When GROUP's window ends (its RetireAt tag, UTC ISO 8601: orders as text); '' when it has none."""
    return group.tags.get(RETIRE_AT_TAG, "")


def kept_group(
    groups: list[Group], serving: str | None, now: str, windows: dict[str, str] | None = None
) -> Group | None:
    """The group kept for its window: the newest other than SERVING whose window (its RetireAt tag, or WINDOWS: a
    dry run's promotion to come) ends after NOW, not rolled back and not scaled in. Only one: a group an earlier
    window still keeps is scaled in once a newer group was promoted after it."""
    windows = windows or {}
    candidates = [
        group
        for group in groups
        if group.name != serving
        and (windows.get(group.name) or window_end(group)) > now
        and not group.tags.get(ROLLED_BACK_TAG)
        and not group.scaled_in
    ]
    return max(candidates, key=launch_order, default=None)


@dataclass(frozen=True)
class WeightRollback:
    """`inv rollback` within the window: every request back to the kept group (still healthy, at full capacity), the
    group serving now retired. No launch, no bake, no health wait."""

    serving: Group  # rolled back: tagged RolledBack, sized 0 once it has no request left
    previous: Group  # the kept group: its scheduled retirement deleted first, then it takes every request

    def lines(self) -> list[str]:
        image = self.previous.image_id or "its image"
        return [
            f"rollback: would delete the scheduled retirement of {self.previous.name} (kept until"
            f" {window_end(self.previous)})",
            f"rollback: would mark {self.serving.name} rolled back, send every request to {self.previous.name}"
            f" ({image}), then size {self.serving.name} 0 (AWS drains and terminates its instances)",
        ]


def weight_rollback(groups: list[Group], now: str, to: str | None = None) -> tuple[WeightRollback | None, str]:
    """The rollback by weight when the window allows it, else None and why not (then it is today's path: launch the
    earlier image). TO: the image asked for (--to): only the kept group's image is a weight change."""
    serving = serving_group(groups)
    if serving is None:
        return None, "no group serves"
    previous = kept_group(groups, serving.name, now)
    if previous is None:
        return None, "no earlier group is kept (its window is over, or KEEP_PREVIOUS_SECONDS is 0)"
    if to is not None and to != previous.image_id:
        return None, f"the kept group {previous.name} runs {previous.image_id}, not {to}"
    ready = [member for member in previous.members if member.lifecycle == IN_SERVICE and member.health == "Healthy"]
    if not ready or len(ready) < previous.desired:
        return None, f"the kept group {previous.name} has {len(ready)}/{previous.desired} instances in service"
    return WeightRollback(serving, previous), ""
