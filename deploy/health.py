"""`inv wait-health`: wait, bounded, until every instance of the new group is healthy; else remove it.

Also home of the one waiting helper every bounded wait of the tool uses.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.groups import (
    PENDING,
    PROMOTED_TAG,
    Group,
    delete_launch_template,
    describe_group,
    promote,
)

DELETE_TIMEOUT_S = 600
STEADY_POLLS = 2  # consecutive all-healthy polls before a new group is promoted


@dataclass
class Waiter:
    """Polls a check until it is done or a deadline passes: bounded in time and in number of polls.

    Clock and sleep are injected so that tests never sleep for real.
    """

    timeout_s: float
    poll_s: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    stop: threading.Event | None = None  # set from another thread: give up at the next poll

    def until(self, check: Callable[[], tuple[bool, str]], progress: Callable[[str], None]) -> tuple[bool, str]:
        deadline = self.clock() + self.timeout_s
        max_polls = int(self.timeout_s / self.poll_s) + 2
        status = ""
        for _ in range(max_polls):
            done, status = check()
            progress(status)
            if done:
                return True, status
            remaining = deadline - self.clock()
            if remaining <= 0 or (self.stop is not None and self.stop.is_set()):
                break
            self.sleep(min(self.poll_s, remaining))
        return False, status


def waiter_for(environment: Environment, timeout_s: float) -> Waiter:
    return Waiter(timeout_s=timeout_s, poll_s=float(environment.config.poll_seconds))  # type: ignore[arg-type]


@dataclass(frozen=True)
class GroupHealth:
    desired: int
    healthy_in_group: int
    running: int
    in_service_at_lb: int

    @property
    def ready(self) -> int:
        return min(self.healthy_in_group, self.running, self.in_service_at_lb)

    @property
    def done(self) -> bool:
        return self.desired > 0 and self.ready >= self.desired

    def line(self) -> str:
        return (
            f"  {self.ready}/{self.desired} healthy"
            f" (group InService+Healthy {self.healthy_in_group}, running {self.running},"
            f" InService at load balancer {self.in_service_at_lb})"
        )


def assess(raw_group: dict[str, Any], ec2_states: dict[str, str], lb_states: dict[str, str]) -> GroupHealth:
    """Pure: how many of the group's instances are healthy at the group, at EC2 and at the load balancer."""
    members = [
        i
        for i in raw_group.get("Instances", [])
        if i["LifecycleState"] == "InService" and i["HealthStatus"] == "Healthy"
    ]
    ids = [i["InstanceId"] for i in members]
    return GroupHealth(
        desired=int(raw_group.get("DesiredCapacity", 0)),
        healthy_in_group=len(ids),
        running=sum(1 for i in ids if ec2_states.get(i) == "running"),
        in_service_at_lb=sum(1 for i in ids if lb_states.get(i) == "InService"),
    )


def group_health(environment: Environment, group_name: str) -> GroupHealth:
    raw = describe_group(environment, group_name)
    if raw is None:
        raise DeployError(f"Group {group_name} no longer exists.")
    ids = [i["InstanceId"] for i in raw.get("Instances", [])]
    ec2_states: dict[str, str] = {}
    if ids:
        # A filter, not InstanceIds: an instance launched a moment ago may not be describable by id yet.
        reservations = environment.aws.ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": ids}])[
            "Reservations"
        ]
        ec2_states = {i["InstanceId"]: i["State"]["Name"] for r in reservations for i in r["Instances"]}
    return assess(raw, ec2_states, environment.load_balancer.serving_states(ids))


def wait_for_new_group(environment: Environment, timeout_s: int | None = None, keep_on_failure: bool = False) -> str:
    """Wait for the group launch-asg recorded; promote it when healthy, remove it when not (or on Ctrl-C)."""
    pending = environment.state.get(PENDING)
    if not pending:
        raise DeployError(f"No newly launched group is waiting in {environment.env}: run `inv launch-asg` first.")
    group_name = pending["group"]
    if describe_group(environment, group_name) is None:
        environment.state.put(PENDING, None)
        raise DeployError(
            f"The recorded new group {group_name} no longer exists; launch another with `inv launch-asg`."
        )
    timeout = timeout_s or int(environment.config.health_timeout)  # type: ignore[arg-type]
    environment.say(f"  waiting up to {timeout}s for {group_name}")
    try:
        healthy, status = waiter_for(environment, timeout).until(
            steady_check(lambda: group_health(environment, group_name)), environment.log.progress
        )
        environment.log.end_progress()
    except BaseException:
        environment.log.end_progress()
        if not keep_on_failure:
            abort_new_group(environment, pending, reason="interrupted")
        raise
    if not healthy:
        what = "detached and kept for debugging (--keep-on-failure)" if keep_on_failure else "removed"
        if keep_on_failure:
            # Its instances stay up to be inspected, but none of them may serve the failed release.
            environment.load_balancer.detach_group(group_name)
        else:
            abort_new_group(environment, pending, reason="unhealthy")
        raise DeployError(
            f"The new group {group_name} was not healthy within {timeout}s ({status.strip()}). It was {what};"
            " the previous group keeps serving, untouched."
        )
    promote(environment, group_name, pending["image_id"])
    environment.say(f"  {group_name} is healthy and serving")
    return group_name


def steady_check(measure: Callable[[], GroupHealth], polls: int = STEADY_POLLS) -> Callable[[], tuple[bool, str]]:
    """Done only when every instance was healthy on POLLS consecutive polls, like a healthy threshold:
    a group that flaps right after launch is not promoted."""
    streak = 0

    def check() -> tuple[bool, str]:
        nonlocal streak
        health = measure()
        streak = streak + 1 if health.done else 0
        suffix = f" — steady {streak}/{polls}" if 0 < streak < polls else ""
        return streak >= polls, health.line() + suffix

    return check


def abort_new_group(environment: Environment, pending: dict[str, Any], reason: str) -> None:
    """Remove a group that never became healthy, and its launch template; the serving group stays untouched."""
    if not pending:
        return
    group_name = pending["group"]
    raw = describe_group(environment, group_name)
    if raw is not None and Group.from_aws(raw).tags.get(PROMOTED_TAG):
        # It took over already (the record of its promotion was lost): it serves, never remove it.
        environment.state.put(PENDING, None)
        return
    environment.say(f"  removing the new group {group_name} ({reason}); the previous group keeps serving")
    if raw is not None:
        remove_group(environment, Group(name=group_name))
    delete_launch_template(environment, pending["launch_template"])
    environment.state.put(PENDING, None)


def remove_group(environment: Environment, group: Group, timeout_s: float = DELETE_TIMEOUT_S) -> None:
    """Detach from the load balancer first (it drains), then delete with its instances; wait until gone.

    Detaching first is right on AWS and also needed on moto, where changing a still-attached group
    rewrites the load balancer's instance list.
    """
    autoscaling = environment.aws.autoscaling
    environment.load_balancer.detach_group(group.name)
    autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group.name, ForceDelete=True)
    gone, _ = Waiter(timeout_s, float(environment.config.poll_seconds)).until(  # type: ignore[arg-type]
        lambda: (describe_group(environment, group.name, include_deleting=True) is None, f"  deleting {group.name}"),
        lambda _: None,
    )
    if not gone:
        raise DeployError(f"Group {group.name} was still being deleted after {timeout_s:.0f}s; re-run cleanup.")
