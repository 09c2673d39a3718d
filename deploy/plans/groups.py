"""Which group serves, which are outdated, the next group's stamp, and what a rollback returns to."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from deploy.naming import MANAGED_BY, Names, stamp
from deploy.plans.model import DEPLOYED_TAG, PROMOTED_TAG, Group, Image


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
    """The group that serves: the newest one this tool promoted (tag Promoted, set once it was healthy).

    Newest by the stamp of its name: the Promoted tag only marks a group as promoted; its value (the
    promoting machine's time) never orders. When none is, an environment made by the original scripts is
    being adopted: its newest group with instances (one without this tool's ManagedBy tag) serves. A group
    this tool launched but never promoted never counts: it is the leftover of a deploy that failed or was killed.
    """
    promoted = [group for group in groups if group.tags.get(PROMOTED_TAG)]
    if promoted:
        return max(promoted, key=launch_order)
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
