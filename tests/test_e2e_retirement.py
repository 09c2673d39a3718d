"""Issue 20 and issue 19's rollback within the window, end to end: the real CLI (real Packer bakes) on the embedded
cloud, real traffic through the load balancer throughout, both kinds.

- A deploy returns once the new version serves; the group it replaced is kept with its capacity (weight 0; classic:
  detached, running) with one scheduled action at its window's end; 0 failed requests.
- `inv rollback` within the window: a weight change back to the kept group (no launch, no bake, no health wait):
  every request is the previous version within one poll interval after the command returns, 0 failed requests, and
  its AWS requests counted from the run's per-call logs.
- The rolled-back group is sized 0; the cloud drains and terminates its instances; the next deploy deletes the empty
  group with its launch template and target group; the group it replaced is kept in its turn.
- `inv cleanup --wait` returns once the cloud, at the window's end, has drained and terminated the kept group, and
  deletes it: 0 failed requests during all of that.

No time is asserted (the benchmark measures it, tests/benchmark_deploy.py); KEEP_PREVIOUS_SECONDS is AWS's time,
scaled by the session server's LOCAL_TIME_SCALE (0.005: 2000 s are 10 s here).
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import ServerSite, image_of, recorded_calls, succeeded

from deploy.naming import Names
from deploy.plans.groups import serving_group
from deploy.plans.model import Group
from deploy.views.traffic import Result, Traffic

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

ENV = "keep"
RATE = 25.0  # requests a second (issue: at least 20)
POLL_S = 1.0  # POLL_SECONDS of the tests' env files
KEEP = "2000"  # KEEP_PREVIOUS_SECONDS: 10 s at the session server's scale 0.005

# `inv rollback` within the window, exactly (besides the classic kind's polls of the kept group's instances).
LOCK = {"ssm.PutParameter": 2, "ssm.GetParameter": 1, "ssm.DeleteParameter": 1}  # PutParameter: lock + history
ROLLBACK = {
    "autoscaling.DescribeAutoScalingGroups": 1,  # the environment's groups: which serves, which is kept until when
    "autoscaling.DeleteScheduledAction": 1,  # first: the kept group is about to serve
    "autoscaling.CreateOrUpdateTags": 1,  # RolledBack on the group serving now: from here on the account says so
    "autoscaling.UpdateAutoScalingGroup": 1,  # the rolled-back group sized 0: AWS drains and terminates it
}
BALANCER = {
    "application": {
        "elbv2.DescribeLoadBalancers": 1,
        "elbv2.DescribeListeners": 1,
        "elbv2.ModifyListener": 1,  # every request to the kept group's target group
        "elbv2.DescribeTags": 1,  # the summary's URL: the embedded cloud's local port (none on AWS)
    },
    "classic": {
        "autoscaling.AttachLoadBalancers": 1,  # the kept group attached again
        "autoscaling.DetachLoadBalancers": 1,  # the rolled-back one detached once the kept one is in service
        "elb.DescribeTags": 1,  # the summary's URL: the embedded cloud's local port (none on AWS)
    },
}
CLASSIC_POLL = "elb.DescribeInstanceHealth"


@contextmanager
def traffic_to(url: str) -> Iterator[Traffic]:
    traffic = Traffic(url, seconds=600, rate=RATE)
    sender = threading.Thread(target=traffic.run, daemon=True)
    sender.start()
    try:
        yield traffic
    finally:
        traffic.stop.set()
        sender.join(timeout=30)


def failed(results: list[Result]) -> list[Result]:
    return [r for r in results if not r.ok]


def after(traffic: Traffic, moment: float, count: int = 10) -> list[Result]:
    """COUNT requests or more started after MOMENT (they keep flowing: bounded wait)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = [r for r in list(traffic.results) if r.started > moment]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError("no traffic after the run")


def timed(site: ServerSite, *args: str) -> tuple[str, float, float]:
    started = time.monotonic()
    output = succeeded(site.inv(*args))
    return output, started, time.monotonic()


def serving(site: ServerSite) -> str:
    """The group that serves, by the tool's own rule (the newest promoted, not rolled back, not sized 0)."""
    found = serving_group([Group.from_aws(raw) for raw in site.groups().values()])
    assert found is not None
    return found.name


