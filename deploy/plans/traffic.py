"""Progressive delivery's decisions, pure: the weights of a listener's forward action for a step, and the judgement
of one step from what CloudWatch measured (deploy/aws/metrics.py reads it).

A step sends WEIGHT percent of the requests to the new group's target group and the rest to the serving group's;
at the end of the step the new group's figures (requests, 5xx answers of its targets, p99 target response time)
and the states of ALARM_NAMES decide: an alarm in ALARM, an error rate above MAX_ERROR_RATE or a p99 above
MAX_LATENCY_MS fails the step; with fewer than MIN_REQUESTS requests the step is not judged on its figures and
passes with a warning (an alarm in ALARM still fails it).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploy.config import Config

ALARM = "ALARM"
MAX_WEIGHT = 999  # AWS's largest weight of a target group in a forward action


@dataclass(frozen=True)
class Figures:
    """What CloudWatch measured for one target group over a window."""

    requests: int
    errors: int  # HTTPCode_Target_5XX_Count
    p99_seconds: float | None  # TargetResponseTime p99; None: no response measured

    @property
    def error_rate(self) -> float:
        """Percent of the requests answered 5xx by the targets (0 without requests)."""
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    @property
    def p99_ms(self) -> float | None:
        return None if self.p99_seconds is None else self.p99_seconds * 1000

    def text(self) -> str:
        """`1,204 requests, 0.2 % 5xx, p99 84 ms`."""
        p99 = "p99 –" if self.p99_ms is None else f"p99 {self.p99_ms:,.0f} ms"
        return f"{self.requests:,} requests, {self.error_rate:.1f} % 5xx, {p99}"


NO_FIGURES = Figures(requests=0, errors=0, p99_seconds=None)


@dataclass(frozen=True)
class Thresholds:
    """What a step is judged against (MAX_ERROR_RATE, MAX_LATENCY_MS, MIN_REQUESTS)."""

    max_error_rate: float  # percent
    max_latency_ms: int | None  # None: latency not checked
    min_requests: int

    @classmethod
    def of(cls, config: Config) -> Thresholds:
        """The thresholds of a configuration."""
        return cls(config.max_error_rate, config.max_latency_ms, config.min_requests)


class Outcome(enum.Enum):
    OK = "ok"
    TOO_FEW = "passed with too few requests to judge"
    FAILED = "failed"


@dataclass(frozen=True)
class StepDecision:
    """The judgement of one traffic step: what was measured, and what follows."""

    number: int  # 1-based
    steps: int
    weight: int  # percent of the requests sent to the new group
    group: str  # the new group
    figures: Figures
    outcome: Outcome
    reasons: tuple[str, ...] = ()  # why it failed, or why it was not judged

    @property
    def passed(self) -> bool:
        return self.outcome is not Outcome.FAILED

    def line(self) -> str:
        """`step 2/3: 50 % to asg-…: 1,204 requests, 0.2 % 5xx, p99 84 ms: ok`."""
        head = f"step {self.number}/{self.steps}: {self.weight} % to {self.group}: {self.figures.text()}"
        why = f" ({'; '.join(self.reasons)})" if self.reasons else ""
        return f"{head}: {self.outcome.value}{why}"

    def record(self) -> dict[str, Any]:
        """The decision as the history and the report keep it (JSON)."""
        return {
            "step": self.number,
            "steps": self.steps,
            "weight": self.weight,
            "group": self.group,
            "requests": self.figures.requests,
            "errors": self.figures.errors,
            "error_rate": round(self.figures.error_rate, 3),
            "p99_ms": None if self.figures.p99_ms is None else round(self.figures.p99_ms, 1),
            "outcome": self.outcome.name.lower(),
            "reasons": list(self.reasons),
        }


def judge_step(
    number: int,
    steps: int,
    weight: int,
    group: str,
    figures: Figures,
    alarms: Mapping[str, str],
    thresholds: Thresholds,
) -> StepDecision:
    """The decision of step NUMBER of STEPS (WEIGHT percent to GROUP) from its FIGURES and the ALARMS' states
    ({name: OK | ALARM | INSUFFICIENT_DATA})."""
    failures = [f"alarm {name} in ALARM" for name, state in sorted(alarms.items()) if state == ALARM]
    if figures.requests < thresholds.min_requests:
        if failures:
            return StepDecision(number, steps, weight, group, figures, Outcome.FAILED, tuple(failures))
        few = f"{figures.requests:,} of MIN_REQUESTS {thresholds.min_requests:,}"
        return StepDecision(number, steps, weight, group, figures, Outcome.TOO_FEW, (few,))
    if figures.error_rate > thresholds.max_error_rate:
        failures.append(f"5xx {figures.error_rate:.1f} % above MAX_ERROR_RATE {thresholds.max_error_rate:g} %")
    latency, limit = figures.p99_ms, thresholds.max_latency_ms
    if limit is not None and latency is not None and latency > limit:
        failures.append(f"p99 {latency:,.0f} ms above MAX_LATENCY_MS {limit:,}")
    outcome = Outcome.FAILED if failures else Outcome.OK
    return StepDecision(number, steps, weight, group, figures, outcome, tuple(failures))


def step_weights(serving_target_group: str, new_target_group: str, percent: int) -> list[dict[str, Any]]:
    """ForwardConfig.TargetGroups of a step sending PERCENT of the requests to the new group's target group.

    Both stay in the action at every step, at weight 0 too: AWS health checks only a target group a listener rule
    references, so the new one joins at 0 before its health wait, and the previous one stays checked (ready to
    take everything back) at 0 after the last step."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a step's weight is a percentage, not {percent}")
    return [
        {"TargetGroupArn": serving_target_group, "Weight": 100 - percent},
        {"TargetGroupArn": new_target_group, "Weight": percent},
    ]


def forward_action(weights: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A listener's DefaultActions forwarding by WEIGHTS (no stickiness: each request is weighed anew)."""
    if any(not 0 <= int(item["Weight"]) <= MAX_WEIGHT for item in weights) or not any(w["Weight"] for w in weights):
        raise ValueError(f"weights must be 0 to {MAX_WEIGHT}, one at least above 0: {weights}")
    config = {"TargetGroups": weights, "TargetGroupStickinessConfig": {"Enabled": False}}
    return [{"Type": "forward", "ForwardConfig": config}]


def current_weights(actions: list[dict[str, Any]]) -> dict[str, int]:
    """{target group ARN: weight} of a listener's DefaultActions as DescribeListeners describes them."""
    found: dict[str, int] = {}
    for action in actions:
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
        if groups:
            found.update({str(g["TargetGroupArn"]): int(g.get("Weight", 1)) for g in groups})
        elif action.get("TargetGroupArn"):
            found[str(action["TargetGroupArn"])] = 1
    return found


def missing_alarms(names: tuple[str, ...], states: Mapping[str, str]) -> list[str]:
    """ALARM_NAMES the account does not have: an alarm that does not exist can never roll a step back."""
    return [name for name in names if name not in states]
