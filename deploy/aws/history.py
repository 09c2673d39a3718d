"""The deploy history of an environment, kept in the account: the versions of one SSM parameter.

Every deploy, rollback and abort writes its entry as a new version of `/immutable-deploy/STACK/history` (a
String parameter, JSON: UTC time, user@host, action, image, group, outcome, duration, whether the image was
given by hand, the tool's version and a detail): one PutParameter with Overwrite=True, nothing read first.
Writers of one environment never race: each holds its deploy lock (an abort is written by the run that holds
it). Any machine reads the same history (GetParameterHistory, oldest first, 50 versions a page; shown newest
first): `inv history` shows it, `inv rollback` picks from it, and destroy never deletes an image an entry
marks as promoted by hand.

HISTORY_KEEP = 100 is AWS's own limit: SSM keeps the last 100 versions of a parameter and drops the oldest
itself when a new one is written (so does the embedded cloud), so keeping the history bounded costs no
request. An entry read back carries `name`: its version of the parameter (1, 2, ...; it only grows), a
stable key for that entry.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
from datetime import UTC, datetime
from functools import cache
from typing import Any

from deploy import __version__
from deploy.aws.clients import collect, or_none
from deploy.aws.context import AwsContext
from deploy.settings import ROOT

HISTORY_KEEP = 100  # entries kept per environment: the versions AWS keeps of one parameter (it drops older ones)
MAX_VALUE = 4096  # bytes of a standard String parameter's value
PROMOTED = "promoted"
ABORTED = "aborted"


def history_parameter(stack: str) -> str:
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
    action: str,
    outcome: str,
    image: str | None,
    group: str | None,
    seconds: float,
    by_hand: bool,
    detail: str = "",
    steps: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One history entry, as written (its time is now, in UTC). STEPS: the traffic steps' figures and decisions
    (shift-traffic's), kept as `steps` when there were any."""
    extra: dict[str, Any] = {"steps": [history_step(step) for step in steps]} if steps else {}
    return {
        **extra,
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


def record(environment: AwsContext, item: dict[str, Any]) -> None:
    """Write one entry: a new version of the history parameter, one request whatever the history's length (AWS
    drops the oldest version beyond HISTORY_KEEP)."""
    ssm = environment.aws.client("ssm")
    ssm.put_parameter(
        Name=history_parameter(environment.names.stack), Value=_value(item), Type="String", Overwrite=True
    )


STEP_KEYS = ("step", "steps", "weight", "requests", "errors", "error_rate", "p99_ms", "outcome", "reasons")


def history_step(step: dict[str, Any]) -> dict[str, Any]:
    """A traffic step as the history keeps it (StepDecision.record() without what the entry says already)."""
    return {key: step[key] for key in STEP_KEYS if key in step}


def _value(item: dict[str, Any]) -> str:
    """ITEM as JSON (ASCII), its detail (an abort's reason) shortened if the whole would not fit a value; then, if
    it still would not, its first traffic steps dropped (the last ones, the decisive, are kept)."""
    value = json.dumps(item, sort_keys=True)
    while len(value) > MAX_VALUE and len(item.get("steps") or []) > 1:
        item = {**item, "steps": item["steps"][1:]}
        value = json.dumps(item, sort_keys=True)
    detail = str(item.get("detail") or "")
    while len(value) > MAX_VALUE and detail:
        detail = detail[: max(0, len(detail) - (len(value) - MAX_VALUE) - 3)]
        value = json.dumps({**item, "detail": detail + "..."}, sort_keys=True)
    return value


def read_history(environment: AwsContext) -> list[dict[str, Any]]:
    """Every entry, newest first, each with its version as `name`; an unreadable value is skipped. At most
    HISTORY_KEEP / 50 = 2 requests; none written yet: []."""
    ssm = environment.aws.client("ssm")
    name = history_parameter(environment.names.stack)
    versions = or_none(lambda: collect(ssm, "get_parameter_history", "Parameters", Name=name, MaxResults=50))
    entries = []
    for version in sorted(versions or [], key=lambda v: int(v["Version"]), reverse=True):
        try:
            value = json.loads(version["Value"])
        except ValueError:
            continue
        if isinstance(value, dict):
            entries.append({**value, "name": int(version["Version"])})
    return entries


def promoted_images(entries: list[dict[str, Any]]) -> list[str]:
    """Pure: the images promoted, newest first, each once."""
    seen: list[str] = []
    for item in entries:
        image = item.get("image")
        if item.get("outcome") == PROMOTED and image and image not in seen:
            seen.append(str(image))
    return seen
