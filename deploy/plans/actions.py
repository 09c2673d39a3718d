"""A plan: the ordered actions a run will carry out, each printable. Dry runs print them; runs execute
them (deploy/execute.py), the same list either way."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# op: (what a plan says, what the run says once done); {target} is the action's target.
WORDS = {
    "scale-in": ("size group {target} 0", "sized group {target} 0"),
    "keep-group": ("keep group {target}", "kept group {target}"),
    "delete-group": ("delete group {target}", "deleted group {target}"),
    "delete-target-group": ("delete target group {target}", "deleted target group {target}"),
    "delete-launch-template": ("delete launch template {target}", "deleted launch template {target}"),
    "delete-launch-configuration": ("delete launch configuration {target}", "deleted launch configuration {target}"),
    "delete-image": (
        "deregister image {target} and delete its snapshots",
        "deregistered image {target} and deleted its snapshots",
    ),
    "delete-record": ("delete DNS record {target}", "deleted DNS record {target}"),
    "delete-load-balancer": ("delete load balancer {target}", "deleted load balancer {target}"),
    "delete-security-group": ("delete security group {target}", "deleted security group {target}"),
    "delete-key-pair": ("delete key pair {target}", "deleted key pair {target}"),
    "terminate-instance": ("terminate instance {target}", "terminated instance {target}"),
    "delete-snapshot": ("delete snapshot {target}", "deleted snapshot {target}"),
    "delete-file": ("delete local file {target}", "deleted local file {target}"),
    "keep": ("keep {target}", "kept {target}"),
    "refuse": ("retire nothing: {target}", "Not retiring anything: {target}"),
}


@dataclass(frozen=True)
class Action:
    """One step of a plan: OP on TARGET. `keep` only explains what is left alone and why; `refuse` stops the
    plan before anything is done (the detail says why)."""

    op: str
    target: str
    detail: str = ""
    data: tuple[tuple[str, Any], ...] = ()

    def line(self) -> str:
        """As a plan says it: "delete launch template lt-… (detail)"."""
        return WORDS[self.op][0].format(target=self.target) + (f" ({self.detail})" if self.detail else "")

    def done(self) -> str:
        """As the run says it once done: "deleted launch template lt-…"."""
        return WORDS[self.op][1].format(target=self.target)

    def get(self, key: str) -> Any:
        return dict(self.data).get(key)

    @property
    def changes(self) -> bool:
        return self.op not in ("keep", "refuse")


def would(actions: Iterable[Action]) -> list[str]:
    """A plan as a dry run says it: "would retire group …", "would keep image … (why)"."""
    return [f"would {action.line()}" for action in actions]


def numbered(actions: list[Action]) -> list[str]:
    """The changes numbered in order, then what is kept and why (destroy's listing)."""
    changes = [a for a in actions if a.changes]
    lines = [f"{number:2d}. {action.line()}" for number, action in enumerate(changes, start=1)]
    lines += [f"    {action.line()}" for action in actions if not action.changes]
    return lines
