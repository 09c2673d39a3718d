"""The deploy steps in-process against moto's mock_aws: launch, health wait, retirement, bake skipping.

Environments are built directly (no open_environment), after `run_setup`, on AWS settings: the tool runs as
on AWS, against mock_aws with the embedded cloud's fixes of moto (conftest). Waits run on a fake clock:
nothing in this module sleeps for real.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import conftest
import pytest
from botocore.exceptions import ClientError
from conftest import REGION, legacy_group, new_run, write_env_folder

import deploy.steps.baking
from deploy.aws.clients import Aws
from deploy.aws.groups import environment_groups
from deploy.aws.health import HealthPoll
from deploy.aws.history import read_history
from deploy.aws.images import HAND_TAG, describe_image
from deploy.config import load_config
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.logs import RunLog
from deploy.plans.groups import serving_group
from deploy.plans.pending import Pending
from deploy.plans.ports import PortCheck, port_refusal
from deploy.plans.stages import Staged
from deploy.steps.bake_carnivore import bake_carnivore
from deploy.steps.bake_primal import bake_primal
from deploy.steps.build_app import build_app
from deploy.steps.cleanup import cleanup as retire_outdated
from deploy.steps.copy_over import copy_over, tree_digest
from deploy.steps.launch_asg import launch_group, leftover_launch
from deploy.steps.setup import run_setup
from deploy.steps.shift_traffic import promote
from deploy.steps.wait_health import wait_then_shift_traffic

SOURCE_OF_INSTANCES = "ami-12345678"  # moto launches any id; only the images the tests make matter
POLL = 5
HEALTH_TIMEOUT = 30
STAMP = r"\d{14}"


# --- fixtures and helpers ------------------------------------------------------------------------


class FakeTime:
    """Clock and sleep of every Waiter in the deploy package: waiting advances a number, not the clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _no_real_sleep(seconds: float) -> None:
    raise AssertionError(f"something slept for real ({seconds}s)")


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    """Environments made by make_environment wait on this fake clock; nothing may sleep for real."""
    fake = FakeTime()
    monkeypatch.setattr(sys.modules[__name__], "FAKE_TIME", fake)
    monkeypatch.setattr(time, "sleep", _no_real_sleep)
    return fake


FAKE_TIME: FakeTime | None = None


@pytest.fixture
def cloud(cloud: None) -> None:
    """conftest's mock cloud, with the hosted zone example.com."""
    client("route53").create_hosted_zone(Name="example.com", CallerReference="zone")


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def make_environment(tmp_path: Path, env: str = "dev", extra: str = "", **settings: str) -> Environment:
    """An environment on AWS settings (mock_aws), as test_setup builds them; see the module docstring."""
    values = {
        "DOMAIN": "example.com",
        "LOAD_BALANCER": "classic",  # the original scripts' elb-NAME
        "MIN_CAPACITY": "1",
        "MAX_CAPACITY": "3",
        "DESIRED_CAPACITY": "2",
        "INSTANCE_TYPE": "t3.small",
        "POLL_SECONDS": str(POLL),
        "HEALTH_TIMEOUT": str(HEALTH_TIMEOUT),
        "RETAIN_IMAGES": "0",  # no earlier deployed image is kept for a rollback, unless a test says so
        "BAKE_SSH_CIDR": "203.0.113.7/32",  # a bake on AWS settings opens ssh to this address only
        **settings,
    }
    text = "".join(f"{key}={value}\n" for key, value in values.items()) + extra
    folder = write_env_folder(tmp_path / "env", {f"{env}.env": text})
    config = load_config(env, folder=folder, environ={})
    log = RunLog(env, root=tmp_path / "log", out=io.StringIO())
    aws = Aws(config, log)
    if FAKE_TIME is not None:
        return Environment(config=config, log=log, aws=aws, clock=FAKE_TIME.clock, sleep=FAKE_TIME.sleep)
    return Environment(config=config, log=log, aws=aws)


def set_up(tmp_path: Path, env: str = "dev", **settings: str) -> Environment:
    environment = make_environment(tmp_path, env, **settings)
    run_setup(environment)
    return environment


def output(environment: Environment) -> str:
    return environment.log.out.getvalue()  # type: ignore[attr-defined]


def make_image(name: str, **tags: str) -> str:
    """A real image in moto (from a short-lived instance), tagged with TAGS."""
    return conftest.make_image(client("ec2"), name, tags, base=SOURCE_OF_INSTANCES)


