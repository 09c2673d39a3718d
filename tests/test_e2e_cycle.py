"""The whole life of an environment, for both kinds of load balancer: setup → deploy → deploy →
a deploy that never gets healthy (aborted) → rollback.

Real CLI subprocesses (`inv …`) against the session's moto server, with the real Packer. During every
deploy after the first, a watcher thread counts the instances the load balancer serves (classic:
InService; application: `healthy` targets whose instance is running, as moto keeps terminated
instances "healthy") and the test asserts zero downtime: the count never drops below the desired
capacity of the serving group, and both groups serve side by side before the old one is retired.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import REGION, REPO, TEST_ENV, run_inv, subprocess_env

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

STACK = f"webapp-{TEST_ENV}"
GROUP_PREFIX = f"asg-{STACK}-"
DESIRED = 2
HEALTH_TIMEOUT = 3
RUN_TIMEOUT_S = 120.0
LOAD_BALANCERS = {"classic": f"elb-{STACK}", "application": f"alb-{STACK}"}


@dataclass
class Cloud:
    """The test's view of the moto server: groups, and what the load balancer serves."""

    url: str
    kind: str

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def groups(self) -> dict[str, dict[str, Any]]:
        found = self.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        return {g["AutoScalingGroupName"]: g for g in found if g["AutoScalingGroupName"].startswith(GROUP_PREFIX)}

    def serving_group(self) -> dict[str, Any]:
        groups = self.groups()
        assert len(groups) == 1, f"expected exactly one group, found {sorted(groups)}"
        return next(iter(groups.values()))

    def registered(self) -> dict[str, str]:
        """Every instance registered at the load balancer, with its state there."""
        if self.kind == "classic":
            states = self.client("elb").describe_instance_health(LoadBalancerName=LOAD_BALANCERS["classic"])
            return {s["InstanceId"]: s["State"] for s in states["InstanceStates"]}
        elbv2 = self.client("elbv2")
        [group] = elbv2.describe_target_groups(Names=[f"tg-{STACK}"])["TargetGroups"]
        found = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
        return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in found}

    def serving(self) -> set[str]:
        """Instances that receive traffic: InService (classic) or healthy and running (application)."""
        states = self.registered()
        if self.kind == "classic":
            return {i for i, state in states.items() if state == "InService"}
        healthy = [i for i, state in states.items() if state == "healthy"]
        if not healthy:
            return set()
        # moto divergence: terminated instances can stay registered and "healthy"; they serve nothing.
        reservations = self.client("ec2").describe_instances(InstanceIds=healthy)["Reservations"]
        return {i["InstanceId"] for r in reservations for i in r["Instances"] if i["State"]["Name"] == "running"}


def instance_ids(group: dict[str, Any]) -> set[str]:
    return {i["InstanceId"] for i in group["Instances"]}


def image_of(group: dict[str, Any]) -> str:
    return {t["Key"]: t["Value"] for t in group["Tags"]}["Image"]


@dataclass
class ServingWatch:
    """A thread counting, every 20 ms, the instances the load balancer serves, until stopped."""

    cloud: Cloud
    counts: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> ServingWatch:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not self.done.is_set() and time.monotonic() < deadline:
            try:
                self.counts.append(len(self.cloud.serving()))
            except ClientError as error:
                self.errors.append(str(error))
            time.sleep(0.02)

    def assert_zero_downtime(self, overlap: bool) -> None:
        assert len(self.counts) >= 20, f"the watcher saw too little ({len(self.counts)} polls; {self.errors[:3]})"
        assert not self.errors, self.errors[:3]
        assert min(self.counts) >= DESIRED, f"serving dropped below {DESIRED}: {compress(self.counts)}"
        if overlap:
            assert max(self.counts) >= 2 * DESIRED, f"the groups never served side by side: {compress(self.counts)}"


def compress(counts: list[int]) -> list[tuple[int, int]]:
    """[(count, how many polls in a row)]: readable assertion messages."""
    runs: list[tuple[int, int]] = []
    for count in counts:
        if runs and runs[-1][0] == count:
            runs[-1] = (count, runs[-1][1] + 1)
        else:
            runs.append((count, 1))
    return runs


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    return result.stdout


def inv(*args: str) -> subprocess.CompletedProcess[str]:
    return run_inv(*args, "--env", TEST_ENV, timeout=RUN_TIMEOUT_S)


