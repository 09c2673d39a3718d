"""The new group an earlier launch left waiting (launched by this tool, never promoted), read from the account
itself: wait-health, the next launch, cleanup and a dry run find it from any machine, a fresh clone included."""

from __future__ import annotations

from dataclasses import dataclass

from deploy.naming import MANAGED_BY
from deploy.plans.model import DELETING, PROMOTED_TAG, Group


def unpromoted(groups: list[Group]) -> list[Group]:
    """The groups this tool launched and never promoted (and that are not being deleted), oldest first."""
    found = [
        group
        for group in groups
        if group.tags.get("ManagedBy") == MANAGED_BY and not group.tags.get(PROMOTED_TAG) and group.status != DELETING
    ]
    return sorted(found, key=lambda group: group.name)


@dataclass(frozen=True)
class Pending:
    """A group launch-asg launched and nobody promoted yet, as its tags describe it."""

    group: str
    launch_template: str | None
    image_id: str | None


def pending_launch(groups: list[Group]) -> Pending | None:
    """The newest unpromoted group as launch-asg described it."""
    waiting = unpromoted(groups)
    if not waiting:
        return None
    newest = waiting[-1]
    return Pending(newest.name, newest.launch_template, newest.image_id)
