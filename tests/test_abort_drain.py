"""An aborted deploy drains a new group that has served (its instances were InService at the load balancer),
for at most the draining time, before deleting it; a group that never served goes at once; --keep-on-failure
keeps it. In-process on mock_aws, on a fake clock: the draining is a patched answer of the load balancer."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from conftest import REGION
from operator_env import FakeClock, bake_image, deploy, make_environment, set_up

from deploy.aws.loadbalancers import DRAINING_TIMEOUT_S
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import abort_new_group
from deploy.steps.launch_asg import launch_group, leftover_launch
from deploy.steps.wait_health import wait_then_shift_traffic


@pytest.fixture
def cloud(cloud: None) -> None:
    boto3.client("route53", region_name=REGION).create_hosted_zone(Name="example.com", CallerReference="zone")


def deployed(tmp_path) -> tuple[Environment, FakeClock, str]:
    """staging, deployed once, with a new group launched (InService at once in moto): (env, clock, new group)."""
    clock = FakeClock()
    environment = set_up(make_environment(tmp_path, extra="DESIRED_CAPACITY=1\nMIN_CAPACITY=1\n"))
    environment.clock, environment.sleep = clock, clock.sleep
    deploy(environment)
    return environment, clock, launch_group(environment, image_id=bake_image("staging"))


def autoscaling_calls(environment: Environment, clock: FakeClock) -> list[tuple[str, float]]:
    calls: list[tuple[str, float]] = []
    environment.aws.autoscaling.meta.events.register(
        "before-call.auto-scaling", lambda model, **_: calls.append((model.name, clock()))
    )
    return calls


def drains_for(environment: Environment, clock: FakeClock, seconds: float) -> None:
    """The load balancer reports the group detached only SECONDS after the first question (connection draining)."""
    balancer = environment.load_balancer
    original = balancer.group_detached
    asked: list[float] = []

    def group_detached(name: str) -> bool:
        asked.append(clock())
        return clock() - asked[0] >= seconds and original(name)

    balancer.group_detached = group_detached  # type: ignore[method-assign]


def when(calls: list[tuple[str, float]], operation: str) -> float:
    return next(at for name, at in calls if name == operation)


def exists(name: str) -> bool:
    client = boto3.client("autoscaling", region_name=REGION)
    return bool(client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"])


def test_a_new_group_that_served_drains_before_it_is_deleted(cloud, tmp_path):
    environment, clock, new = deployed(tmp_path)
    drains_for(environment, clock, 40)
    calls = autoscaling_calls(environment, clock)
    start = clock()

    abort_new_group(environment, leftover_launch(environment), reason="unhealthy")

    assert when(calls, "DetachLoadBalancers") == start
    assert start + 40 <= when(calls, "DeleteAutoScalingGroup") < start + 40 + environment.config.poll_seconds + 1
    assert not exists(new)
    assert f"draining {new}" in environment.log.out.getvalue()


def test_draining_is_bounded_by_the_draining_time(cloud, tmp_path):
    environment, clock, new = deployed(tmp_path)
    drains_for(environment, clock, 10_000)  # never done
    calls = autoscaling_calls(environment, clock)
    start = clock()

    abort_new_group(environment, leftover_launch(environment), reason="interrupted")

    assert when(calls, "DeleteAutoScalingGroup") == pytest.approx(start + DRAINING_TIMEOUT_S)
    assert not exists(new)


def test_a_new_group_that_never_served_is_deleted_at_once(cloud, tmp_path):
    environment, clock, new = deployed(tmp_path)
    boto3.client("ec2", region_name=REGION).stop_instances(
        InstanceIds=[i["InstanceId"] for i in _group(new)["Instances"]]
    )  # OutOfService at the load balancer: it never took a request
    drains_for(environment, clock, 10_000)
    calls = autoscaling_calls(environment, clock)
    start = clock()

    abort_new_group(environment, leftover_launch(environment), reason="unhealthy")

    assert when(calls, "DeleteAutoScalingGroup") == start
    assert not exists(new)


def test_keep_on_failure_keeps_a_group_that_served(cloud, tmp_path):
    environment, clock, new = deployed(tmp_path)
    calls = autoscaling_calls(environment, clock)
    # Healthy at the load balancer but never steadily so: the health wait times out.
    environment.load_balancer.serving_states = lambda ids=None, group=None: {i: "OutOfService" for i in ids or []}  # type: ignore[method-assign]

    with pytest.raises(DeployError, match="kept for debugging"):
        wait_then_shift_traffic(environment, timeout_s=5, keep_on_failure=True)

    assert exists(new)
    assert "DeleteAutoScalingGroup" not in [name for name, _ in calls]


def _group(name: str) -> dict[str, Any]:
    client = boto3.client("autoscaling", region_name=REGION)
    [found] = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return found
