"""Progressive delivery's keys (deploy/settings.py lists them with the others): what each means, and how the
steps, a number within bounds and the alarm names are read (a parser returns the value or raises ValueError
saying what is wrong). docs/progressive-delivery.md documents them at length."""

from __future__ import annotations

import itertools
from collections.abc import Callable


def traffic_steps(value: str) -> tuple[int, ...]:
    """Ascending whole percentages, 1 to 100, the last 100: `10,50,100`."""
    items = [item.strip() for item in value.split(",")]
    if not all(item.isdigit() for item in items):
        raise ValueError("must be whole percentages separated by commas, such as 10,50,100")
    steps = tuple(int(item) for item in items)
    if not all(1 <= step <= 100 for step in steps):
        raise ValueError("must hold percentages from 1 to 100")
    if any(later <= earlier for earlier, later in itertools.pairwise(steps)):
        raise ValueError("must ascend, each step sending more requests to the new group than the one before")
    if steps[-1] != 100:
        raise ValueError("must end with 100 (the new group takes all requests in the end)")
    return steps


def number_between(low: float, high: float, hint: str) -> Callable[[str], float]:
    def check(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"must be a number such as {hint}") from None
        if not low <= number <= high:  # NaN fails too
            raise ValueError(f"must be from {low:g} to {high:g}")
        return number

    return check


MAX_ALARMS = 100  # what one DescribeAlarms request takes (AlarmNames)
MAX_ALARM_NAME = 255


def alarm_names(value: str) -> tuple[str, ...]:
    names = tuple(item.strip() for item in value.split(",") if item.strip())
    if len(names) > MAX_ALARMS:
        raise ValueError(f"may name at most {MAX_ALARMS} alarms (what one DescribeAlarms request reads)")
    bad = [str(n) for n, name in enumerate(names, 1) if len(name) > MAX_ALARM_NAME or not name.isprintable()]
    if bad:
        raise ValueError(
            f"must be CloudWatch alarm names of 1 to {MAX_ALARM_NAME} printable characters; not name {', '.join(bad)}"
        )
    if len(set(names)) != len(names):
        raise ValueError("names an alarm twice")
    return names


TRAFFIC_HELP = {
    "TRAFFIC_STEPS": "Ascending percentages of requests sent to the new group once healthy, the last one 100 (such as"
    " 10,50,100); 100: all at once. Anything but 100 needs LOAD_BALANCER=application (weighted target groups).",
    "STEP_SECONDS": "Seconds each traffic step is observed before it is judged (scaled by LOCAL_TIME_SCALE on an"
    " emulator).",
    "MAX_ERROR_RATE": "Percent of the new group's requests a step may see answered 5xx by its targets; above it, it"
    " rolls back.",
    "MAX_LATENCY_MS": "Milliseconds the new group's p99 target response time may reach over a step; empty: not"
    " checked.",
    "MIN_REQUESTS": "Requests of the new group a step needs to be judged; with fewer it passes with a warning.",
    "ALARM_NAMES": "Comma-separated CloudWatch alarm names; any in ALARM during the traffic steps rolls back.",
    "KEEP_PREVIOUS_SECONDS": "Seconds the previous group keeps its capacity at weight 0 after the last step, for"
    " `inv rollback` by weight (scaled by LOCAL_TIME_SCALE on an emulator); 0 keeps none.",
    "FAIL_RATE": "Example app: fraction (0 to 1) of its non-health requests it answers 500; staged into app.env when"
    " set.",
    "DELAY_MS": "Example app: milliseconds it waits before answering a non-health request; staged into app.env when"
    " set.",
}