def deployment_image(name: str, env: str = "dev", app: str = "webapp") -> str:
    """An image as bake-carnivore tags it."""
    return make_image(name, ManagedBy="immutable-deploy", App=app, Env=env, Role="carnivore")


def image_exists(environment: Environment, image_id: str) -> bool:
    return describe_image(environment, image_id) is not None


def snapshots_of(image_id: str) -> list[str]:
    [image] = client("ec2").describe_images(ImageIds=[image_id])["Images"]
    found = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if m.get("Ebs", {}).get("SnapshotId")]
    assert found, f"{image_id} has no snapshot to check"
    return found


def snapshot_exists(snapshot_id: str) -> bool:
    try:
        return bool(client("ec2").describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"])
    except ClientError as error:
        assert error.response["Error"]["Code"] == "InvalidSnapshot.NotFound"
        return False


def group(name: str) -> dict[str, Any] | None:
    found = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return found[0] if found else None


def groups_named(prefix: str) -> list[str]:
    found = client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    return sorted(g["AutoScalingGroupName"] for g in found if g["AutoScalingGroupName"].startswith(prefix))


def templates_named(prefix: str) -> list[str]:
    found = client("ec2").describe_launch_templates()["LaunchTemplates"]
    return sorted(t["LaunchTemplateName"] for t in found if t["LaunchTemplateName"].startswith(prefix))


def configurations_named(prefix: str) -> list[str]:
    found = client("autoscaling").describe_launch_configurations()["LaunchConfigurations"]
    return sorted(c["LaunchConfigurationName"] for c in found if c["LaunchConfigurationName"].startswith(prefix))


def instances_of(name: str) -> list[str]:
    raw = group(name)
    assert raw is not None, f"{name} does not exist"
    return sorted(i["InstanceId"] for i in raw["Instances"])


def group_image(name: str) -> str:
    raw = group(name)
    assert raw is not None, f"{name} does not exist"
    return {t["Key"]: t["Value"] for t in raw["Tags"]}["Image"]


def lb_states(load_balancer: str) -> dict[str, str]:
    states = client("elb").describe_instance_health(LoadBalancerName=load_balancer)["InstanceStates"]
    return {s["InstanceId"]: s["State"] for s in states}


def in_service(load_balancer: str, instance_ids: list[str]) -> bool:
    states = lb_states(load_balancer)
    return bool(instance_ids) and all(states.get(i) == "InService" for i in instance_ids)


def deploy_group(environment: Environment, image_id: str) -> str:
    """launch-asg then wait-health: the group, promoted."""
    name = launch_group(environment, image_id=image_id)
    assert wait_then_shift_traffic(environment) == name
    return name


def record_autoscaling_calls(environment: Environment) -> list[tuple[str, dict[str, Any]]]:
    calls: list[tuple[str, dict[str, Any]]] = []

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls.append((model.name, dict(params)))

    environment.aws.autoscaling.meta.events.register("before-parameter-build.auto-scaling", record)
    return calls


def first_call(calls: list[tuple[str, dict[str, Any]]], operation: str, group_name: str, **expected: Any) -> int:
    for index, (name, params) in enumerate(calls):
        wanted = {"AutoScalingGroupName": group_name, **expected}
        if name == operation and all(params.get(key) == value for key, value in wanted.items()):
            return index
    raise AssertionError(f"no {operation} of {group_name} with {expected} in {[c[0] for c in calls]}")


# --- launch-asg ----------------------------------------------------------------------------------


def test_launch_group_creates_a_hardened_template_and_an_elb_checked_group(cloud, tmp_path):
    environment = set_up(tmp_path)
    image_id = deployment_image("webapp-dev-carnivore-1")

    name = launch_group(environment, image_id=image_id)

    assert re.fullmatch(rf"asg-webapp-dev-{STAMP}", name)
    stamp = name.removeprefix("asg-webapp-dev-")
    template_name = f"lt-webapp-dev-{stamp}"
    ec2 = client("ec2")
    [version] = ec2.describe_launch_template_versions(LaunchTemplateName=template_name, Versions=["$Latest"])[
        "LaunchTemplateVersions"
    ]
    data = version["LaunchTemplateData"]
    # moto's instances report HttpTokens=optional whatever the template says: the template is the truth.
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["ImageId"] == image_id
    assert data["InstanceType"] == "t3.small"
    assert data["KeyName"] == "webapp-dev"
    [web_group] = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["webapp-dev-web"]}])[
        "SecurityGroups"
    ]
    assert data["SecurityGroupIds"] == [web_group["GroupId"]]
    [root] = data["BlockDeviceMappings"]
    assert root["DeviceName"] == ec2.describe_images(ImageIds=[image_id])["Images"][0]["RootDeviceName"]
    assert root["Ebs"]["Encrypted"] is True
    assert root["Ebs"]["VolumeType"] == "gp3"

    raw = group(name)
    assert raw is not None
    assert raw["LaunchTemplate"]["LaunchTemplateName"] == template_name
    assert raw["HealthCheckType"] == "ELB"
    assert raw["HealthCheckGracePeriod"] == 300
    assert raw["LoadBalancerNames"] == ["elb-webapp-dev"]
    assert (raw["MinSize"], raw["MaxSize"], raw["DesiredCapacity"]) == (1, 3, 2)
    offered = ec2.describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["t3.small"]}]
    )["InstanceTypeOfferings"]
    zones = {offering["Location"] for offering in offered}
    default_subnets = [s for s in ec2.describe_subnets()["Subnets"] if s["DefaultForAz"]]
    assert len(zones) < len(default_subnets)  # moto, as AWS, offers t3.small in some zones of us-east-1 only
    usable = {s["SubnetId"] for s in default_subnets if s["AvailabilityZone"] in zones}
    assert set(raw["VPCZoneIdentifier"].split(",")) == usable
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags["Name"] == "webapp-dev"
    assert tags["Role"] == "web"
    assert tags["Env"] == "dev"
    assert tags["App"] == "webapp"
    assert tags["Image"] == image_id
    assert len(raw["Instances"]) == 2
    assert in_service("elb-webapp-dev", instances_of(name))

    # Found in the account (launched by this tool, not promoted), not in a local file.
    assert leftover_launch(environment) == Pending(name, template_name, image_id)


