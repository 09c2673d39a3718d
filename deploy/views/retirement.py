"""What `inv status` says of retirements (issue 20): a group's window, its scheduled retirement, its instances AWS
drains, and what the next run deletes. Pure: from what deploy/views/status.py read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploy.plans.model import RETIRE_AT_TAG, ROLLED_BACK_TAG

NextRun = Callable[[Any], list[str]]  # the environment → what the next run would size 0 or delete, as its plan says


def retirement_fields(
    tags: dict[str, str], serving: bool, scheduled: str | None, instances: list[dict[str, Any]]
) -> dict[str, Any]:
    """A group's entry's retirement keys: the end of its window (RetireAt; none for the serving group), its scheduled
    action's time as AWS holds it, its instances AWS is deregistering, draining and terminating, rolled back."""
    return {
        "window_end": None if serving else tags.get(RETIRE_AT_TAG),
        "scheduled": scheduled,
        "draining": sum(1 for i in instances if str(i["lifecycle"]).startswith("Terminating")),
        "rolled_back": bool(tags.get(ROLLED_BACK_TAG)),
    }


def retirement_text(group: dict[str, Any]) -> str:
    """Where a group not serving is in its retirement (kept, scheduled, draining, rolled back)."""
    parts = ["rolled back"] if group.get("rolled_back") else []
    if group.get("window_end") and group.get("max") != 0:
        parts.append(f"kept until {group['window_end']}")
    if group.get("scheduled"):
        parts.append(f"sized 0 at {group['scheduled']} (scheduled)")
    if group.get("max") == 0:
        draining = group.get("draining") or 0
        parts.append(
            f"retiring: {draining} instance(s) draining" if group.get("instances") else "empty: deleted next run"
        )
    return ", ".join(parts)


def retirement_lines(status: dict[str, Any]) -> list[str]:
    """The table's lines: the window `inv rollback` can use, and what the next run deletes."""
    window = status.get("window")
    lines = []
    if window:
        lines.append(
            f"window         {window['group']} kept until {window['ends']}: `inv rollback` moves the traffic back"
        )
    return lines + [f"next run       would {line}" for line in status.get("next_run") or []]
