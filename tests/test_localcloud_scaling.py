"""The embedded cloud's part of a retirement AWS carries out (deploy/localcloud/scaling_fixes.py, schedule.py):
the pure timing decisions on injected clocks, and the fixes of moto's scheduled actions and scale-in, in-process on
mock_aws (no runtime: nothing is ever in flight there, so a deregistration completes at once unless a test says
otherwise). The same on a real server with real traffic: tests/test_localcloud_retirement.py."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import REGION
from moto.autoscaling.models import AutoScalingBackend, autoscaling_backends
from test_localcloud_fixes import client, group, instances, target_group, targets

from deploy.localcloud.scaling_fixes import PUT_AT, finish_scale_ins, run_due_actions
from deploy.localcloud.schedule import drain_over, runs_at

UTC = datetime.UTC
ACCOUNT = "123456789012"

# --- pure timing ------------------------------------------------------------------------------------------


def test_an_action_runs_its_aws_delay_times_the_scale_after_it_was_put() -> None:
    put_wall = 1_000_000.0
    start = datetime.datetime.fromtimestamp(put_wall + 900, UTC)
    assert runs_at(put_clock=50.0, put_wall=put_wall, start=start, scale=0.01) == pytest.approx(59.0)
    assert runs_at(50.0, put_wall, start, scale=1.0) == pytest.approx(950.0)  # AWS's own time at scale 1
    naive = start.replace(tzinfo=None)  # moto's naive UTC means the same moment
    assert runs_at(50.0, put_wall, naive, 0.01) == pytest.approx(59.0)
    assert runs_at(50.0, put_wall, datetime.datetime.fromtimestamp(put_wall - 5, UTC), 0.01) == 50.0  # never earlier


def test_draining_ends_when_nothing_is_in_flight_or_at_the_draining_time() -> None:
    assert drain_over(now=10.0, end=100.0, in_flight=0)  # nothing in flight: at once, as an ALB does
    assert not drain_over(now=10.0, end=100.0, in_flight=1)  # a request in flight: it may finish
    assert drain_over(now=100.0, end=100.0, in_flight=3)  # the draining time is over: cut


# --- scheduled actions ------------------------------------------------------------------------------------


def backend() -> AutoScalingBackend:
    return autoscaling_backends[ACCOUNT][REGION]


def put(name: str, action: str, seconds: float, **sizes: int) -> None:
    when = datetime.datetime.now(UTC) + datetime.timedelta(seconds=seconds)
    sizes = sizes or {"MinSize": 0, "MaxSize": 0, "DesiredCapacity": 0}
    client("autoscaling").put_scheduled_update_group_action(
        AutoScalingGroupName=name, ScheduledActionName=action, StartTime=when, **sizes
    )


def actions(name: str | None = None) -> list[dict[str, Any]]:
    found = client("autoscaling").describe_scheduled_actions(**({"AutoScalingGroupName": name} if name else {}))
    return list(found["ScheduledUpdateGroupActions"])


def due_time(name: str, action: str, scale: float) -> float:
    """When the runtime's clock would run ACTION of group NAME at SCALE (from the moment recorded at its put)."""
    [found] = [
        a
        for a in backend().scheduled_actions.values()
        if (a.auto_scaling_group_name, a.scheduled_action_name) == (name, action)
    ]
    put_clock, put_wall = getattr(found, PUT_AT)
    return runs_at(put_clock, put_wall, found.start_time, scale)


def refusal(call: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call()
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    return str(raised.value.response["Error"]["Message"])


def test_a_scheduled_action_is_described_as_aws_describes_it(cloud):
    """moto had no ScheduledActionARN and no Time."""
    group("asg-old", size=1)
    put("asg-old", "retire", 900)
    [action] = actions("asg-old")
    assert action["ScheduledActionARN"].startswith(
        f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:scheduledUpdateGroupAction:"
    )
    assert action["ScheduledActionARN"].endswith(":autoScalingGroupName/asg-old:scheduledActionName/retire")
    assert action["Time"] == action["StartTime"]
    assert action["StartTime"] > datetime.datetime.now(UTC) + datetime.timedelta(seconds=890)
    assert (action["MinSize"], action["MaxSize"], action["DesiredCapacity"]) == (0, 0, 0)


def test_scheduled_action_names_belong_to_their_group(cloud):
    """moto kept one name space per region: the second group's `retire` replaced the first's."""
    group("asg-old", size=1)
    group("asg-new", size=1)
    put("asg-old", "retire", 900)
    put("asg-new", "retire", 1800)
    assert sorted(a["AutoScalingGroupName"] for a in actions()) == ["asg-new", "asg-old"]
    client("autoscaling").delete_scheduled_action(AutoScalingGroupName="asg-new", ScheduledActionName="retire")
    assert [a["AutoScalingGroupName"] for a in actions()] == ["asg-old"]
    message = refusal(
        lambda: client("autoscaling").delete_scheduled_action(
            AutoScalingGroupName="asg-new", ScheduledActionName="retire"
        )
    )
    assert "not found" in message


@pytest.mark.parametrize(
    ("group_name", "seconds", "sizes", "message"),
    [
        ("asg-none", 900, {}, "AutoScalingGroup name not found"),
        ("asg-old", -60, {}, "Given start time is in the past"),
        ("asg-old", 900, {"DesiredCapacity": 0, "MinSize": 0, "MaxSize": 0, "Recurrence": "0 9 * * *"}, "Recurrence"),
    ],
    ids=["unknown-group", "past", "recurring"],
)
def test_a_scheduled_action_aws_refuses_or_the_cloud_does_not_model_is_refused(
    cloud, group_name, seconds, sizes, message
):
    """moto stored each of them."""
    group("asg-old", size=1)
    when = datetime.datetime.now(UTC) + datetime.timedelta(seconds=seconds)
    sizes = sizes or {"DesiredCapacity": 0}
    assert message in refusal(
        lambda: client("autoscaling").put_scheduled_update_group_action(
            AutoScalingGroupName=group_name, ScheduledActionName="retire", StartTime=when, **sizes
        )
    )
    assert actions() == []


def test_deleting_a_group_deletes_its_scheduled_actions(cloud):
    """moto kept them."""
    group("asg-old", size=1)
    group("asg-new", size=1)
    put("asg-old", "retire", 900)
    put("asg-new", "retire", 900)
    client("autoscaling").delete_auto_scaling_group(AutoScalingGroupName="asg-old", ForceDelete=True)
    assert [a["AutoScalingGroupName"] for a in actions()] == ["asg-new"]


def test_an_action_runs_once_at_its_scaled_time_and_is_then_gone(cloud):
    """moto never ran one. On an injected clock: not a moment before its time, once at it."""
    arn = target_group()
    old = group("asg-old", size=2, TargetGroupARNs=[arn])
    new = group("asg-new", size=1, TargetGroupARNs=[arn])
    put("asg-old", "retire", 900)
    at = due_time("asg-old", "retire", scale=0.01)

    assert run_due_actions(backend(), at - 0.001, 0.01) == []
    assert instances("asg-old") == old and len(actions()) == 1

    assert run_due_actions(backend(), at, 0.01) == ["asg-old/retire"]
    assert actions() == []  # a one-time action is removed once run
    [found] = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["asg-old"])["AutoScalingGroups"]
    assert (found["MinSize"], found["MaxSize"], found["DesiredCapacity"], found["Instances"]) == (0, 0, 0, [])
    assert targets(arn) == dict.fromkeys(new, "healthy")
    reservations = client("ec2").describe_instances(InstanceIds=old)["Reservations"]
    assert {i["State"]["Name"] for r in reservations for i in r["Instances"]} == {"terminated"}
    assert run_due_actions(backend(), at + 1000, 0.01) == []  # once