def test_launch_group_refuses_an_image_that_does_not_exist_before_creating_anything(cloud, tmp_path):
    environment = set_up(tmp_path)
    deregistered = deployment_image("webapp-dev-carnivore-gone")
    client("ec2").deregister_image(ImageId=deregistered)

    for missing in ("ami-0123456789abcdef0", deregistered):  # moto would launch both
        with pytest.raises(DeployError, match=re.escape(f"{missing} does not exist")):
            launch_group(environment, image_id=missing)

    assert groups_named("asg-") == []
    assert templates_named("lt-") == []
    assert leftover_launch(environment) is None


def test_launch_group_refuses_clearly_when_setup_never_ran(cloud, tmp_path):
    environment = make_environment(tmp_path)
    image_id = deployment_image("webapp-dev-carnivore-1")

    with pytest.raises(DeployError) as caught:
        launch_group(environment, image_id=image_id)

    message = str(caught.value)
    assert "elb-webapp-dev does not exist" in message
    assert "inv setup --env dev" in message
    assert groups_named("asg-") == []
    assert templates_named("lt-") == []
    assert leftover_launch(environment) is None


def test_an_app_port_change_on_the_classic_kind_is_refused_before_anything_is_launched(cloud, tmp_path):
    """A classic listener's instance port is shared by both groups: a new APP_PORT would fail the health wait after
    HEALTH_TIMEOUT (and moving the listener would cut off the serving group); refused up front."""
    set_up(tmp_path / "before")
    moved = make_environment(tmp_path / "after", APP_PORT="8080")
    image_id = deployment_image("webapp-dev-carnivore-1")

    with pytest.raises(DeployError) as caught:
        launch_group(moved, image_id=image_id)

    message = str(caught.value)
    assert "APP_PORT=8080 (env/dev.env" in message
    assert "elb-webapp-dev sends requests to port 80 of the instances" in message
    assert "one instance port per listener, shared by both groups" in message
    assert "Nothing was launched. Keep APP_PORT=80 for dev" in message
    assert "`inv setup --env dev` moves the listener to port 8080" in message
    assert groups_named("asg-") == []
    assert templates_named("lt-") == []
    assert launch_group(make_environment(tmp_path / "same"), image_id=image_id)  # the same port: launched


