"""How setup converges a resource: each `ensure_*` compares what exists with what is wanted, once, and hands
every difference to `Changes.make` with the call that fixes it. A real run makes the call and records the
line in the past tense ("created X"); a dry run skips the call and records the same line as "would create X".
So `inv setup --dry-run` says exactly what `inv setup` then does, from the same comparison."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The past tense a change is recorded in, and the verb a dry run says instead.
VERBS = {
    "created": "create",
    "set": "set",
    "attached": "attach",
    "applied": "apply",
    "enabled": "enable",
    "removed": "remove",
    "allowed": "allow",
    "revoked": "revoke",
    "pointed": "point",
    "generated": "generate",
    "imported": "import",
}


class Changes(list[str]):
    """The change lines of one ensure; in a dry run the calls are skipped and each line says "would …"."""

    def __init__(self, dry_run: bool) -> None:
        super().__init__()
        self.dry_run = dry_run

    def make(self, done: str | list[str], call: Callable[[], Any] | None = None, subject: str = "") -> Any:
        """Run CALL and record DONE (past tense: "created X"; a list: one line each, for one call that makes
        several changes), after "SUBJECT: " when given; a dry run records "would create X" instead and returns
        None. No CALL: only what a dry run says (nothing to do yet)."""
        prefix = f"{subject}: " if subject else ""
        lines = [done] if isinstance(done, str) else done
        if self.dry_run or call is None:
            for line in lines:
                verb, _, rest = line.partition(" ")
                self.append(f"{prefix}would {VERBS.get(verb, verb)} {rest}")
            return None
        result = call()
        self.extend(prefix + line for line in lines)
        return result