def test_a_deleted_action_never_runs(cloud):
    old = group("asg-old", size=1)
    put("asg-old", "retire", 60)
    at = due_time("asg-old", "retire", scale=0.01)
    client("autoscaling").delete_scheduled_action(AutoScalingGroupName="asg-old", ScheduledActionName="retire")
    assert run_due_actions(backend(), at + 1000, 0.01) == []
    assert instances("asg-old") == old


def test_an_action_with_min_and_max_only_moves_the_desired_capacity_into_them(cloud):
    group("asg-old", size=2)
    put("asg-old", "shrink", 60, MinSize=1, MaxSize=1)
    run_due_actions(backend(), due_time("asg-old", "shrink", 0.01), 0.01)
    assert len(instances("asg-old")) == 1


# --- a scale-in drains before it terminates ---------------------------------------------------------------


def test_a_scaled_in_instance_is_terminating_until_its_load_balancer_has_drained_it(cloud, monkeypatch):
    """moto terminated it at once, then deregistered it: a request in flight failed. Here a load balancer that is
    still draining it (what the runtime answers in the server) keeps it running, listed as Terminating."""
    arn = target_group()
    [old] = group("asg-old", size=1, TargetGroupARNs=[arn])
    [new] = group("asg-new", size=1, TargetGroupARNs=[arn])
    draining = {old}
    monkeypatch.setattr(AutoScalingBackend, "deregistration_in_progress", lambda self, i: i in draining, raising=False)

    client("autoscaling").set_desired_capacity(AutoScalingGroupName="asg-old", DesiredCapacity=0)

    [found] = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["asg-old"])["AutoScalingGroups"]
    assert found["DesiredCapacity"] == 0
    assert [(i["InstanceId"], i["LifecycleState"]) for i in found["Instances"]] == [(old, "Terminating")]
    assert targets(arn) == {new: "healthy"}  # deregistered first
    [reservation] = client("ec2").describe_instances(InstanceIds=[old])["Reservations"]
    assert reservation["Instances"][0]["State"]["Name"] == "running"
    assert finish_scale_ins(backend()) == []

    draining.clear()  # its last request finished
    assert finish_scale_ins(backend()) == [old]
    assert instances("asg-old") == []
    [reservation] = client("ec2").describe_instances(InstanceIds=[old])["Reservations"]
    assert reservation["Instances"][0]["State"]["Name"] == "terminated"


def test_a_terminating_instance_does_not_count_towards_the_desired_capacity(cloud, monkeypatch):
    group("asg-old", size=2)
    monkeypatch.setattr(AutoScalingBackend, "deregistration_in_progress", lambda self, i: True, raising=False)
    client("autoscaling").set_desired_capacity(AutoScalingGroupName="asg-old", DesiredCapacity=1)
    client("autoscaling").set_desired_capacity(AutoScalingGroupName="asg-old", DesiredCapacity=2)  # one launched
    [found] = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["asg-old"])["AutoScalingGroups"]
    states = sorted(i["LifecycleState"] for i in found["Instances"])
    assert states == ["InService", "InService", "Terminating"]


def test_without_a_load_balancer_draining_a_scale_in_terminates_within_the_call(cloud):
    """Nothing in flight (moto alone): the deregistration completes at once, as an application load balancer's."""
    arn = target_group()
    old = group("asg-old", size=2, TargetGroupARNs=[arn])
    client("autoscaling").set_desired_capacity(AutoScalingGroupName="asg-old", DesiredCapacity=0)
    assert instances("asg-old") == [] and targets(arn) == {}
    reservations = client("ec2").describe_instances(InstanceIds=old)["Reservations"]
    assert {i["State"]["Name"] for r in reservations for i in r["Instances"]} == {"terminated"}