def test_an_app_port_change_on_the_application_kind_needs_setup_first_which_keeps_the_serving_port(cloud, tmp_path):
    """Each group's target group has its own port; the instances' security group must let the load balancer reach
    the new one: refused, naming setup, which opens it and keeps the serving group's port open."""
    environment = set_up(tmp_path / "before", LOAD_BALANCER="application")
    first = deployment_image("webapp-dev-carnivore-1")
    serving = launch_group(environment, image_id=first)
    environment.load_balancer.serve(serving)
    moved = make_environment(tmp_path / "after", LOAD_BALANCER="application", APP_PORT="8080")
    image_id = deployment_image("webapp-dev-carnivore-2")  # a new release (the same one would reuse the group)

    with pytest.raises(DeployError) as caught:
        launch_group(moved, image_id=image_id)

    message = str(caught.value)
    assert "does not let the load balancer reach port 8080 (APP_PORT, env/dev.env" in message
    assert "run `inv setup --env dev` first" in message and "Nothing was launched" in message
    assert groups_named("asg-") == [serving]
    promote(environment, serving, first)  # not a leftover of an unfinished run: the launch below keeps it

    run_setup(make_environment(tmp_path / "setup", LOAD_BALANCER="application", APP_PORT="8080"))
    web = client("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": ["webapp-dev-web"]}])
    assert sorted(p["FromPort"] for p in web["SecurityGroups"][0]["IpPermissions"]) == [80, 8080]
    new = launch_group(make_environment(tmp_path / "launch", LOAD_BALANCER="application", APP_PORT="8080"), image_id)
    ports = {g["TargetGroupName"]: g["Port"] for g in client("elbv2").describe_target_groups()["TargetGroups"]}
    names = environment.names
    assert ports[names.group_target_group(serving)] == 80 and ports[names.group_target_group(new)] == 8080


def test_the_port_decision_is_pure_and_silent_when_the_port_is_unknown_or_the_same():
    check = PortCheck("elb-x", None, 8080, "env/x.env, line 3", "x")
    assert port_refusal(check) is None
    assert port_refusal(dataclasses.replace(check, serving_port=8080)) is None
    assert "port 80 of the instances" in (port_refusal(dataclasses.replace(check, serving_port=80)) or "")


# --- wait-health ---------------------------------------------------------------------------------


def test_wait_promotes_a_group_healthy_on_consecutive_polls(cloud, tmp_path, fake_time):
    environment = set_up(tmp_path)
    image_id = deployment_image("webapp-dev-carnivore-1")
    name = launch_group(environment, image_id=image_id)

    assert wait_then_shift_traffic(environment) == name

    serving = serving_group(environment_groups(environment))
    assert serving is not None and (serving.name, serving.image_id) == (name, image_id)
    [recorded] = read_history(environment)
    assert (recorded["action"], recorded["outcome"], recorded["image"], recorded["group"]) == (
        "deploy",
        "promoted",
        image_id,
        name,
    )
    assert recorded["by_hand"] is False  # a deployment image this tool baked for dev
    assert leftover_launch(environment) is None
    # One wait until the load balancer could count an instance healthy (threshold 2 x interval 30 s, within the
    # timeout), then one all-healthy poll: promoted.
    # (that wait in poll intervals, so that a stop is seen within one)
    assert sum(fake_time.sleeps) == min(2 * 30, HEALTH_TIMEOUT) and max(fake_time.sleeps) == POLL
    assert group(name) is not None
    assert f"{name} is healthy\n  promoted {name} (" in output(environment)


def test_a_health_poll_sends_two_requests_then_one_once_the_group_counts_every_instance(cloud, tmp_path, fake_time):
    environment = set_up(tmp_path)
    name = launch_group(environment, image_id=deployment_image("webapp-dev-carnivore-1"))
    poll = HealthPoll(environment, name)
    sent = []
    for _ in range(3):
        before = environment.aws.requests.copy()
        health = poll()
        sent.append(sorted((environment.aws.requests - before).elements()))

    group, balancer = "auto-scaling.DescribeAutoScalingGroups", "elastic-load-balancing.DescribeInstanceHealth"
    assert sent == [[group, balancer], [balancer], [balancer]]  # the group again only if it replaced an instance
    assert health.done and "2/2 healthy" in health.line()
    client("ec2").terminate_instances(InstanceIds=instances_of(name)[:1])  # the load balancer no longer knows it
    poll()  # finds it unknown there
    before = environment.aws.requests.copy()
    poll()
    assert sorted((environment.aws.requests - before).elements()) == [group, balancer]


