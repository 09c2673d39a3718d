"""Nothing billable left behind (issue 10): what a killed bake left (Packer's instance, key pair, security
group) and snapshots orphaned by an interrupted deregistration are shown by `inv status`, announced by the dry
run, and removed by the next cleanup or destroy. Faults are injected with botocore event hooks."""

from __future__ import annotations

import io
from typing import Any

import pytest
from test_deploy_steps import client, deployment_image, make_environment, output

from deploy.aws.groups import environment_groups
from deploy.aws.leftovers import tag_snapshots
from deploy.environment import Environment
from deploy.plans.groups import serving_group
from deploy.steps.cleanup import cleanup
from deploy.steps.destroy import run_destroy
from deploy.steps.launch_asg import launch_group
from deploy.steps.setup import run_setup
from deploy.steps.wait_health import wait_then_shift_traffic
from deploy.views.status import show_status


@pytest.fixture
def cloud(cloud: None) -> None:
    client("route53").create_hosted_zone(Name="example.com", CallerReference="zone")


def environment(tmp_path: Any, name: str) -> Environment:
    made = make_environment(tmp_path / name, POLL_SECONDS="1")
    made.sleep = lambda seconds: None  # type: ignore[method-assign]
    return made


def snapshots_of(image_id: str) -> list[str]:
    [image] = client("ec2").describe_images(ImageIds=[image_id])["Images"]
    return [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]


def snapshot_exists(snapshot_id: str) -> bool:
    found = client("ec2").describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])
    return bool(found["Snapshots"])


def interrupt_first(environment: Environment, operation: str) -> None:
    """The run is killed (Ctrl-C) just before its first OPERATION call reaches AWS."""
    fired: list[str] = []

    def stop(model: Any, **_: Any) -> None:
        if model.name == operation and not fired:
            fired.append(operation)
            raise KeyboardInterrupt

    environment.aws.ec2.meta.events.register("before-call.ec2.*", stop)


def status_of(environment: Environment) -> dict[str, Any]:
    return show_status(environment, as_json=True, out=io.StringIO())


@pytest.mark.parametrize("finisher", ["cleanup", "destroy"])
def test_a_snapshot_orphaned_by_an_interrupted_deregistration_is_found_and_deleted(cloud, tmp_path, finisher):
    first = environment(tmp_path, "first")
    run_setup(first)
    unused = deployment_image("webapp-dev-carnivore-old")  # never deployed: cleanup deletes it
    tag_snapshots(first, unused)  # as a bake tags them
    [snapshot] = snapshots_of(unused)
    interrupt_first(first, "DeleteSnapshot")

    with pytest.raises(KeyboardInterrupt):
        cleanup(first)
    assert not client("ec2").describe_images(Filters=[{"Name": "image-id", "Values": [unused]}])["Images"]
    assert snapshot_exists(snapshot)  # the orphan, billed for ever unless found

    later = environment(tmp_path, "later")
    assert status_of(later)["leftovers"]["orphan_snapshots"] == [{"id": snapshot, "image": unused}]
    if finisher == "cleanup":
        cleanup(later, dry_run=True)
        assert f"would delete snapshot {snapshot} (its image {unused} is gone)" in output(later)
        cleanup(later)
    else:
        run_destroy(later, yes=True)
    assert not snapshot_exists(snapshot)


def packer_leftover(env: str = "dev") -> dict[str, str]:
    """What a bake killed mid-way leaves: Packer's instance (its run_tags), key pair and security group."""
    ec2 = client("ec2")
    key = f"packer_{env}6568d0a1"
    ec2.create_key_pair(KeyName=key)
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName=f"packer_{env}6568d0a2", Description="Temporary group", VpcId=vpc)
    tags = {"Name": f"packer-webapp-{env}-carnivore-1", "ManagedBy": "immutable-deploy", "App": "webapp", "Env": env}
    [instance] = ec2.run_instances(
        ImageId="ami-12345678",
        MinCount=1,
        MaxCount=1,
        KeyName=key,
        SecurityGroupIds=[group["GroupId"]],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
    )["Instances"]
    return {"instance": instance["InstanceId"], "group": group["GroupId"], "key": key}


@pytest.mark.parametrize("finisher", ["cleanup", "destroy"])
def test_what_a_killed_bake_left_is_shown_and_removed(cloud, tmp_path, finisher):
    first = environment(tmp_path, "first")
    run_setup(first)
    left = packer_leftover()
    other = packer_leftover("prod")  # another environment's bake, running: never touched
    later = environment(tmp_path, "later")

    [shown] = status_of(later)["leftovers"]["packer"]
    assert shown["id"] == left["instance"] and shown["key_pair"] == left["key"]
    assert [g["id"] for g in shown["security_groups"]] == [left["group"]]
    if finisher == "cleanup":
        cleanup(later)
    else:
        run_destroy(later, yes=True)

    ec2 = client("ec2")
    states = {
        i["InstanceId"]: i["State"]["Name"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    }
    assert states[left["instance"]] == "terminated"
    assert states[other["instance"]] == "running"
    assert [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"].startswith("packer_")] == [
        other["key"]
    ]
    groups = {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert left["group"] not in groups and other["group"] in groups
    assert status_of(environment(tmp_path, "after"))["leftovers"] == {"packer": [], "orphan_snapshots": []}


def test_a_run_log_that_cannot_be_written_mid_run_does_not_break_the_deploy(cloud, tmp_path):
    """A full disk or a lost log folder during the health wait: the AWS work goes on (the log is a copy), the
    group is promoted, and the run says once that its log could not be written."""
    first = environment(tmp_path, "first")
    run_setup(first)
    image = deployment_image("webapp-dev-carnivore-1")
    group = launch_group(first, image_id=image)
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    first.log.dir = blocker / "log"  # every write there fails, as on a full disk

    assert wait_then_shift_traffic(first) == group

    assert output(first).count("warning: the run log cannot be written") == 1
    serving = serving_group(environment_groups(first))
    assert serving is not None and serving.name == group
