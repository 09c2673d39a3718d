"""Kill -9 at any line of a rollback within the window, and of a deploy from its launch to its end: the run stops
at an AWS write (before it is sent), and the next command (`inv cleanup`) converges.

At every kill point, and after the next run: a scheduled action is never left on the group that serves (by the
account's own rule: the newest promoted group, not rolled back, not sized 0), and that group is never sized 0. After
the next run: every request goes to it (ALB: weight 100; classic: attached), at most one other group is kept for
its window (with its scheduled retirement), every other one is sized 0 or gone.

In-process on mock_aws (the kill: an exception no step catches, raised from botocore's before-call hook of the Nth
write); the fake clock of tests/operator_env.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import new_run
from operator_env import FakeClock, bake_image, client, create_zone, deploy, make_environment, set_up

from deploy.environment import Environment
from deploy.pipeline import LAUNCH_ASG, rollback, run
from deploy.plans.groups import serving_group
from deploy.plans.model import RETIRE_ACTION, Group
from deploy.plans.stages import Request
from deploy.steps.cleanup import cleanup

SERVICES = ("autoscaling", "elbv2", "elb", "ec2", "ssm")


class Killed(BaseException):
    """kill -9: nothing after it runs (no step catches a BaseException but to clean up and re-raise)."""


class Killer:
    """Raises Killed before the AT-th write request of the run; counts the writes."""

    def __init__(self, at: int) -> None:
        self.at, self.writes, self.armed = at, 0, True

    def __call__(self, model: Any, **_: Any) -> None:
        if not self.armed or model.name.startswith(("Describe", "Get", "List")):
            return
        self.writes += 1
        if self.writes == self.at:
            self.armed = False
            raise Killed(model.name)


@pytest.fixture
def cloud(cloud: None) -> None:
    create_zone()


def environment_of(tmp_path: Path, kind: str) -> Environment:
    environment = make_environment(tmp_path, kind=kind, extra="DESIRED_CAPACITY=1\nMIN_CAPACITY=1\n")
    clock = FakeClock()
    environment.clock, environment.sleep = clock, clock.sleep
    return set_up(environment)


def killing(environment: Environment, at: int) -> Killer:
    killer = Killer(at)
    for service in SERVICES:
        environment.aws.client(service).meta.events.register("before-call", killer)
    return killer


def groups() -> list[Group]:
    raw = client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return [Group.from_aws(group) for group in raw]


def scheduled(name: str) -> list[str]:
    found = client("autoscaling").describe_scheduled_actions(AutoScalingGroupName=name)
    return [action["ScheduledActionName"] for action in found["ScheduledUpdateGroupActions"]]


def assert_safe() -> Group:
    """What must hold at every moment: the serving group is not sized 0 and carries no scheduled action."""
    serving = serving_group(groups())
    assert serving is not None
    assert serving.max_size != 0, f"the serving group {serving.name} was sized 0"
    assert scheduled(serving.name) == [], f"a scheduled action on the serving group {serving.name}"
    return serving


def assert_converged(environment: Environment, kind: str) -> None:
    serving = assert_safe()
    others = [group for group in groups() if group.name != serving.name]
    kept = [group for group in others if not group.scaled_in]
    assert len(kept) <= 1, f"more than one group kept: {[g.name for g in kept]}"
    for group in kept:
        assert scheduled(group.name) == [RETIRE_ACTION], f"{group.name} kept without its scheduled retirement"
    balancer = new_run(environment).load_balancer
    if kind == "application":
        own = environment.names.group_target_group(serving.name)
        weights = {arn.split(":targetgroup/")[1].split("/")[0]: w for arn, w in balancer.weights().items()}
        assert weights[own] == 100 and sum(weights.values()) == 100, weights
    else:
        assert balancer.attached_to(serving.raw), f"the serving group {serving.name} is not attached"


def run_killed(environment: Environment, at: int, command: Any) -> bool:
    """COMMAND killed at the AT-th write; True if it was (False: it ended before that write)."""
    killer = killing(new_run(environment), at)
    try:
        command()
    except Killed:
        return True
    finally:
        killer.armed = False
    return False


@pytest.mark.parametrize("kind", ["application", "classic"])
@pytest.mark.parametrize("at", range(1, 9))
def test_a_rollback_within_the_window_killed_at_any_write_converges(cloud, tmp_path, kind, at):
    environment = environment_of(tmp_path, kind)
    kept, _ = deploy(environment)
    deploy(environment)
    cleanup(new_run(environment))  # the deploy's end: the kept group's retirement scheduled
    assert scheduled(kept) == [RETIRE_ACTION]

    killed = run_killed(environment, at, lambda: rollback(environment))

    if not killed:
        assert serving_group(groups()).name == kept  # it ran to its end before that write
        pytest.skip(f"the rollback makes fewer than {at} writes")
    assert_safe()
    cleanup(new_run(environment))
    assert_converged(environment, kind)


@pytest.mark.parametrize("kind", ["application", "classic"])
@pytest.mark.parametrize("at", range(1, 15))
def test_a_deploy_killed_at_any_write_converges(cloud, tmp_path, kind, at):
    environment = environment_of(tmp_path, kind)
    deploy(environment)
    deploy(environment)
    cleanup(new_run(environment))  # one group kept, its retirement scheduled
    image = bake_image("staging")

    killed = run_killed(environment, at, lambda: run(environment, Request(image_id=image), start=LAUNCH_ASG.name))

    if not killed:
        pytest.skip(f"the deploy makes fewer than {at} writes")
    assert_safe()
    cleanup(new_run(environment))
    assert_converged(environment, kind)