def test_wait_removes_a_group_that_never_becomes_healthy_and_the_previous_keeps_serving(cloud, tmp_path, fake_time):
    environment = set_up(tmp_path)
    old_image, new_image = deployment_image("webapp-dev-carnivore-1"), deployment_image("webapp-dev-carnivore-2")
    old = deploy_group(environment, old_image)
    old_instances = instances_of(old)
    old_template = f"lt-{old.removeprefix('asg-')}"
    new = launch_group(environment, image_id=new_image)
    new_template = f"lt-{new.removeprefix('asg-')}"
    assert in_service("elb-webapp-dev", old_instances)  # both groups serve side by side
    client("ec2").stop_instances(InstanceIds=instances_of(new))  # OutOfService at the load balancer
    waited_before = fake_time.now
    started = time.monotonic()

    with pytest.raises(DeployError) as caught:
        wait_then_shift_traffic(environment, timeout_s=12)

    assert time.monotonic() - started < 5  # AWS calls only: the 12 s were waited on the fake clock
    assert fake_time.now - waited_before == pytest.approx(12)
    message = str(caught.value)
    assert f"The new group {new} was not healthy within 12s" in message
    assert "It was removed" in message
    assert "the previous group keeps serving" in message
    assert group(new) is None
    assert templates_named("lt-") == [old_template]
    assert new_template not in templates_named("lt-")
    raw_old = group(old)
    assert raw_old is not None and raw_old["DesiredCapacity"] == 2
    assert instances_of(old) == old_instances
    assert in_service("elb-webapp-dev", old_instances)
    assert leftover_launch(environment) is None
    serving = serving_group(environment_groups(environment))
    assert serving is not None and (serving.name, serving.image_id) == (old, old_image)
    aborted = read_history(environment)[0]
    assert (aborted["outcome"], aborted["group"], aborted["detail"]) == ("aborted", new, "unhealthy")
    assert image_exists(environment, new_image)  # an image is only cleanup's business


# --- cleanup -------------------------------------------------------------------------------------


@dataclasses.dataclass
class History:
    """dev after a legacy group of the original scripts and two deploys, plus a never-deployed image."""

    environment: Environment
    legacy: str
    legacy_configuration: str
    stray_configuration: str
    first: str
    serving: str
    first_image: str
    serving_image: str
    unused_image: str
    legacy_image: str


def history(tmp_path: Path, **settings: str) -> History:
    environment = set_up(tmp_path, **settings)
    legacy_image = make_image("webapp-dev-legacy")  # not ours: never deregistered
    names = environment.names
    legacy, legacy_configuration = legacy_group(
        client("autoscaling"), client("ec2"), names.stack, names.load_balancer, legacy_image
    )
    stray_configuration = "lc-webapp-dev-20190101000000"  # used by no group any more
    client("autoscaling").create_launch_configuration(
        LaunchConfigurationName=stray_configuration, ImageId=legacy_image, InstanceType="t3.micro"
    )
    unused_image = deployment_image("webapp-dev-carnivore-0")
    first_image, serving_image = deployment_image("webapp-dev-carnivore-1"), deployment_image("webapp-dev-carnivore-2")
    first = deploy_group(environment, first_image)
    serving = deploy_group(environment, serving_image)
    return History(
        environment,
        legacy,
        legacy_configuration,
        stray_configuration,
        first,
        serving,
        first_image,
        serving_image,
        unused_image,
        legacy_image,
    )


def test_retire_outdated_retires_old_groups_templates_configurations_and_images(cloud, tmp_path, fake_time):
    h = history(tmp_path, KEEP_PREVIOUS_SECONDS="0")
    environment = h.environment
    calls = record_autoscaling_calls(environment)
    serving_instances = instances_of(h.serving)
    doomed_snapshots = snapshots_of(h.first_image) + snapshots_of(h.unused_image)
    kept_snapshots = snapshots_of(h.serving_image) + snapshots_of(h.legacy_image)

    retired = retire_outdated(new_run(environment), wait=True)  # --wait: the old behaviour

    assert sorted(retired) == sorted([h.legacy, h.first])
    assert groups_named("asg-webapp-dev-") == [h.serving]
    assert templates_named("lt-webapp-dev-") == [f"lt-{h.serving.removeprefix('asg-')}"]
    assert configurations_named("lc-webapp-dev-") == []
    for name in retired:  # graceful: sized 0 (AWS deregisters, drains, terminates), deleted once empty
        size = first_call(calls, "UpdateAutoScalingGroup", name, MaxSize=0)
        delete = first_call(calls, "DeleteAutoScalingGroup", name, ForceDelete=False)
        assert size < delete
    changed = [
        name
        for operation, params in calls
        if not operation.startswith("Describe")
        for name in [params.get("AutoScalingGroupName")]
    ]
    assert h.serving not in changed
    assert image_exists(environment, h.serving_image)  # in use by the serving group
    assert image_exists(environment, h.legacy_image)  # not a deployment image of this tool
    assert not image_exists(environment, h.first_image)
    assert not image_exists(environment, h.unused_image)
    assert not any(snapshot_exists(s) for s in doomed_snapshots)
    assert all(snapshot_exists(s) for s in kept_snapshots)
    assert in_service("elb-webapp-dev", serving_instances)
    assert instances_of(h.serving) == serving_instances


