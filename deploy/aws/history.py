"""The deploy history of an environment, kept in the account: one SSM parameter per entry.

Every deploy, rollback and abort writes `/immutable-deploy/STACK/history/STAMP-PID` (a String parameter,
JSON: UTC time, user@host, action, image, group, outcome, duration, whether the image was given by hand,
and the tool's version). Any machine reads the same history: `inv history` shows it, `inv rollback` picks
from it, and cleanup and destroy never delete an image an entry marks as promoted by hand. The newest
HISTORY_KEEP entries are kept; older ones are deleted when an entry is written.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

from deploy import __version__
from deploy.aws.clients import collect, or_none
from deploy.config import ROOT
from deploy.environment import Environment

HISTORY_KEEP = 200  # entries kept per environment (SSM standard parameters cost nothing)
PROMOTED = "promoted"
ABORTED = "aborted"


def history_path(stack: str) -> str:
    return f"/immutable-deploy/{stack}/history"


@cache
def tool_version() -> str:
    """The package version plus a digest of the tool's code (deploy/**/*.py): two checkouts of one commit say
    the same, with or without git (a CI runner's export), and a locally changed tool says so."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "deploy").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:10]}"


def entry(
    action: str, outcome: str, image: str | None, group: str | None, seconds: float, by_hand: bool, detail: str = ""
) -> dict[str, Any]:
    """One history entry, as written (its time is now, in UTC)."""
    return {
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "by": f"{getpass.getuser()}@{socket.gethostname()}",
        "action": action,
        "outcome": outcome,
        "image": image,
        "group": group,
        "seconds": round(seconds, 1),
        "by_hand": by_hand,
        "detail": detail,
        "version": tool_version(),
    }


def record(environment: Environment, item: dict[str, Any]) -> None:
    """Write one entry (named by its time and this process, so two runs never write the same name)."""
    ssm = environment.aws.client("ssm")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    name = f"{history_path(environment.names.stack)}/{stamp}-{os.getpid()}"
    ssm.put_parameter(Name=name, Value=json.dumps(item, sort_keys=True), Type="String", Overwrite=False)
    _prune(environment)


def _parameters(environment: Environment) -> list[dict[str, Any]]:
    ssm = environment.aws.client("ssm")
    return collect(ssm, "get_parameters_by_path", "Parameters", Path=history_path(environment.names.stack))


def read_history(environment: Environment) -> list[dict[str, Any]]:
    """Every entry, newest first (names sort by time); an unreadable value is skipped."""
    entries = []
    for parameter in sorted(_parameters(environment), key=lambda p: p["Name"], reverse=True):
        try:
            value = json.loads(parameter["Value"])
        except ValueError:
            continue
        if isinstance(value, dict):
            entries.append({**value, "name": parameter["Name"].rsplit("/", 1)[-1]})
    return entries


def _prune(environment: Environment) -> None:
    ssm = environment.aws.client("ssm")
    names = sorted((p["Name"] for p in _parameters(environment)), reverse=True)
    for name in names[HISTORY_KEEP:]:
        or_none(partial(ssm.delete_parameter, Name=name))


def promoted_by_hand(entries: list[dict[str, Any]]) -> set[str]:
    """Pure: the images any entry marks as promoted by hand (given with --image-id): never deleted."""
    return {str(e["image"]) for e in entries if e.get("by_hand") and e.get("outcome") == PROMOTED and e.get("image")}


def promoted_images(entries: list[dict[str, Any]]) -> list[str]:
    """Pure: the images promoted, newest first, each once."""
    seen: list[str] = []
    for item in entries:
        image = item.get("image")
        if item.get("outcome") == PROMOTED and image and image not in seen:
            seen.append(str(image))
    return seen
