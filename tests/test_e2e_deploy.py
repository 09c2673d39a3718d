"""End to end: `inv setup` and `inv deploy` as subprocesses, real Packer, the session's moto server.

One environment (`e2e`) is set up and deployed once for the whole module; each test then deploys
on top of whatever serves at its start, so the tests read the serving group from the cloud instead
of assuming what an earlier test left. The app is built from a copy of example-app in a temporary
folder, so concurrent runs never share example-app/dist.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import (
    FAKE_CREDENTIALS,
    REGION,
    REPO,
    STRAY_VARIABLES,
    _settings_keys,
    local_env_text,
    run_inv,
    subprocess_env,
    write_env_folder,
)

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

ENV = "e2e"
STACK = f"webapp-{ENV}"
LOAD_BALANCER = f"elb-{STACK}"
GROUP_PREFIX = f"asg-{STACK}-"
DESIRED = 2
HEALTH_TIMEOUT = 6
DEPLOY_TIMEOUT_S = 120.0


@dataclass
class Site:
    """The module's environment: where its files are, how to run the CLI on it, and its cloud."""

    url: str
    env_dir: Path
    work_dir: Path
    overrides: dict[str, str | None] = field(default_factory=dict)

    def inv(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_inv(*args, "--env", ENV, env=self.overrides, timeout=DEPLOY_TIMEOUT_S)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "invoke", *args, "--env", ENV],
            cwd=REPO,
            env=subprocess_env(self.overrides),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

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

    def serving(self) -> dict[str, Any]:
        """The one group of the environment (every test starts and ends with exactly one)."""
        groups = self.groups()
        assert len(groups) == 1, f"expected one group of {ENV}, found {sorted(groups)}"
        return next(iter(groups.values()))

    def templates(self) -> list[str]:
        found = self.client("ec2").describe_launch_templates()["LaunchTemplates"]
        return sorted(t["LaunchTemplateName"] for t in found if t["LaunchTemplateName"].startswith(f"lt-{STACK}-"))

    def lb_states(self, instance_ids: list[str] | None = None) -> dict[str, str]:
        params: dict[str, Any] = {"LoadBalancerName": LOAD_BALANCER}
        if instance_ids:
            params["Instances"] = [{"InstanceId": i} for i in instance_ids]
        states = self.client("elb").describe_instance_health(**params)["InstanceStates"]
        return {s["InstanceId"]: s["State"] for s in states}

    def image(self, image_id: str) -> dict[str, Any] | None:
        try:
            found = self.client("ec2").describe_images(ImageIds=[image_id])["Images"]
        except ClientError as error:
            assert error.response["Error"]["Code"] == "InvalidAMIID.NotFound"
            return None
        return found[0] if found else None

    def snapshot_exists(self, snapshot_id: str) -> bool:
        try:
            return bool(self.client("ec2").describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"])
        except ClientError as error:
            assert error.response["Error"]["Code"] == "InvalidSnapshot.NotFound"
            return False

    def state(self) -> dict[str, Any]:
        return json.loads((self.work_dir / "deploy" / "state" / f"{ENV}.json").read_text(encoding="utf-8"))

    def latest_run(self) -> Path:
        return (self.work_dir / "deploy" / "log" / ENV / "latest").resolve()

    def deployment_image(self, name: str) -> str:
        """An image tagged as bake-carnivore tags its images, made directly in the cloud."""
        ec2 = self.client("ec2")
        [base] = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["local-base-debian-12"]}])[
            "Images"
        ]
        instance = ec2.run_instances(ImageId=base["ImageId"], MinCount=1, MaxCount=1)["Instances"][0]
        tags = {"ManagedBy": "immutable-deploy", "App": "webapp", "Env": ENV, "Role": "carnivore", "Name": name}
        image_id = ec2.create_image(
            InstanceId=instance["InstanceId"],
            Name=name,
            TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        )["ImageId"]
        ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
        return image_id


def instance_ids(group: dict[str, Any]) -> list[str]:
    return sorted(i["InstanceId"] for i in group["Instances"])


def image_of(group: dict[str, Any]) -> str:
    return {t["Key"]: t["Value"] for t in group["Tags"]}["Image"]


def snapshots(image: dict[str, Any]) -> list[str]:
    found = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if m.get("Ebs", {}).get("SnapshotId")]
    assert found, f"{image['ImageId']} has no snapshot"
    return found


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    return result.stdout