@pytest.mark.parametrize("how", ["keep_images", "CLEANUP=no"])
def test_images_are_kept_when_asked_but_groups_still_retire(cloud, tmp_path, fake_time, how):
    h = history(tmp_path, KEEP_PREVIOUS_SECONDS="0", **({"CLEANUP": "no"} if how == "CLEANUP=no" else {}))

    keep = True if how == "keep_images" else None
    retired = retire_outdated(new_run(h.environment), keep_images=keep, wait=True)

    assert sorted(retired) == sorted([h.legacy, h.first])
    assert groups_named("asg-webapp-dev-") == [h.serving]
    for image_id in (h.first_image, h.unused_image, h.serving_image, h.legacy_image):
        assert image_exists(h.environment, image_id)
        assert all(snapshot_exists(s) for s in snapshots_of(image_id))
    assert "kept every image" in output(h.environment)


def test_the_most_recently_deployed_images_are_retained_for_a_rollback(cloud, tmp_path, fake_time):
    h = history(tmp_path, RETAIN_IMAGES="1", KEEP_PREVIOUS_SECONDS="0")

    retire_outdated(new_run(h.environment), wait=True)

    assert image_exists(h.environment, h.first_image)  # deployed before the serving one
    assert not image_exists(h.environment, h.unused_image)  # never deployed: not worth keeping


def test_a_protected_image_is_never_deleted(cloud, tmp_path, fake_time):
    """Given by hand, as the account records it (no local file): a tag on the image (written when a group of it was
    promoted, in the request that marks it deployed, so every history entry "by hand" has its tagged image)."""
    h = history(tmp_path, KEEP_PREVIOUS_SECONDS="0")
    client("ec2").create_tags(Resources=[h.unused_image], Tags=[{"Key": HAND_TAG, "Value": "production"}])
    shutil.rmtree(tmp_path / "work", ignore_errors=True)  # no local file knows it

    retire_outdated(new_run(h.environment), wait=True)

    assert image_exists(h.environment, h.unused_image)
    assert all(snapshot_exists(s) for s in snapshots_of(h.unused_image))
    assert not image_exists(h.environment, h.first_image)


def test_nothing_is_retired_while_the_serving_group_is_not_fully_healthy(cloud, tmp_path, fake_time):
    h = history(tmp_path)
    client("ec2").stop_instances(InstanceIds=instances_of(h.serving)[:1])
    before = {name: group(name) for name in (h.legacy, h.first)}
    templates = templates_named("lt-webapp-dev-")

    with pytest.raises(DeployError, match=f"Not retiring anything: the serving group {h.serving} is not fully healthy"):
        retire_outdated(new_run(h.environment))

    for name, raw in before.items():
        now = group(name)
        assert now is not None and raw is not None
        assert now["DesiredCapacity"] == raw["DesiredCapacity"]
        assert now["LoadBalancerNames"] == ["elb-webapp-dev"]
    assert templates_named("lt-webapp-dev-") == templates
    assert configurations_named("lc-webapp-dev-") == sorted([h.legacy_configuration, h.stray_configuration])
    for image_id in (h.first_image, h.unused_image):
        assert image_exists(h.environment, image_id)


