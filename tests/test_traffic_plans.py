"""Progressive delivery's pure decisions (deploy/plans/traffic.py) and its CloudWatch reads (deploy/aws/metrics.py:
one GetMetricData for the figures, one DescribeAlarms for the alarms), on mock_aws."""

from __future__ import annotations

import datetime
from collections import Counter
from typing import Any

import boto3
import pytest
from conftest import REGION, make_alarm

from deploy.aws.metrics import alarm_states, figures_of, minute_window, read_figures, window_period
from deploy.plans.traffic import (
    NO_FIGURES,
    Figures,
    Outcome,
    Thresholds,
    current_weights,
    forward_action,
    judge_step,
    missing_alarms,
    step_weights,
)

LB = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/alb-webapp-dev/50dc6c495c0c9188"
OLD = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg-webapp-dev-1/73e2d6bc24d8a067"
NEW = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg-webapp-dev-2/0123456789abcdef"
GROUP = "asg-webapp-dev-20261205100000"
LIMITS = Thresholds(max_error_rate=1.0, max_latency_ms=200, min_requests=50)

# --- the judgement of a step ---------------------------------------------------------------------------------


def judge(figures: Figures, alarms: dict[str, str] | None = None, limits: Thresholds = LIMITS):
    return judge_step(2, 3, 50, GROUP, figures, alarms or {}, limits)


def test_a_good_step_is_ok_and_says_its_figures_in_one_line() -> None:
    decision = judge(Figures(requests=1204, errors=2, p99_seconds=0.084))
    assert decision.passed and decision.outcome is Outcome.OK
    assert decision.line() == f"step 2/3: 50 % to {GROUP}: 1,204 requests, 0.2 % 5xx, p99 84 ms: ok"


@pytest.mark.parametrize(
    ("figures", "alarms", "why"),
    [
        (Figures(1000, 11, 0.05), {}, "5xx 1.1 % above MAX_ERROR_RATE 1 %"),
        (Figures(1000, 0, 0.201), {}, "p99 201 ms above MAX_LATENCY_MS 200"),
        (Figures(1000, 0, 0.05), {"webapp-5xx": "ALARM", "other": "OK"}, "alarm webapp-5xx in ALARM"),
        (Figures(10, 0, 0.05), {"webapp-5xx": "ALARM"}, "alarm webapp-5xx in ALARM"),  # too few: alarms still count
    ],
)
def test_a_step_fails_on_errors_latency_or_an_alarm(figures: Figures, alarms: dict[str, str], why: str) -> None:
    decision = judge(figures, alarms)
    assert not decision.passed and decision.reasons == (why,)
    assert decision.line().endswith(f": failed ({why})")


def test_every_reason_is_said() -> None:
    decision = judge(Figures(500, 250, 0.9), {"a": "ALARM"})
    assert len(decision.reasons) == 3 and decision.outcome is Outcome.FAILED


def test_the_limits_themselves_pass() -> None:
    assert judge(Figures(1000, 10, 0.2)).passed


def test_too_few_requests_pass_with_a_warning_whatever_they_show() -> None:
    decision = judge(Figures(12, 12, 5.0))
    assert decision.passed and decision.outcome is Outcome.TOO_FEW
    assert decision.line().endswith(": passed with too few requests to judge (12 of MIN_REQUESTS 50)")


def test_latency_is_not_checked_without_max_latency_ms_nor_without_a_measure() -> None:
    unlimited = Thresholds(max_error_rate=1.0, max_latency_ms=None, min_requests=0)
    assert judge(Figures(100, 0, 30.0), limits=unlimited).passed
    assert judge(Figures(100, 0, None)).passed
    assert judge(NO_FIGURES, limits=unlimited).line().endswith("0 requests, 0.0 % 5xx, p99 –: ok")