def group(site: ServerSite, name: str) -> dict | None:
    found = site.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return found[0] if found else None


def scheduled(site: ServerSite, name: str) -> list[tuple[str, int]]:
    actions = site.client("autoscaling").describe_scheduled_actions(AutoScalingGroupName=name)
    return [(a["ScheduledActionName"], a["MaxSize"]) for a in actions["ScheduledUpdateGroupActions"]]


def target_groups(site: ServerSite) -> set[str]:
    return {t["TargetGroupName"] for t in site.client("elbv2").describe_target_groups()["TargetGroups"]}


def wait_empty(site: ServerSite, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = group(site, name)
        if raw is None or not raw["Instances"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} was not emptied by the cloud")


@pytest.mark.parametrize("kind", ["classic", "application"])
def test_retirement_by_aws_and_rollback_within_the_window(kind: str, moto_server: str, tmp_path: Path) -> None:
    site = ServerSite.create(
        moto_server, ENV, tmp_path, LOAD_BALANCER=kind, DESIRED_CAPACITY="1", KEEP_PREVIOUS_SECONDS=KEEP
    )
    names = Names(app="webapp", env=ENV, domain="")
    succeeded(site.inv("setup"))
    succeeded(site.inv("deploy"))
    first = serving(site)
    url = json.loads(succeeded(site.inv("status", "--json")))["load_balancer"]["url"]

    with traffic_to(url) as traffic:
        v1 = {r.version for r in after(traffic, time.monotonic())}.pop()

        # A deploy returns when the new version serves; the first group is kept, its retirement scheduled.
        output, _, deployed = timed(site, "deploy")
        second = serving(site)
        assert second != first and f"{first} kept until " in output
        assert scheduled(site, first) == [("retire", 0)]
        kept = group(site, first)
        assert kept is not None and kept["MaxSize"] > 0 and len(kept["Instances"]) == 1
        if kind == "classic":
            assert kept["LoadBalancerNames"] == []  # detached, still running
        v2 = ({r.version for r in after(traffic, deployed) if r.ok} - {v1}).pop()
        assert {r.version for r in after(traffic, deployed + POLL_S, 20)} == {v2}
        status = json.loads(succeeded(site.inv("status", "--json")))
        assert status["window"]["group"] == first
        [entry] = [g for g in status["groups"] if g["name"] == first]
        assert entry["window_end"] == status["window"]["ends"] and entry["scheduled"]

        # Rollback within the window: a weight change; the previous version serves within one poll interval.
        output, _, rolled = timed(site, "rollback")
        calls = recorded_calls(site.latest_run())
        assert "to the kept " + first in output
        assert serving(site) == first
        assert scheduled(site, first) == []
        assert {r.version for r in after(traffic, rolled + POLL_S, 20)} == {v1}
        count = Counter(operation for _, operation in calls)
        polls = count.pop(CLASSIC_POLL, 0)
        assert count == Counter({**LOCK, **ROLLBACK, **BALANCER[kind]}), sorted(count.items())
        assert (polls >= 1) == (kind == "classic")
        rolled_back = group(site, second)
        assert rolled_back is not None and rolled_back["MaxSize"] == 0
        wait_empty(site, second)  # the cloud drained and terminated it

        # The next deploy (the image of v2 again: no bake) deletes the empty group, its template and target group.
        timed(site, "deploy", "--image-id", image_of(rolled_back))
        third = serving(site)
        assert group(site, second) is None
        assert f"lt-{second.removeprefix('asg-')}" not in site.templates()
        if kind == "application":
            assert names.group_target_group(second) not in target_groups(site)
        assert scheduled(site, first) == [("retire", 0)]  # kept in its turn

        # `inv cleanup --wait`: returns once the cloud ran the scheduled action at the window's end and terminated
        # the instances (no fixed sleep), then deletes the group.
        timed(site, "cleanup", "--wait")
        assert group(site, first) is None and list(site.groups()) == [third]
        if kind == "application":
            assert target_groups(site) == {names.group_target_group(third)}
        assert len(after(traffic, time.monotonic(), 10)) >= 10

    results = list(traffic.results)
    assert len(results) > RATE * 10
    assert not failed(results), [(r.status, r.error) for r in failed(results)[:5]]