def test_other_environments_and_applications_are_never_touched(cloud, tmp_path, fake_time):
    neighbours: dict[str, dict[str, Any]] = {}
    # The shop's dev host lives in its own domain: dev.example.com is webapp-dev's, and setup refuses
    # to repoint a host record that another environment's load balancer holds.
    client("route53").create_hosted_zone(Name="shop.test", CallerReference="shop-zone")
    for env, app, domain in (("dev-eu", "webapp", "example.com"), ("dev", "shop", "shop.test")):
        environment = set_up(tmp_path / f"{app}-{env}", env=env, APP_NAME=app, DOMAIN=domain)
        stack = f"{app}-{env}"
        old = deploy_group(environment, deployment_image(f"{stack}-carnivore-1", env=env, app=app))
        serving = deploy_group(environment, deployment_image(f"{stack}-carnivore-2", env=env, app=app))
        configuration = f"lc-{stack}-20200101000000"
        client("autoscaling").create_launch_configuration(
            LaunchConfigurationName=configuration, ImageId=SOURCE_OF_INSTANCES, InstanceType="t3.micro"
        )
        neighbours[stack] = {
            "groups": [old, serving],
            "templates": templates_named(f"lt-{stack}-"),
            "configuration": configuration,
            "images": [deployment_image(f"{stack}-carnivore-0", env=env, app=app), *map(group_image, (old, serving))],
            "instances": instances_of(serving),
            "load_balancer": f"elb-{stack}",
        }
    h = history(tmp_path / "webapp-dev")

    retired = retire_outdated(new_run(h.environment))

    assert sorted(retired) == sorted([h.legacy, h.first])
    for stack, before in neighbours.items():
        assert groups_named(f"asg-{stack}-") == sorted(before["groups"]), stack
        assert templates_named(f"lt-{stack}-") == before["templates"]
        assert len(before["templates"]) == 2
        assert before["configuration"] in configurations_named("lc-")
        for image_id in before["images"]:
            assert image_exists(h.environment, image_id), (stack, image_id)
        assert in_service(before["load_balancer"], before["instances"])


# --- build-app and copy-over --------------------------------------------------------------------


