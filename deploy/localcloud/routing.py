"""How an application load balancer of the embedded cloud spreads requests over the target groups of a forward
action (pure: balancers.py keeps the credit between requests)."""

from __future__ import annotations

from typing import Any


def forward_weights(data: dict[str, Any]) -> list[tuple[str, int]]:
    """(target group ARN, weight) of a forward action as moto stores it: ForwardConfig's weighted target groups
    (weight 1 when not given, as on AWS), else its one TargetGroupArn."""
    groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
    if groups:
        return [(str(group["TargetGroupArn"]), int(group.get("Weight", 1))) for group in groups]
    if data.get("TargetGroupArn"):
        return [(str(data["TargetGroupArn"]), 1)]
    return []


def weighted_pick(current: dict[str, int], weights: list[tuple[str, int]]) -> str | None:
    """Smooth weighted round robin: the next of WEIGHTS' target groups, CURRENT being the running credit (kept by
    the caller between requests). None when every weight is 0."""
    live = [(arn, weight) for arn, weight in weights if weight > 0]
    total = sum(weight for _, weight in live)
    if not total:
        return None
    for arn in [arn for arn in current if arn not in dict(live)]:
        del current[arn]  # a group left the action, or went to 0: its credit goes with it
    for arn, weight in live:
        current[arn] = current.get(arn, 0) + weight
    chosen = max(live, key=lambda item: current[item[0]])[0]
    current[chosen] -= total
    return chosen
