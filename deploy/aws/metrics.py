"""What CloudWatch measured of an application load balancer's target groups, and the states of alarms.

A traffic step is judged from AWS's own figures (namespace AWS/ApplicationELB, dimensions LoadBalancer and
TargetGroup): RequestCount (Sum), HTTPCode_Target_5XX_Count (Sum) and TargetResponseTime (p99), of every target
group asked for, in ONE GetMetricData request; the alarms of ALARM_NAMES in ONE DescribeAlarms request. At most
two requests a step once its figures are in (a minute published late is read again: one more each poll interval).

The window is widened to whole minutes of the cloud (a datapoint carries its minute's start; an emulator's minute
is scaled) and read with one period covering it (a multiple of 60 s, CloudWatch's period of these metrics): each
query has one datapoint, or two where AWS's rounding splits the window. Counts of several datapoints add up; their
p99 is the largest of theirs (a bound from above: the p99 of the whole window is never larger). A missing
datapoint is 0 requests or 0 errors: AWS publishes a count only when it is not 0. On AWS a minute's figures
arrive about a minute after it: read a window once it is over (on an emulator, its scaled minute); the same request
asks each target group's RequestCount minute by minute too, to say whether the window's last minute is in yet
(`Figures.last_minute`: the traffic stage reads again, bounded, while it is not).

Permissions: cloudwatch:GetMetricData, cloudwatch:DescribeAlarms (both act on `*`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from deploy.plans.traffic import Figures

NAMESPACE = "AWS/ApplicationELB"
PERIOD_UNIT_S = 60
MAX_PAGES = 10  # bounds the paging of one read; a window of one period has at most two datapoints a query
ALARM_TYPES = ["MetricAlarm", "CompositeAlarm"]  # DescribeAlarms returns metric alarms only unless told
QUERIES = (  # (id prefix, metric, statistic)
    ("requests", "RequestCount", "Sum"),
    ("errors", "HTTPCode_Target_5XX_Count", "Sum"),
    ("p99", "TargetResponseTime", "p99"),
)


def dimension(arn: str) -> str:
    """The metric dimension of a load balancer or target group ARN: `app/NAME/ID`, `targetgroup/NAME/ID`."""
    return arn.split(":", 5)[-1].removeprefix("loadbalancer/")


def minute_window(start: datetime, end: datetime, minute_s: float = PERIOD_UNIT_S) -> tuple[datetime, datetime]:
    """The window whose datapoints hold the requests of START..END: START down to the start of its minute (the
    timestamp of the datapoint its requests are in), END up to the end of its minute. MINUTE_S: the minute as the
    cloud measures it (60 s; an emulator's scaled minute). On AWS this is what CloudWatch does with a start anyway."""
    first = math.floor(start.timestamp() / minute_s) * minute_s
    last = math.ceil(end.timestamp() / minute_s) * minute_s
    return datetime.fromtimestamp(first, start.tzinfo), datetime.fromtimestamp(max(last, first + minute_s), end.tzinfo)


def window_period(start: datetime, end: datetime) -> int:
    """One period covering START..END: its length rounded up to a whole minute (at least one)."""
    seconds = (end - start).total_seconds()
    if seconds <= 0:
        raise ValueError(f"a window ends after it starts: {start} .. {end}")
    return max(PERIOD_UNIT_S, math.ceil(seconds / PERIOD_UNIT_S) * PERIOD_UNIT_S)


def figure_queries(load_balancer_arn: str, target_group_arns: Sequence[str], period: int) -> list[dict[str, Any]]:
    """GetMetricData's MetricDataQueries: the three figures of each target group (ids `requests0`, `errors0`…)."""
    queries = []
    for index, arn in enumerate(target_group_arns):
        dimensions = [
            {"Name": "LoadBalancer", "Value": dimension(load_balancer_arn)},
            {"Name": "TargetGroup", "Value": dimension(arn)},
        ]
        for prefix, metric, stat in QUERIES:
            found = {"Namespace": NAMESPACE, "MetricName": metric, "Dimensions": dimensions}
            queries.append({"Id": f"{prefix}{index}", "MetricStat": {"Metric": found, "Period": period, "Stat": stat}})
    return queries


def last_minute_queries(load_balancer_arn: str, target_group_arns: Sequence[str]) -> list[dict[str, Any]]:
    """Each target group's RequestCount minute by minute (ids `last0`…): whether the window's last minute is in."""
    queries = figure_queries(load_balancer_arn, target_group_arns, PERIOD_UNIT_S)
    return [{**query, "Id": query["Id"].replace("requests", "last")} for query in queries if query["Id"][0] == "r"]


def holds_last_minute(stamps: Sequence[datetime], start: datetime, end: datetime, minute_s: float) -> bool:
    """Whether a datapoint of a minute-by-minute query of START..END (a window of whole minutes) holds its last
    minute: on AWS that minute's own datapoint; on an emulator, whose minutes are shorter than CloudWatch's smallest
    period, one of the window's last 60 s (pure)."""
    first = start.timestamp()
    bucket = first + math.floor((end.timestamp() - minute_s - first) / PERIOD_UNIT_S) * PERIOD_UNIT_S
    return any(stamp.timestamp() >= bucket for stamp in stamps)


def figures_of(values: dict[str, list[float]], count: int, last: Sequence[bool] = ()) -> list[Figures]:
    """The figures of COUNT target groups from GetMetricData's values by query id (pure); LAST: whether each one's
    datapoint of the window's last minute was in (default: it was)."""
    found = []
    for index in range(count):
        p99 = values.get(f"p99{index}") or []
        found.append(
            Figures(
                requests=round(sum(values.get(f"requests{index}") or [])),
                errors=round(sum(values.get(f"errors{index}") or [])),
                p99_seconds=max(p99) if p99 else None,
                last_minute=last[index] if index < len(last) else True,
            )
        )
    return found


def read_figures(
    cloudwatch: Any,
    load_balancer_arn: str,
    target_group_arns: Sequence[str],
    start: datetime,
    end: datetime,
    minute_s: float = PERIOD_UNIT_S,
) -> dict[str, Figures]:
    """{target group ARN: its figures over START..END} (aware datetimes, widened to whole minutes of MINUTE_S: the
    cloud's, scaled on an emulator), in one GetMetricData request; with each, whether its RequestCount datapoint
    of the window's last minute was in (a query more, minute by minute, in the same request)."""
    start, end = minute_window(start, end, minute_s)
    queries = figure_queries(load_balancer_arn, target_group_arns, window_period(start, end))
    queries += last_minute_queries(load_balancer_arn, target_group_arns)
    values: dict[str, list[float]] = {}
    stamps: dict[str, list[datetime]] = {}
    params: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
    for _ in range(MAX_PAGES):
        answer = cloudwatch.get_metric_data(**params)
        for result in answer.get("MetricDataResults", []):
            values.setdefault(result["Id"], []).extend(float(v) for v in result.get("Values", []))
            stamps.setdefault(result["Id"], []).extend(result.get("Timestamps", []))
        if not answer.get("NextToken"):
            break
        params["NextToken"] = answer["NextToken"]
    last = [holds_last_minute(stamps.get(f"last{i}", []), start, end, minute_s) for i in range(len(target_group_arns))]
    return dict(zip(target_group_arns, figures_of(values, len(target_group_arns), last), strict=True))


def alarm_states(cloudwatch: Any, names: Sequence[str]) -> dict[str, str]:
    """{alarm name: OK | ALARM | INSUFFICIENT_DATA} of NAMES (at most 100, as ALARM_NAMES allows) in one
    DescribeAlarms request; a name the account does not have is absent."""
    if not names:
        return {}
    answer = cloudwatch.describe_alarms(AlarmNames=list(names), AlarmTypes=ALARM_TYPES, MaxRecords=100)
    alarms = answer.get("MetricAlarms", []) + answer.get("CompositeAlarms", [])
    return {str(alarm["AlarmName"]): str(alarm["StateValue"]) for alarm in alarms}
