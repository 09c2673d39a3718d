"""Where moto differs from AWS in what progressive delivery needs, fixed inside the embedded cloud (installed by
fixes.py's `patch_moto()`, like every fix): health checks of target groups only where a listener rule forwards,
and CloudWatch percentiles. Each fix says what AWS does and what moto did."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from moto.cloudwatch.models import CloudWatchBackend, MetricAggregatedDatum, Statistics
from moto.cloudwatch.responses import CloudWatchResponse
from moto.elbv2.exceptions import ValidationError
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup, elbv2_backends

from deploy.plans.traffic import MAX_TARGET_GROUPS

Install = Callable[[type, str, Callable[[Any], Callable[..., Any]]], None]

# --- target groups: checked only where a listener rule forwards ----------------------------------------


def target_group_in_use(group: FakeTargetGroup) -> bool:
    """Whether a listener rule of GROUP's region forwards to it (at any weight): what AWS health checks."""
    return bool(elbv2_backends[group.account_id][group.region_name]._any_listener_using(group.arn))


def _unused_unless_referenced(original: Callable[..., Any]) -> Callable[..., Any]:
    # AWS: a target group that no listener rule of its load balancer references (in a forward action, at any
    # weight, 0 included) is not health checked; its registered targets report `unused` (Target.NotInUse).
    # moto: reported them `healthy`, so a group's target group could pass a health wait without taking traffic.
    def health_for(self: FakeTargetGroup, target: dict[str, Any], ec2_backend: Any) -> Any:
        found = original(self, target, ec2_backend)
        registered = self.targets.get(target["Id"])
        if registered is None or found.status != "healthy":
            return found
        if target_group_in_use(self):
            return found
        return FakeHealthStatus(
            registered["Id"],
            registered["Port"],
            self.health_check_port,
            "unused",
            "Target.NotInUse",
            "Target group is not configured to receive traffic from the load balancer",
        )

    return health_for


# --- at most 5 target groups in one forward action ---------------------------------------------------
#
# AWS: a forward action names at most 5 target groups (the quota "Target Groups per Action per Application Load
# Balancer", not adjustable); a listener or rule asking for more is refused with a 400 and nothing changes. Its
# API reference lists no error code of its own for this: answered here as a ValidationError (the tool refuses
# before it would ask: deploy/steps/launch_asg.py). moto: accepted any number.


def _forward_limit(actions: list[Any] | None) -> None:
    for action in actions or []:
        data = action if isinstance(action, dict) else getattr(action, "data", {})
        groups = (data.get("ForwardConfig") or {}).get("TargetGroups") or []
        if data.get("Type") == "forward" and len(groups) > MAX_TARGET_GROUPS:
            raise ValidationError(
                f"You cannot specify more than {MAX_TARGET_GROUPS} target groups in a forward action"
                f" ({len(groups)} given)"
            )


def _forward_limit_on_modify(original: Callable[..., Any]) -> Callable[..., Any]:
    def modify_listener(self: ELBv2Backend, arn: str, *args: Any, **kwargs: Any) -> Any:
        _forward_limit(kwargs.get("actions") if "actions" in kwargs else (args[4] if len(args) > 4 else []))
        return original(self, arn, *args, **kwargs)

    return modify_listener


def _forward_limit_on_create(original: Callable[..., Any]) -> Callable[..., Any]:
    def validate_actions(self: ELBv2Backend, actions: list[Any]) -> None:  # CreateListener, CreateRule, ModifyRule
        _forward_limit(actions)
        original(self, actions)

    return validate_actions


# --- CloudWatch percentiles -------------------------------------------------------------------------
#
# AWS: GetMetricData answers a percentile Stat (p99, p99.9, p50...) and GetMetricStatistics its
# ExtendedStatistics, computed from the raw values published (PutMetricData Value, or Values with Counts); a
# statistic set (StatisticValues) takes part only when its SampleCount is 1 or its Minimum equals its Maximum,
# and no percentile is given when a value is negative. A period with no value that allows it has no datapoint.
# moto: computes no percentile: GetMetricData with p99 failed with a server error (a None it could not
# serialise) and GetMetricStatistics ignored ExtendedStatistics. Here percentiles are nearest-rank: the
# smallest value with at least P % of the values at or below it (CloudWatch documents no interpolation).

PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d{1,2})?|100(?:\.0{1,2})?)")


def percentile(values: list[float], rank: float) -> float | None:
    """The nearest-rank percentile RANK (0 to 100) of VALUES; None when there are none or one is negative."""
    if not values or min(values) < 0:
        return None
    ordered = sorted(values)
    index = max(math.ceil(rank / 100 * len(ordered)), 1) - 1
    return ordered[index]


def _percentile_samples(statistics: Statistics) -> list[float] | None:
    """The raw values behind STATISTICS, or None when a statistic set hides them."""
    values = list(statistics.metric_single_values_list)
    for aggregated in statistics.metric_data or []:
        if not isinstance(aggregated, MetricAggregatedDatum):
            continue
        if aggregated.sample_count == 1 or aggregated.min == aggregated.max:
            values += [float(aggregated.min)] * int(aggregated.sample_count)
        else:
            return None
    return values


def _percentiles(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_statistics_for_type(self: Statistics, stat: str) -> Any:
        matched = PERCENTILE.fullmatch(stat)
        if matched is None:
            return original(self, stat)
        samples = _percentile_samples(self)
        return None if samples is None else percentile(samples, float(matched.group(1)))

    return get_statistics_for_type


def _no_empty_datapoints(original: Callable[..., Any]) -> Callable[..., Any]:
    # A period whose statistic has no value (a percentile hidden by statistic sets) has no datapoint on AWS.
    def get_metric_data(self: CloudWatchBackend, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = original(self, *args, **kwargs)
        for result in results:
            pairs = [(t, v) for t, v in zip(result["timestamps"], result["values"], strict=True) if v is not None]
            result["timestamps"], result["values"] = [t for t, _ in pairs], [v for _, v in pairs]
        return results

    return get_metric_data


def _extended_statistics(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_metric_statistics(self: CloudWatchResponse) -> Any:
        answer = original(self)
        wanted = self._get_param("ExtendedStatistics") or []
        for datapoint in answer.result["Datapoints"]:
            found = {name: datapoint.get_statistics_for_type(name) for name in wanted if PERCENTILE.fullmatch(name)}
            datapoint.extended_statistics = {name: value for name, value in found.items() if value is not None}
        return answer

    return get_metric_statistics


def install_traffic_fixes(install: Install) -> None:
    """Install these fixes with fixes.py's INSTALL (once each, moto's method kept as __wrapped__)."""
    install(FakeTargetGroup, "health_for", _unused_unless_referenced)
    install(ELBv2Backend, "modify_listener", _forward_limit_on_modify)
    install(ELBv2Backend, "_validate_actions", _forward_limit_on_create)
    install(Statistics, "get_statistics_for_type", _percentiles)
    install(CloudWatchBackend, "get_metric_data", _no_empty_datapoints)
    install(CloudWatchResponse, "get_metric_statistics", _extended_statistics)