def test_a_decision_is_a_frozen_record_for_the_history() -> None:
    decision = judge(Figures(1000, 20, 0.3))
    with pytest.raises(AttributeError):
        decision.weight = 10  # type: ignore[misc]
    assert decision.record() == {
        "step": 2,
        "steps": 3,
        "weight": 50,
        "group": GROUP,
        "requests": 1000,
        "errors": 20,
        "error_rate": 2.0,
        "p99_ms": 300.0,
        "outcome": "failed",
        "reasons": ["5xx 2.0 % above MAX_ERROR_RATE 1 %", "p99 300 ms above MAX_LATENCY_MS 200"],
    }


# --- weights of the forward action ---------------------------------------------------------------------------


def test_step_weights_keep_both_target_groups_in_the_action() -> None:
    assert step_weights(OLD, NEW, 10) == [{"TargetGroupArn": OLD, "Weight": 90}, {"TargetGroupArn": NEW, "Weight": 10}]
    joining, last = step_weights(OLD, NEW, 0), step_weights(OLD, NEW, 100)
    assert [w["Weight"] for w in joining] == [100, 0] and [w["Weight"] for w in last] == [0, 100]
    with pytest.raises(ValueError, match="percentage"):
        step_weights(OLD, NEW, 101)


def test_a_forward_action_needs_a_weight_above_zero() -> None:
    [action] = forward_action(step_weights(OLD, NEW, 50))
    assert action["ForwardConfig"]["TargetGroupStickinessConfig"] == {"Enabled": False}
    assert current_weights([action]) == {OLD: 50, NEW: 50}
    with pytest.raises(ValueError, match="one at least above 0"):
        forward_action([{"TargetGroupArn": OLD, "Weight": 0}])


def test_current_weights_read_both_shapes_of_a_forward_action() -> None:
    assert current_weights([{"Type": "forward", "TargetGroupArn": OLD}]) == {OLD: 1}
    assert current_weights([{"Type": "redirect", "RedirectConfig": {}}]) == {}


def test_the_moto_server_routes_by_these_weights() -> None:
    """The embedded cloud reads a forward action as AWS stores it (both sides meet on this shape)."""
    from deploy.localcloud.balancers import forward_weights, weighted_pick

    [action] = forward_action(step_weights(OLD, NEW, 10))
    credit: dict[str, int] = {}
    assert Counter(weighted_pick(credit, forward_weights(action)) for _ in range(100)) == {OLD: 90, NEW: 10}


# --- reading CloudWatch --------------------------------------------------------------------------------------


def counted(service: str) -> tuple[Any, Counter[str]]:
    client = boto3.client(service, region_name=REGION)
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.*.*", lambda model, **_: calls.update([model.name]))
    return client, calls


def publish(
    cloudwatch: Any, when: datetime.datetime, target_group: str, requests: int, errors: int, times: list[float]
):
    """What an application load balancer publishes for a minute (RequestCount, 5xx only when not 0, times)."""
    dims = [
        {"Name": "LoadBalancer", "Value": "app/alb-webapp-dev/50dc6c495c0c9188"},
        {"Name": "TargetGroup", "Value": target_group.split(":")[-1]},
    ]
    data: list[dict[str, Any]] = [{"MetricName": "RequestCount", "Value": requests, "Unit": "Count"}]
    if errors:
        data.append({"MetricName": "HTTPCode_Target_5XX_Count", "Value": errors, "Unit": "Count"})
    if times:
        data.append({"MetricName": "TargetResponseTime", "Values": times, "Counts": [1] * len(times)})
    cloudwatch.put_metric_data(
        Namespace="AWS/ApplicationELB", MetricData=[{**d, "Dimensions": dims, "Timestamp": when} for d in data]
    )


