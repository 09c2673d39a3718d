"""The whole life of an environment, for both kinds of load balancer: setup → deploy → deploy →
a deploy that never gets healthy (aborted) → rollback.

Real CLI subprocesses (`inv …`) against the session's moto server, with the real Packer. During every
deploy after the first, a watcher thread counts the instances the load balancer serves (classic:
InService; application: `healthy` targets whose instance is running) and the test asserts zero downtime:
the count never drops below the desired capacity of the serving group, and both groups serve side by side
before the old one is retired.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

import pytest
from conftest import (
    REPO,
    RUN_TIMEOUT_S,
    TEST_ENV,
    ServerView,
    Watch,
    copy_example_app,
    image_of,
    instance_ids,
    instance_stopper,
    run_inv,
    succeeded,
    watching,
)

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

STACK = f"webapp-{TEST_ENV}"
DESIRED = 2
HEALTH_TIMEOUT = 3
LOAD_BALANCERS = {"classic": f"elb-{STACK}", "application": f"alb-{STACK}"}


@dataclass
class Cloud(ServerView):
    """The test's view of the moto server: groups, and what the load balancer of KIND serves."""

    kind: str

    def registered(self) -> dict[str, str]:
        """Every instance registered at the load balancer, with its state there."""
        if self.kind == "classic":
            return self.lb_states()
        # Application: the targets of every target group the listener forwards to with a weight above 0 (each group
        # has its own; one at weight 0 takes no request).
        elbv2 = self.client("elbv2")
        [alb] = elbv2.describe_load_balancers(Names=[f"alb-{STACK}"])["LoadBalancers"]
        [listener] = elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
        action = listener["DefaultActions"][0]
        weighted = (action.get("ForwardConfig") or {}).get("TargetGroups") or [
            {"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}
        ]
        states: dict[str, str] = {}
        for group in weighted:
            if group.get("Weight", 1):
                found = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
                states.update({d["Target"]["Id"]: d["TargetHealth"]["State"] for d in found})
        return states

    def serving_instances(self) -> set[str]:
        """Instances that receive traffic: InService (classic) or healthy and running (application)."""
        states = self.registered()
        if self.kind == "classic":
            return {i for i, state in states.items() if state == "InService"}
        healthy = [i for i, state in states.items() if state == "healthy"]
        if not healthy:
            return set()
        # Belt and braces: a target serves only while its instance runs.
        reservations = self.client("ec2").describe_instances(InstanceIds=healthy)["Reservations"]
        return {i["InstanceId"] for r in reservations for i in r["Instances"] if i["State"]["Name"] == "running"}


def assert_zero_downtime(watch: Watch, overlap: bool, kind: str) -> None:
    assert len(watch.counts) >= 20, f"the watcher saw too little ({len(watch.counts)} polls; {watch.errors[:3]})"
    assert not watch.errors, watch.errors[:3]
    assert min(watch.counts) >= DESIRED, f"serving dropped below {DESIRED}: {compress(watch.counts)}"
    if overlap and kind == "classic":  # an ALB moves the requests by weight, at once: no side by side
        assert max(watch.counts) >= 2 * DESIRED, f"the groups never served side by side: {compress(watch.counts)}"


def compress(counts: list[int]) -> list[tuple[int, int]]:
    """[(count, how many polls in a row)]: readable assertion messages."""
    runs: list[tuple[int, int]] = []
    for count in counts:
        if runs and runs[-1][0] == count:
            runs[-1] = (count, runs[-1][1] + 1)
        else:
            runs.append((count, 1))
    return runs


def inv(*args: str) -> subprocess.CompletedProcess[str]:
    return run_inv(*args, "--env", TEST_ENV, timeout=RUN_TIMEOUT_S)


def assert_serves_alone(cloud: Cloud, group: dict[str, Any]) -> None:
    """GROUP's instances all serve, and nothing else is registered (no leftover of a retired group)."""
    ids = instance_ids(group)
    assert len(ids) == DESIRED
    serving_state = "InService" if cloud.kind == "classic" else "healthy"
    assert cloud.registered() == dict.fromkeys(ids, serving_state)
    assert cloud.serving_instances() == set(ids)


def deploy_that_never_gets_healthy(cloud: Cloud, old_name: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`inv deploy` while a thread stops the new group's instances through EC2 as soon as they exist.

    wait-health needs two all-healthy polls POLL_SECONDS (1 s) apart: the thread has about a second.
    A stopped instance is OutOfService at a classic load balancer and `unused` in a target group.
    """
    with instance_stopper(cloud, old_name, DESIRED) as found:
        result = inv("deploy")
    return result, found


@pytest.mark.parametrize("kind", ["classic", "application"])
def test_setup_deploy_deploy_abort_and_rollback(kind, env_dir, work_dir, fresh_cloud, tmp_path):
    app = copy_example_app(tmp_path / "app")
    with (env_dir / f"{TEST_ENV}.env").open("a", encoding="utf-8") as env_file:
        env_file.write(
            f"LOAD_BALANCER={kind}\nDESIRED_CAPACITY={DESIRED}\nHEALTH_TIMEOUT={HEALTH_TIMEOUT}\n"
            f"APP_DIR={os.path.relpath(app, REPO)}\n"
        )
    cloud = Cloud(fresh_cloud, TEST_ENV, kind)
    balancer = LOAD_BALANCERS[kind]

    # setup: the load balancer of the chosen kind, and nothing of the other kind.
    output = succeeded(inv("setup"))
    assert f"created load balancer {balancer}" in output
    assert f"→ {balancer} ({kind} load balancer)" in output
    other = cloud.client("elbv2").describe_load_balancers()["LoadBalancers"] if kind == "classic" else []
    other += cloud.client("elb").describe_load_balancers()["LoadBalancerDescriptions"] if kind == "application" else []
    assert other == []

    # First deploy: bake, launch, wait, nothing to retire.
    output = succeeded(inv("deploy"))
    assert "baked primal image" in output and "baked carnivore image" in output
    first = cloud.serving()
    assert_serves_alone(cloud, first)

    # Second deploy: both groups serve side by side, then the old one is handed to AWS (sized 0: drained, terminated).
    with watching(lambda: len(cloud.serving_instances())) as watch:
        output = succeeded(inv("deploy"))
    second = cloud.serving()
    assert second["AutoScalingGroupName"] > first["AutoScalingGroupName"]
    assert image_of(second) != image_of(first)
    assert f"sized group {first['AutoScalingGroupName']} 0" in output and balancer in output
    assert_serves_alone(cloud, second)
    assert_zero_downtime(watch, overlap=True, kind=cloud.kind)

    # A deploy that never gets healthy: removed, the serving group untouched and still serving.
    with watching(lambda: len(cloud.serving_instances())) as watch:
        result, found = deploy_that_never_gets_healthy(cloud, second["AutoScalingGroupName"])
    output = result.stdout + result.stderr
    assert found, f"the new group never appeared:\n{output}"
    assert result.returncode != 0, output
    assert "Traceback" not in output
    assert f"The new group {found['name']} was not healthy within {HEALTH_TIMEOUT}s" in result.stderr
    assert "the previous group keeps serving" in result.stderr
    assert found["name"] not in cloud.groups()
    still = cloud.serving()
    assert still["AutoScalingGroupName"] == second["AutoScalingGroupName"]
    assert instance_ids(still) == instance_ids(second)
    assert_serves_alone(cloud, still)
    assert_zero_downtime(watch, overlap=False, kind=cloud.kind)
    templates = cloud.client("ec2").describe_launch_templates()["LaunchTemplates"]
    assert found["template"] not in {t["LaunchTemplateName"] for t in templates}

    # Rollback: the first deploy's image comes back through the same zero-downtime path.
    with watching(lambda: len(cloud.serving_instances())) as watch:
        output = succeeded(inv("rollback"))
    rolled_back = cloud.serving()
    assert rolled_back["AutoScalingGroupName"] > second["AutoScalingGroupName"]
    assert image_of(rolled_back) == image_of(first)
    assert f"rolling back from {image_of(second)} to {image_of(first)}" in output
    assert f"sized group {second['AutoScalingGroupName']} 0" in output
    assert_serves_alone(cloud, rolled_back)
    assert_zero_downtime(watch, overlap=True, kind=cloud.kind)
