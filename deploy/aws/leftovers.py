"""What an interrupted bake or deregistration can leave behind, found by tags in the account.

- Packer's temporary instance carries the template's run_tags (ManagedBy, App, Env, Name=packer-IMAGE); its
  key pair and security group (named packer_*) are found through it: the instance names them, for as long as
  AWS describes it (terminated instances stay visible for about an hour).
- A snapshot of an image this tool baked is tagged by the tool with the image's id (Image), App, Env and
  ManagedBy: one whose image is gone (a run killed between DeregisterImage and DeleteSnapshot) is an orphan.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from deploy.aws.clients import collect, or_none
from deploy.aws.context import AwsContext
from deploy.naming import MANAGED_BY, tags_of
from deploy.plans.model import OrphanSnapshot, PackerLeftover

PACKER_PREFIX = "packer_"  # Packer's temporary key pair and security group names
LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down", "terminated"]


def _environment_filters(environment: AwsContext) -> list[dict[str, Any]]:
    names = environment.names
    return [
        {"Name": "tag:ManagedBy", "Values": [MANAGED_BY]},
        {"Name": "tag:App", "Values": [names.app]},
        {"Name": "tag:Env", "Values": [names.env]},
    ]


def packer_leftovers(environment: AwsContext) -> list[PackerLeftover]:
    """Packer's instances of this environment (tag Name=packer-*), with the key pair and security groups they
    name that still exist; terminated ones only when they still name something to delete."""
    reservations = collect(
        environment.aws.ec2,
        "describe_instances",
        "Reservations",
        Filters=[
            *_environment_filters(environment),
            {"Name": "tag:Name", "Values": ["packer-*"]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ],
    )
    found = []
    for reservation in reservations:
        for instance in reservation["Instances"]:
            key = instance.get("KeyName") or ""
            groups = tuple(
                (g["GroupId"], g["GroupName"])
                for g in instance.get("SecurityGroups", [])
                if g.get("GroupName", "").startswith(PACKER_PREFIX) and security_group_exists(environment, g["GroupId"])
            )
            item = PackerLeftover(
                id=instance["InstanceId"],
                state=instance["State"]["Name"],
                key_pair=key if key.startswith(PACKER_PREFIX) and key_pair_exists(environment, key) else None,
                security_groups=groups,
            )
            if item.state != "terminated" or item.key_pair or item.security_groups:
                found.append(item)
    return found


def key_pair_exists(environment: AwsContext, name: str) -> bool:
    found = or_none(lambda: environment.aws.ec2.describe_key_pairs(KeyNames=[name])["KeyPairs"])
    return bool(found)


def security_group_exists(environment: AwsContext, group_id: str) -> bool:
    found = or_none(lambda: environment.aws.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"])
    return bool(found)


def terminate_instance(environment: AwsContext, instance_id: str) -> None:
    or_none(lambda: environment.aws.ec2.terminate_instances(InstanceIds=[instance_id]))


def instance_gone(environment: AwsContext, instance_id: str) -> bool:
    found = or_none(
        lambda: environment.aws.ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": [instance_id]}])[
            "Reservations"
        ]
    )
    states = [i["State"]["Name"] for r in found or [] for i in r["Instances"]]
    return all(state == "terminated" for state in states)


def delete_key_pair(environment: AwsContext, name: str) -> None:
    or_none(lambda: environment.aws.ec2.delete_key_pair(KeyName=name))


def tag_snapshots(environment: AwsContext, image_id: str) -> None:
    """Tag the image's snapshots with its id and this environment's tags: an orphan is found later."""
    found = or_none(lambda: environment.aws.ec2.describe_images(ImageIds=[image_id])["Images"])
    snapshots = [
        m["Ebs"]["SnapshotId"]
        for image in found or []
        for m in image.get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    ]
    if snapshots:
        tags = [{"Key": key, "Value": value} for key, value in environment.names.tags(Image=image_id).items()]
        or_none(
            lambda: environment.aws.ec2.create_tags(Resources=snapshots, Tags=tags),
            "AuthFailure",
            "UnauthorizedOperation",
        )


def orphan_snapshots(environment: AwsContext) -> list[OrphanSnapshot]:
    """This environment's snapshots (tagged by the tool with their image) whose image no longer exists."""
    snapshots = collect(
        environment.aws.ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=_environment_filters(environment),
    )
    named = {tags_of(snapshot).get("Image") for snapshot in snapshots} - {None, ""}
    existing: set[str] = set()
    if named:
        images = collect(
            environment.aws.ec2,
            "describe_images",
            "Images",
            Owners=["self"],
            Filters=[{"Name": "image-id", "Values": sorted(str(i) for i in named)}],
        )
        existing = {image["ImageId"] for image in images}
    return [
        OrphanSnapshot(s["SnapshotId"], tags_of(s)["Image"])
        for s in snapshots
        if tags_of(s).get("Image") and tags_of(s)["Image"] not in existing
    ]


def delete_snapshot(environment: AwsContext, snapshot_id: str) -> None:
    or_none(partial(environment.aws.ec2.delete_snapshot, SnapshotId=snapshot_id))
