"""`inv history`: the environment's deploys, rollbacks and aborts as the account records them, newest first (the
newest 100: deploy/aws/history.py). Each JSON entry's `name` is its version of the history parameter."""

from __future__ import annotations

import json
from typing import Any

from deploy.aws.history import read_history
from deploy.environment import Environment

VERSION = 1
COLUMNS = ("time", "action", "outcome", "image", "group", "seconds", "by", "version")


def render_history(entries: list[dict[str, Any]]) -> str:
    """A table of ENTRIES (already newest first); a hand-given image is marked with `(by hand)`."""
    if not entries:
        return "no deploys recorded yet\n"
    rows = [list(COLUMNS)]
    for item in entries:
        row = [str(item.get(column) if item.get(column) is not None else "-") for column in COLUMNS]
        if item.get("by_hand"):
            row[3] += " (by hand)"
        if item.get("detail"):
            row[2] += f": {item['detail']}"
        if item.get("steps"):
            row[2] += f" [{steps_text(item['steps'])}]"
        rows.append(row)
    widths = [max(len(row[index]) for row in rows) for index in range(len(COLUMNS))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n" for row in rows
    )


def steps_text(steps: list[dict[str, Any]]) -> str:
    """The traffic steps of an entry, one after the other: `10 % 62 requests 0.0 % 5xx p99 4 ms ok; …`."""
    shown = []
    for step in steps:
        p99 = "p99 -" if step.get("p99_ms") is None else f"p99 {float(step['p99_ms']):,.0f} ms"
        shown.append(
            f"{step.get('weight')} % {int(step.get('requests') or 0):,} requests"
            f" {float(step.get('error_rate') or 0):.1f} % 5xx {p99} {step.get('outcome')}"
        )
    return "; ".join(shown)


def show_history(environment: Environment, as_json: bool, out: Any, limit: int = 20) -> list[dict[str, Any]]:
    """Print the LIMIT most recent entries to OUT: a table, or JSON ({"version", "env", "entries"})."""
    entries = read_history(environment)[:limit]
    if as_json:
        out.write(json.dumps({"version": VERSION, "env": environment.env, "entries": entries}, indent=2) + "\n")
    else:
        out.write(render_history(entries))
    out.flush()
    return entries
