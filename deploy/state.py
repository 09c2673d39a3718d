"""A small per-environment note file under deploy/state/: what one step of a run hands the next.

A cache, never trusted over the account: every decision (what is reused, kept, deleted or rolled back to) is
read from AWS, so a fresh clone or another machine decides the same; every recorded id is checked before use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from deploy.config import work_dir
from deploy.errors import DeployError

# Its entries (bake-primal and bake-carnivore also note their image under the role's name, primal/carnivore):
STAGED = "staged"  # the folder copy-over staged for this run and its digest
PROTECTED = "protected_images"  # images given by hand (a cache: their GivenByHand tag in the account decides)


class State:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.is_file():
            try:
                self.data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.data = {}  # a damaged cache only costs a rebuild

    @classmethod
    def for_env(cls, env: str) -> State:
        return cls(work_dir() / "deploy" / "state" / f"{env}.json")

    def get(self, key: str) -> dict[str, Any] | None:
        value = self.data.get(key)
        return value if isinstance(value, dict) else None

    def put(self, key: str, value: dict[str, Any] | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value
        if self.path.is_dir():
            raise DeployError(
                f"{self.path} is a folder, not the state file: remove it (the account keeps what matters)."
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            os.replace(temporary, self.path)  # atomic: an interrupted write never leaves half a file
        except OSError as error:
            raise DeployError(
                f"Cannot write {self.path} ({error.strerror or error}): make the work folder writable"
                " (DEPLOY_WORK_DIR), or free some space."
            ) from None