def test_an_app_outside_the_repository_is_built_and_staged(aws_environ, work_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("DEPLOY_WORK_DIR", str(work_dir))
    app = tmp_path / "elsewhere" / "app"
    app.mkdir(parents=True)
    environment = make_environment(
        tmp_path, APP_DIR=str(app), BUILD_COMMAND="mkdir -p out && echo built-{env} > out/version", APP_FILES="out/*"
    )

    build_app(environment)
    staged = copy_over(environment).folder

    assert (app / "out" / "version").read_text().strip() == "built-dev"
    assert (staged / "version").read_text().strip() == "built-dev"
    assert "ENV=dev" in (staged / "app.env").read_text().splitlines()
    assert "$ mkdir -p out && echo built-dev > out/version" in output(environment)


# --- bake-primal and bake-carnivore --------------------------------------------------------------


class FakePacker:
    """Stands in for deploy.steps.baking.run_packer: records each build and makes a real image in moto."""

    def __init__(self) -> None:
        self.builds: list[dict[str, Any]] = []

    def __call__(self, template_path: Path, var_file: Path, builder: str, log_path: Path, **_: Any) -> str:
        variables = json.loads(Path(var_file).read_text(encoding="utf-8"))
        role = Path(template_path).stem
        image_id = make_image(
            variables["image_name"],
            ManagedBy="immutable-deploy",
            App=variables["app_name"],
            Env=variables["env"],
            Role=role,
        )
        self.builds.append({"role": role, "builder": builder, "variables": variables, "image_id": image_id})
        return image_id


@pytest.fixture
def packer(monkeypatch: pytest.MonkeyPatch) -> FakePacker:
    fake = FakePacker()
    monkeypatch.setattr(deploy.steps.baking, "run_packer", fake)
    monkeypatch.setattr(deploy.steps.baking, "check_packer", lambda: None)  # no Packer is run
    return fake


def source_environment(tmp_path: Path, source: str) -> Environment:
    """An environment whose SOURCE_AMI is SOURCE (a fresh Environment each call; one state file)."""
    return make_environment(tmp_path, SOURCE_AMI=source, SOURCE_AMI_OWNER="self")


def test_bake_primal_skips_a_given_image(cloud, tmp_path, packer):
    given = make_image("someones-base")
    environment = source_environment(tmp_path, "no-such-base-*")

    assert bake_primal(environment, primal_id=given) == given

    assert packer.builds == []
    assert f"skipped: primal image {given} given" in output(environment)


def test_bake_primal_skips_what_was_baked_from_the_same_inputs_and_rebakes_when_the_source_changes(
    cloud, tmp_path, packer, monkeypatch
):
    base = make_image("local-base-debian-12")

    first = bake_primal(source_environment(tmp_path / "1", "local-base-*"))
    assert [b["variables"]["source_ami"] for b in packer.builds] == [base]
    assert first == packer.builds[0]["image_id"]

    again = source_environment(tmp_path / "2", "local-base-*")
    assert bake_primal(again) == first
    assert len(packer.builds) == 1
    assert f"skipped: primal image {first} recorded by an earlier run from {base}" in output(again)

    newer_base = make_image("another-base")
    changed = bake_primal(source_environment(tmp_path / "3", newer_base))
    assert len(packer.builds) == 2
    assert packer.builds[1]["variables"]["source_ami"] == newer_base
    assert changed == packer.builds[1]["image_id"] != first

    # A changed template is a changed input too.
    templates = tmp_path / "packer"
    shutil.copytree(deploy.steps.baking.PACKER_DIR, templates)
    (templates / "primal.json").write_text((templates / "primal.json").read_text() + "\n", encoding="utf-8")
    monkeypatch.setattr(deploy.steps.baking, "PACKER_DIR", templates)
    assert bake_primal(source_environment(tmp_path / "4", newer_base)) != changed
    assert len(packer.builds) == 3

    # A recorded image that was deregistered since is baked again.
    client("ec2").deregister_image(ImageId=packer.builds[2]["image_id"])
    bake_primal(source_environment(tmp_path / "5", newer_base))
    assert len(packer.builds) == 4


def test_bake_carnivore_skips_the_same_primal_and_app_and_rebakes_a_changed_app(cloud, tmp_path, packer):
    environment = make_environment(tmp_path)
    primal = make_image("webapp-dev-primal")
    staged = tmp_path / "appserver"
    staged.mkdir()
    (staged / "server.py").write_text("version 1")
    copied = Staged(staged, tree_digest(staged))  # what copy-over hands on

    first = bake_carnivore(environment, staged=copied, primal=primal)
    assert bake_carnivore(environment, staged=copied, primal=primal) == first
    assert len(packer.builds) == 1
    assert packer.builds[0]["variables"]["primal_ami"] == primal
    assert packer.builds[0]["variables"]["app_dir"] == str(staged)

    (staged / "server.py").write_text("version 2")
    second = bake_carnivore(environment, staged=Staged(staged, tree_digest(staged)), primal=primal)
    assert second != first
    assert len(packer.builds) == 2
    assert packer.builds[1]["image_id"] == second

    # The shared staging folder changed after copy-over (another environment restaged it): refused.
    (staged / "server.py").write_text("version 3")
    copied = Staged(staged, tree_digest(staged))
    (staged / "server.py").write_text("someone else's app")
    with pytest.raises(DeployError, match="changed since copy-over"):
        bake_carnivore(environment, staged=copied, primal=primal)
    assert len(packer.builds) == 2


def test_bake_carnivore_skips_a_given_image_and_its_promotion_protects_it(cloud, tmp_path, packer, fake_time):
    environment = set_up(tmp_path)
    given = deployment_image("webapp-dev-carnivore-given")

    assert bake_carnivore(environment, image_id=given) == given

    assert packer.builds == []
    assert "skipped: image" in output(environment)
    name = launch_group(environment, image_id=given, by_hand=True)  # bake-carnivore hands it on as given by hand
    assert {t["Key"]: t["Value"] for t in group(name)["Tags"]}[HAND_TAG] == "yes"  # launched with it given
    wait_then_shift_traffic(environment)
    [image] = client("ec2").describe_images(ImageIds=[given])["Images"]
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    assert tags[HAND_TAG] == "dev" and tags["Deployed"]  # in the account, for any machine, in one request
    [recorded] = read_history(environment)
    assert recorded["by_hand"] is True


def test_given_images_that_do_not_exist_are_refused(cloud, tmp_path, packer):
    environment = make_environment(tmp_path)
    deregistered = deployment_image("webapp-dev-carnivore-gone")
    client("ec2").deregister_image(ImageId=deregistered)

    for bad in ("ami-0123456789abcdef0", deregistered):
        with pytest.raises(DeployError, match=re.escape(f"Image {bad} does not exist")):
            bake_carnivore(environment, image_id=bad)
        with pytest.raises(DeployError, match=re.escape(f"Primal image {bad} does not exist")):
            bake_primal(environment, primal_id=bad)

    assert packer.builds == []
    assert (
        client("ec2").describe_images(Owners=["self"], Filters=[{"Name": "tag-key", "Values": [HAND_TAG]}])["Images"]
        == []
    )  # nothing was marked as given by hand