def assert_serves_alone(site: Site, group: dict[str, Any]) -> None:
    """GROUP's instances are all InService at the load balancer, and no other instance is registered."""
    ids = instance_ids(group)
    assert len(ids) == DESIRED
    assert site.lb_states() == dict.fromkeys(ids, "InService")


@pytest.fixture(scope="module")
def site(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    root = tmp_path_factory.mktemp("e2e-deploy")
    app = root / "app"
    app.mkdir()
    for name in ("build.py", "server.py"):
        shutil.copy2(REPO / "example-app" / name, app / name)
    text = local_env_text(
        moto_server,
        LOAD_BALANCER="classic",  # the original scripts' elb-NAME
        DESIRED_CAPACITY=str(DESIRED),
        HEALTH_TIMEOUT=str(HEALTH_TIMEOUT),
        POLL_SECONDS="1",
        RETAIN_IMAGES="0",  # no earlier image is kept for a rollback: outdated images go at once
        APP_DIR=os.path.relpath(app, REPO),  # APP_DIR is relative to the repository
    )
    env_dir = write_env_folder(root / "env", {f"{ENV}.env": text})
    work_dir = root / "work"
    work_dir.mkdir()
    overrides: dict[str, str | None] = dict.fromkeys((*STRAY_VARIABLES, *_settings_keys()))
    overrides.update(FAKE_CREDENTIALS)
    overrides.update(DEPLOY_ENV_DIR=str(env_dir), DEPLOY_WORK_DIR=str(work_dir))
    site = Site(moto_server, env_dir, work_dir, overrides)

    succeeded(site.inv("setup"))
    first = succeeded(site.inv("deploy"))
    assert "baked primal image" in first and "baked carnivore image" in first
    assert_serves_alone(site, site.serving())
    yield site


def test_a_second_deploy_replaces_the_group_with_no_moment_out_of_service(site):
    before = site.serving()
    old_template = before["LaunchTemplate"]["LaunchTemplateName"]
    old_image = site.image(image_of(before))
    assert old_image is not None
    old_snapshots = snapshots(old_image)
    primal = site.state()["primal"]["image_id"]
    in_service_counts: list[int] = []
    errors: list[str] = []
    done = threading.Event()

    def watch() -> None:
        elb = site.client("elb")
        for _ in range(6000):  # at most ~2 minutes
            if done.is_set():
                return
            try:
                states = elb.describe_instance_health(LoadBalancerName=LOAD_BALANCER)["InstanceStates"]
                in_service_counts.append(sum(1 for s in states if s["State"] == "InService"))
            except ClientError as error:
                errors.append(str(error))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        output = succeeded(site.inv("deploy"))
    finally:
        done.set()
        watcher.join(timeout=10)

    after = site.serving()
    assert after["AutoScalingGroupName"] > before["AutoScalingGroupName"]
    assert_serves_alone(site, after)
    assert site.templates() == [after["LaunchTemplate"]["LaunchTemplateName"]]
    assert old_template not in site.templates()
    new_image = image_of(after)
    assert new_image != old_image["ImageId"]
    assert site.image(new_image) is not None  # the live image stays
    assert site.image(primal) is not None  # the primal image is not a deployment image
    assert site.image(old_image["ImageId"]) is None
    assert not any(site.snapshot_exists(s) for s in old_snapshots)
    assert f"retiring {before['AutoScalingGroupName']}" in output

    assert len(in_service_counts) >= 20, f"the watcher saw too little ({len(in_service_counts)} polls; {errors[:3]})"
    assert min(in_service_counts) > 0, f"InService dropped to 0 during the deploy: {in_service_counts}"
    assert max(in_service_counts) == 2 * DESIRED  # both groups served side by side before the old one went


def test_a_new_group_that_never_gets_healthy_is_removed_and_the_old_one_keeps_serving(site):
    before = site.serving()
    old_name = before["AutoScalingGroupName"]
    found: dict[str, Any] = {}
    stop = threading.Event()

    def stop_the_new_group() -> None:
        autoscaling, ec2 = site.client("autoscaling"), site.client("ec2")
        deadline = time.monotonic() + DEPLOY_TIMEOUT_S
        while time.monotonic() < deadline and not stop.is_set():
            groups = autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
            for group in groups:
                name = group["AutoScalingGroupName"]
                if name.startswith(GROUP_PREFIX) and name != old_name and len(group["Instances"]) >= DESIRED:
                    # Stopped instances are OutOfService at the load balancer: the health wait fails.
                    ec2.stop_instances(InstanceIds=instance_ids(group))
                    found.update(name=name, at=time.monotonic(), template=group["LaunchTemplate"])
                    return
            time.sleep(0.02)

    stopper = threading.Thread(target=stop_the_new_group, daemon=True)
    process = site.popen("deploy")
    stopper.start()
    try:
        stdout, stderr = process.communicate(timeout=DEPLOY_TIMEOUT_S)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
            process.communicate()
        stopper.join(timeout=10)
    ended = time.monotonic()

    output = stdout + stderr
    assert found, f"the new group never appeared:\n{output}"
    assert process.returncode != 0, output
    assert ended - found["at"] < HEALTH_TIMEOUT + 10, "the failed wait was not bounded by the timeout"
    assert "Traceback" not in output
    assert f"The new group {found['name']} was not healthy within {HEALTH_TIMEOUT}s" in stderr
    assert "It was removed" in stderr
    assert "the previous group keeps serving" in stderr
    assert "Logs: " in stderr

    assert found["name"] not in site.groups()
    assert found["template"]["LaunchTemplateName"] not in site.templates()
    still = site.serving()
    assert still["AutoScalingGroupName"] == old_name
    assert instance_ids(still) == instance_ids(before)
    assert_serves_alone(site, still)


def test_primal_id_skips_the_primal_bake_and_no_cleanup_keeps_every_image(site):
    before = site.serving()
    primal = site.state()["primal"]["image_id"]
    outdated = site.deployment_image("webapp-e2e-carnivore-outdated")  # would go without --no-cleanup
    previous = image_of(before)

    output = succeeded(site.inv("deploy", "--primal-id", primal, "--no-cleanup"))

    assert f"skipped: primal image {primal} given" in output
    logs = [p.name for p in site.latest_run().iterdir()]
    assert not any("packer-primal" in name for name in logs)
    assert any("packer-carnivore" in name and name.endswith(".log") for name in logs)
    assert "kept every image" in output
    after = site.serving()
    assert after["AutoScalingGroupName"] != before["AutoScalingGroupName"]  # groups still retire
    assert_serves_alone(site, after)
    for image_id in (outdated, previous, image_of(after), primal):
        assert site.image(image_id) is not None, image_id


def test_image_id_skips_every_build_and_a_group_of_the_original_scripts_is_retired(site):
    before = site.serving()
    image_id = image_of(before)
    legacy_image = site.state()["primal"]["image_id"]
    autoscaling, ec2 = site.client("autoscaling"), site.client("ec2")
    configuration, legacy = f"lc-{STACK}-20200101000000", f"asg-{STACK}-20200101000000"
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["DefaultForAz"]]
    autoscaling.create_launch_configuration(
        LaunchConfigurationName=configuration, ImageId=legacy_image, InstanceType="t3.micro"
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=legacy,
        LaunchConfigurationName=configuration,
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        VPCZoneIdentifier=",".join(subnets),
        LoadBalancerNames=[LOAD_BALANCER],
        Tags=[{"Key": "Name", "Value": STACK, "PropagateAtLaunch": True}],
    )
    # moto dropped the serving group's instances from the load balancer; AWS keeps them: put them back.
    site.client("elb").register_instances_with_load_balancer(
        LoadBalancerName=LOAD_BALANCER, Instances=[{"InstanceId": i} for i in instance_ids(before)]
    )
    outdated = site.deployment_image("webapp-e2e-carnivore-stale")
    outdated_snapshots = snapshots(site.image(outdated) or {})

    output = succeeded(site.inv("deploy", "--image-id", image_id))

    assert f"skipped: image {image_id} given" in output
    for step in ("build-app", "copy-over", "bake-primal"):
        assert f"==> {step}" not in output
    assert not any("packer" in p.name for p in site.latest_run().iterdir())
    after = site.serving()
    assert legacy not in site.groups()
    assert before["AutoScalingGroupName"] not in site.groups()
    assert image_of(after) == image_id
    assert_serves_alone(site, after)
    configurations = autoscaling.describe_launch_configurations()["LaunchConfigurations"]
    assert [
        c["LaunchConfigurationName"] for c in configurations if c["LaunchConfigurationName"].startswith("lc-")
    ] == []
    assert f"retiring {legacy}" in output
    assert site.image(image_id) is not None  # live, and given: never deleted
    assert image_id in site.state()["protected_images"]
    assert site.image(outdated) is None
    assert not any(site.snapshot_exists(s) for s in outdated_snapshots)
