"""The `AWS/ApplicationELB` metrics of the embedded cloud's application load balancers, from what they forwarded.

AWS publishes an Application Load Balancer's metrics to CloudWatch per minute; the embedded cloud does the same
from the requests its endpoints really forwarded to a target (proxy.py), at the modelled minute scaled by
LOCAL_TIME_SCALE, into moto's CloudWatch in the server process:

- `RequestCount` (Sum, Count): requests for which a target was chosen (a 503 the load balancer answers itself
  because no target is healthy is not one, as on AWS);
- `HTTPCode_Target_5XX_Count` (Sum, Count): answers 500-599 of the targets; published only when not zero, as AWS
  does (a reader takes a missing datapoint as 0);
- `TargetResponseTime` (Seconds): from the request sent to the target until its answer's headers came back, one
  value per request (Values and Counts), so that percentiles (p99) are answered (fixes.py computes them).

Each with the dimensions {LoadBalancer, TargetGroup} (per target group) and {LoadBalancer} (per load balancer):
LoadBalancer is the `app/NAME/ID` end of the load balancer's ARN, TargetGroup the `targetgroup/NAME/ID` end of
the target group's. A minute's datapoint carries the minute's start as its timestamp (wall clock, UTC) and is
published once the minute is over, as on AWS where a minute's figures arrive after it.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moto.cloudwatch.models import cloudwatch_backends

NAMESPACE = "AWS/ApplicationELB"
PERIOD_S = 60.0  # AWS's period of an Application Load Balancer's metrics
MIN_PERIOD_S = 0.1  # a scaled period never below this (the runtime looks at the cloud every 50 ms)
TIME_RESOLUTION = 6  # response times are published to the microsecond


def dimension(arn: str) -> str:
    """The metric dimension of a load balancer or target group ARN: `app/NAME/ID`, `targetgroup/NAME/ID`."""
    resource = arn.split(":", 5)[-1]
    return resource.removeprefix("loadbalancer/")


@dataclass(frozen=True)
class Source:
    """Whose requests: a target group of a load balancer, in an account and region."""

    account_id: str
    region: str
    load_balancer_arn: str
    target_group_arn: str


@dataclass
class Tally:
    """What one target group (or load balancer) forwarded in one period."""

    requests: int = 0
    target_5xx: int = 0
    response_times: Counter[float] = field(default_factory=Counter)

    def add(self, status: int | None, seconds: float | None) -> None:
        self.requests += 1
        if status is not None and 500 <= status <= 599:
            self.target_5xx += 1
        if seconds is not None:
            self.response_times[round(seconds, TIME_RESOLUTION)] += 1

    def merge(self, other: Tally) -> None:
        self.requests += other.requests
        self.target_5xx += other.target_5xx
        self.response_times.update(other.response_times)


def metric_data(tally: Tally, dimensions: dict[str, str], timestamp: datetime) -> list[dict[str, Any]]:
    """PutMetricData's MetricData for one tally (what AWS would publish for it)."""
    dims = [{"Name": name, "Value": value} for name, value in dimensions.items()]
    data: list[dict[str, Any]] = [
        {"MetricName": "RequestCount", "Dimensions": dims, "Value": float(tally.requests), "Unit": "Count"},
    ]
    if tally.target_5xx:
        data.append(
            {
                "MetricName": "HTTPCode_Target_5XX_Count",
                "Dimensions": dims,
                "Value": float(tally.target_5xx),
                "Unit": "Count",
            }
        )
    if tally.response_times:
        values = sorted(tally.response_times)
        data.append(
            {
                "MetricName": "TargetResponseTime",
                "Dimensions": dims,
                "Values": values,
                "Counts": [float(tally.response_times[value]) for value in values],
                "Unit": "Seconds",
            }
        )
    for datum in data:
        datum["Timestamp"] = timestamp
    return data


def put_into_moto(account_id: str, region: str, data: list[dict[str, Any]]) -> None:
    """PutMetricData into moto's CloudWatch of ACCOUNT_ID and REGION (in this process)."""
    # moto keeps times as naive UTC (as it parses a request's Timestamp): an aware one could not be compared.
    naive = [{**datum, "Timestamp": datum["Timestamp"].astimezone(UTC).replace(tzinfo=None)} for datum in data]
    cloudwatch_backends[account_id][region].put_metric_data(NAMESPACE, naive)


Publish = Callable[[str, str, list[dict[str, Any]]], None]


class Metrics:
    """Tallies per period of the requests forwarded, published to CloudWatch once their period is over."""

    def __init__(self, period_s: float, wall: Callable[[], float] = time.time, publish: Publish = put_into_moto):
        self.period = max(period_s, MIN_PERIOD_S)
        self.wall = wall
        self.publish = publish
        self.lock = threading.Lock()
        self.tallies: dict[int, dict[Source, Tally]] = {}  # period number → source → tally

    def record(self, source: Source, status: int | None, seconds: float | None) -> None:
        """A request forwarded to a target of SOURCE ended: its status (None: no answer) and response time."""
        period = int(self.wall() // self.period)
        with self.lock:
            self.tallies.setdefault(period, {}).setdefault(source, Tally()).add(status, seconds)

    def flush(self, everything: bool = False) -> int:
        """Publish every period that is over (EVERYTHING: the current one too); returns the datapoints sent."""
        current = int(self.wall() // self.period)
        with self.lock:
            done = sorted(p for p in self.tallies if everything or p < current)
            ready = [(p, self.tallies.pop(p)) for p in done]
        sent = 0
        for period, sources in ready:
            timestamp = datetime.fromtimestamp(period * self.period, UTC)
            batches: dict[tuple[str, str], list[dict[str, Any]]] = {}
            balancers: dict[tuple[str, str, str], Tally] = {}
            for source, tally in sources.items():
                load_balancer = dimension(source.load_balancer_arn)
                dims = {"LoadBalancer": load_balancer, "TargetGroup": dimension(source.target_group_arn)}
                batches.setdefault((source.account_id, source.region), []).extend(metric_data(tally, dims, timestamp))
                balancers.setdefault((source.account_id, source.region, load_balancer), Tally()).merge(tally)
            for (account_id, region, load_balancer), tally in balancers.items():
                batches[(account_id, region)].extend(metric_data(tally, {"LoadBalancer": load_balancer}, timestamp))
            for (account_id, region), data in batches.items():
                try:
                    self.publish(account_id, region, data)
                except Exception as error:  # a reset cloud, moto changing under us: these figures are lost
                    print(f"embedded cloud: metrics of {region} not published: {error!r}", flush=True)
                    continue
                sent += len(data)
        return sent