def test_the_figures_of_both_target_groups_come_in_one_request(cloud: None) -> None:
    cloudwatch, calls = counted("cloudwatch")
    start = datetime.datetime.now(datetime.UTC).replace(microsecond=0) - datetime.timedelta(minutes=5)
    publish(cloudwatch, start + datetime.timedelta(seconds=10), NEW, 100, 3, [0.01] * 98 + [0.5, 0.9])
    publish(cloudwatch, start + datetime.timedelta(seconds=70), NEW, 20, 0, [0.02] * 20)
    publish(cloudwatch, start + datetime.timedelta(seconds=70), OLD, 900, 0, [0.03] * 100)
    publish(cloudwatch, start + datetime.timedelta(seconds=200), NEW, 5000, 0, [])  # after the window
    calls.clear()

    found = read_figures(cloudwatch, LB, [OLD, NEW], start, start + datetime.timedelta(seconds=120))

    assert calls == {"GetMetricData": 1}
    assert found[NEW] == Figures(requests=120, errors=3, p99_seconds=0.5)  # nearest rank of 120 values
    assert found[OLD] == Figures(requests=900, errors=0, p99_seconds=0.03)  # no 5xx published: 0


def test_a_window_with_nothing_published_has_no_figures(cloud: None) -> None:
    cloudwatch, _ = counted("cloudwatch")
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=3)
    assert read_figures(cloudwatch, LB, [NEW], start, start + datetime.timedelta(seconds=6)) == {NEW: NO_FIGURES}


def test_a_window_is_widened_to_whole_minutes_of_the_cloud() -> None:
    start = datetime.datetime(2026, 12, 5, 10, 0, 30, 500000, tzinfo=datetime.UTC)
    assert minute_window(start, start + datetime.timedelta(seconds=100)) == (
        datetime.datetime(2026, 12, 5, 10, 0, 0, tzinfo=datetime.UTC),
        datetime.datetime(2026, 12, 5, 10, 3, 0, tzinfo=datetime.UTC),
    )
    # An emulator's minute at LOCAL_TIME_SCALE 0.05: 3 s.
    assert minute_window(start, start + datetime.timedelta(seconds=6), 3.0) == (
        datetime.datetime(2026, 12, 5, 10, 0, 30, tzinfo=datetime.UTC),
        datetime.datetime(2026, 12, 5, 10, 0, 39, tzinfo=datetime.UTC),
    )
    aligned = datetime.datetime(2026, 12, 5, 10, 1, tzinfo=datetime.UTC)
    assert minute_window(aligned, aligned) == (aligned, aligned + datetime.timedelta(minutes=1))


def test_one_period_covers_the_window() -> None:
    start = datetime.datetime(2026, 12, 5, 10, 0, 30, tzinfo=datetime.UTC)
    assert [window_period(start, start + datetime.timedelta(seconds=s)) for s in (6, 60, 61, 120)] == [60, 60, 120, 120]
    with pytest.raises(ValueError, match="ends after it starts"):
        window_period(start, start)


def test_figures_of_several_datapoints_add_up_and_keep_the_largest_p99() -> None:
    values = {"requests0": [100.0, 20.0], "errors0": [3.0], "p99_0": [], "p990": [0.2, 0.4]}
    assert figures_of(values, 1) == [Figures(requests=120, errors=3, p99_seconds=0.4)]


def test_alarm_states_come_in_one_request(cloud: None) -> None:
    cloudwatch, calls = counted("cloudwatch")
    for name in ("webapp-5xx", "webapp-latency"):
        make_alarm(cloudwatch, name, threshold=10)
    # (moto implements no PutCompositeAlarm: the composite alarms DescribeAlarms is asked for are not tested here)
    for name, state in (("webapp-5xx", "ALARM"), ("webapp-latency", "OK")):
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason="set by the test")
    calls.clear()

    states = alarm_states(cloudwatch, ["webapp-5xx", "webapp-latency", "typo"])

    assert calls == {"DescribeAlarms": 1}
    assert states == {"webapp-5xx": "ALARM", "webapp-latency": "OK"}
    assert missing_alarms(("webapp-5xx", "typo"), states) == ["typo"]
    assert alarm_states(cloudwatch, []) == {} and calls == {"DescribeAlarms": 1}  # nothing to read: no request