def assert_serves_alone(cloud: Cloud, group: dict[str, Any]) -> None:
    """GROUP's instances all serve, and nothing else is registered (no leftover of a retired group)."""
    ids = instance_ids(group)
    assert len(ids) == DESIRED
    serving_state = "InService" if cloud.kind == "classic" else "healthy"
    assert cloud.registered() == dict.fromkeys(ids, serving_state)
    assert cloud.serving() == ids


def deploy_that_never_gets_healthy(cloud: Cloud, old_name: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`inv deploy` while a thread stops the new group's instances through EC2 as soon as they exist.

    wait-health needs two all-healthy polls POLL_SECONDS (1 s) apart: the thread has about a second.
    A stopped instance is OutOfService at a classic load balancer and `unused` in a target group.
    """
    found: dict[str, Any] = {}
    stop = threading.Event()

    def stop_the_new_group() -> None:
        autoscaling, ec2 = cloud.client("autoscaling"), cloud.client("ec2")
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline and not stop.is_set():
            for group in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]:
                name = group["AutoScalingGroupName"]
                if name.startswith(GROUP_PREFIX) and name != old_name and len(group["Instances"]) >= DESIRED:
                    ec2.stop_instances(InstanceIds=sorted(instance_ids(group)))
                    found.update(name=name, template=group["LaunchTemplate"]["LaunchTemplateName"])
                    return
            time.sleep(0.02)

    stopper = threading.Thread(target=stop_the_new_group, daemon=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "invoke", "deploy", "--env", TEST_ENV],
        cwd=REPO,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stopper.start()
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.communicate()
        stopper.join(timeout=10)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), found


@pytest.mark.parametrize("kind", ["classic", "application"])
def test_setup_deploy_deploy_abort_and_rollback(kind, env_dir, work_dir, fresh_cloud, tmp_path):
    app = tmp_path / "app"  # a private copy: concurrent runs never share example-app/dist
    app.mkdir()
    for name in ("build.py", "server.py"):
        shutil.copy2(REPO / "example-app" / name, app / name)
    with (env_dir / f"{TEST_ENV}.env").open("a", encoding="utf-8") as env_file:
        env_file.write(
            f"LOAD_BALANCER={kind}\nDESIRED_CAPACITY={DESIRED}\nHEALTH_TIMEOUT={HEALTH_TIMEOUT}\n"
            f"APP_DIR={os.path.relpath(app, REPO)}\n"
        )
    cloud = Cloud(fresh_cloud, kind)
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
    first = cloud.serving_group()
    assert_serves_alone(cloud, first)

    # Second deploy: both groups serve side by side, then the old one is detached, drained, deleted.
    with ServingWatch(cloud) as watch:
        output = succeeded(inv("deploy"))
    second = cloud.serving_group()
    assert second["AutoScalingGroupName"] > first["AutoScalingGroupName"]
    assert image_of(second) != image_of(first)
    assert f"retiring {first['AutoScalingGroupName']}: detaching from {balancer}" in output
    assert_serves_alone(cloud, second)
    watch.assert_zero_downtime(overlap=True)

    # A deploy that never gets healthy: removed, the serving group untouched and still serving.
    with ServingWatch(cloud) as watch:
        result, found = deploy_that_never_gets_healthy(cloud, second["AutoScalingGroupName"])
    output = result.stdout + result.stderr
    assert found, f"the new group never appeared:\n{output}"
    assert result.returncode != 0, output
    assert "Traceback" not in output
    assert f"The new group {found['name']} was not healthy within {HEALTH_TIMEOUT}s" in result.stderr
    assert "the previous group keeps serving" in result.stderr
    assert found["name"] not in cloud.groups()
    still = cloud.serving_group()
    assert still["AutoScalingGroupName"] == second["AutoScalingGroupName"]
    assert instance_ids(still) == instance_ids(second)
    assert_serves_alone(cloud, still)
    watch.assert_zero_downtime(overlap=False)
    templates = cloud.client("ec2").describe_launch_templates()["LaunchTemplates"]
    assert found["template"] not in {t["LaunchTemplateName"] for t in templates}

    # Rollback: the first deploy's image comes back through the same zero-downtime path.
    with ServingWatch(cloud) as watch:
        output = succeeded(inv("rollback"))
    rolled_back = cloud.serving_group()
    assert rolled_back["AutoScalingGroupName"] > second["AutoScalingGroupName"]
    assert image_of(rolled_back) == image_of(first)
    assert f"rolling back from {image_of(second)} to {image_of(first)}" in output
    assert f"retiring {second['AutoScalingGroupName']}: detaching from {balancer}" in output
    assert_serves_alone(cloud, rolled_back)
    watch.assert_zero_downtime(overlap=True)
