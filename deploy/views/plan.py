"""How a dry run prints its plan: a heading, then the steps numbered in the order the run would take them."""

from __future__ import annotations

from deploy.environment import Environment

HEADER = "plan (dry run: nothing is created, changed or deleted)"


def show(environment: Environment, lines: list[str]) -> list[str]:
    environment.say(HEADER)
    for number, line in enumerate(lines, start=1):
        environment.say(f"  {number:2d}. {line}")
    return lines
