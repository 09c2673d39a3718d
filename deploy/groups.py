"""Auto Scaling groups and their launch templates: launch, list, and the pure decisions about them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from deploy.aws.clients import collect, error_code
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.images import given_image, require_image, require_instance_type
from deploy.naming import MANAGED_BY, STAMP_FORMAT, Names, stamp, tag_list
from deploy.setup import find_security_group, resolve_network

GRACE_PERIOD_S = 300
PENDING = "pending"
SERVING = "serving"
PROMOTED_TAG = "Promoted"  # on a group, once it was healthy and took over
DEPLOYED_TAG = "Deployed"  # on an image, each time a group of it was promoted


@dataclass(frozen=True)
class Group:
    """What the decisions need to know of one Auto Scaling group."""

    name: str
    desired: int = 0
    instance_ids: tuple[str, ...] = ()
    launch_template: str | None = None
    launch_configuration: str | None = None
    image_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    created: str = ""

    @classmethod
    def from_aws(cls, raw: dict[str, Any]) -> Group:
        template = raw.get("LaunchTemplate") or (raw.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get(
            "LaunchTemplateSpecification"
        )
        tags = {tag["Key"]: tag["Value"] for tag in raw.get("Tags", [])}
        return cls(
            name=raw["AutoScalingGroupName"],
            desired=int(raw.get("DesiredCapacity", 0)),
            instance_ids=tuple(i["InstanceId"] for i in raw.get("Instances", [])),
            launch_template=(template or {}).get("LaunchTemplateName"),
            launch_configuration=raw.get("LaunchConfigurationName"),
            image_id=tags.get("Image"),
            tags=tags,
            created=str(raw.get("CreatedTime", "")),
        )


def next_stamp(now: datetime, taken: list[str], names: Names) -> str:
    """A stamp later than any of this environment's groups: two launches in one second never collide."""
    suffixes = (name[len(names.group_prefix) :] for name in taken if names.owns(name, names.group_prefix))
    # Only stamps order: an old-script suffix such as "v2" must not make every stamp look too early.
    latest = max((suffix for suffix in suffixes if re.fullmatch(r"\d{14}", suffix)), default="")
    candidate = now
    while stamp(candidate) <= latest or names.group(stamp(candidate)) in taken:
        candidate += timedelta(seconds=1)
    return stamp(candidate)


def serving_group(groups: list[Group]) -> Group | None:
    """The group that serves: the newest one this tool promoted (tag Promoted, set once it was healthy).

    When none is, an environment made by the original scripts is being adopted: its newest group
    with instances (one without this tool's ManagedBy tag) serves. A group this tool launched but
    never promoted never counts: it is the leftover of a deploy that failed or was killed.
    """
    promoted = [group for group in groups if group.tags.get(PROMOTED_TAG)]
    if promoted:
        return max(promoted, key=lambda group: (group.tags[PROMOTED_TAG], group.name))
    legacy = [group for group in groups if group.desired > 0 and group.tags.get("ManagedBy") != MANAGED_BY]
    return max(legacy, key=lambda group: group.name, default=None)


def outdated_groups(groups: list[Group], keep: set[str]) -> list[Group]:
    """Every group of the environment except those to keep, oldest first."""
    return sorted((group for group in groups if group.name not in keep), key=lambda group: group.name)


def environment_groups(environment: Environment) -> list[Group]:
    """This environment's groups: filtered by AWS on the Name tag, then checked by name prefix.

    Groups made by the original scripts carry the same Name tag and the asg-NAME- prefix.
    """
    names = environment.names
    raw = collect(
        environment.aws.autoscaling,
        "describe_auto_scaling_groups",
        "AutoScalingGroups",
        Filters=[{"Name": "tag:Name", "Values": [names.stack]}],
    )
    groups = [Group.from_aws(item) for item in raw if names.owns(item["AutoScalingGroupName"], names.group_prefix)]
    # APP "shop" + ENV "eu-prod" and APP "shop-eu" + ENV "prod" share a stack name: tags tell them apart.
    return [
        g for g in groups if g.tags.get("App", names.app) == names.app and g.tags.get("Env", names.env) == names.env
    ]


def describe_group(environment: Environment, name: str, include_deleting: bool = False) -> dict[str, Any] | None:
    """The group, or None when it does not exist (or is being deleted, unless INCLUDE_DELETING)."""
    found = environment.aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    groups = [g for g in found["AutoScalingGroups"] if include_deleting or g.get("Status") != "Delete in progress"]
    return groups[0] if groups else None


def instance_security_group(environment: Environment, vpc_id: str) -> str:
    name = environment.names.instance_security_group
    group = find_security_group(environment, vpc_id, name)
    if group is None:
        raise DeployError(f"Security group {name} does not exist: run `inv setup --env {environment.env}` first.")
    return str(group["GroupId"])


def launch_template_data(environment: Environment, image: dict[str, Any], security_group_id: str) -> dict[str, Any]:
    """Current AWS defaults done right: IMDSv2 required, encrypted gp3 root volume, tagged instances."""
    config = environment.config
    names = environment.names
    instance_tags = tag_list(names.tags(Name=names.stack, Role="web", Image=image["ImageId"]))
    root_device = image.get("RootDeviceName") or "/dev/xvda"
    root_ebs = next(
        (m.get("Ebs", {}) for m in image.get("BlockDeviceMappings", []) if m["DeviceName"] == root_device), {}
    )
    # The image's own size, stated explicitly (moto insists; AWS would take it from the snapshot).
    size = {"VolumeSize": root_ebs["VolumeSize"]} if root_ebs.get("VolumeSize") else {}
    return {
        "ImageId": image["ImageId"],
        "InstanceType": str(config.instance_type),
        "KeyName": names.key_pair,
        "SecurityGroupIds": [security_group_id],
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled", "HttpPutResponseHopLimit": 1},
        "BlockDeviceMappings": [
            {
                "DeviceName": root_device,
                "Ebs": {"Encrypted": True, "VolumeType": "gp3", "DeleteOnTermination": True, **size},
            }
        ],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": instance_tags},
            {"ResourceType": "volume", "Tags": instance_tags},
        ],
    }


def pending_image(environment: Environment, image_id: str | None) -> str:
    image = given_image(environment, image_id) or (environment.state.get("carnivore") or {}).get("image_id")
    if not image:
        raise DeployError(f"No image to launch for {environment.env}: run `inv bake-carnivore` or pass --image-id.")
    return str(image)


def launch_group(environment: Environment, image_id: str | None = None) -> str:
    """Create lt-NAME-STAMP and asg-NAME-STAMP with the image, attached to the load balancer; record it as pending."""
    names = environment.names
    config = environment.config
    image = require_image(environment, pending_image(environment, image_id), "Image")
    require_instance_type(environment)
    environment.load_balancer.require()
    leftover = environment.state.get(PENDING)
    if leftover:
        if leftover.get("image_id") == image["ImageId"] and describe_group(environment, leftover["group"]):
            environment.say(
                f"  skipped: {leftover['group']} with {image['ImageId']} was launched earlier; it is the new group"
            )
            return str(leftover["group"])
        from deploy.health import abort_new_group  # late: health builds on this module

        abort_new_group(environment, leftover, reason="left over by an earlier run that did not finish")
    vpc_id, subnet_ids = resolve_network(environment)
    security_group_id = instance_security_group(environment, vpc_id)
    existing = environment_groups(environment)
    when = next_stamp(datetime.now(UTC), [group.name for group in existing], names)
    group_name, template_name = names.group(when), names.launch_template(when)
    autoscaling, ec2 = environment.aws.autoscaling, environment.aws.ec2
    template = ec2.create_launch_template(
        LaunchTemplateName=template_name,
        LaunchTemplateData=launch_template_data(environment, image, security_group_id),
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tag_list(names.tags(Image=image["ImageId"]))}],
    )["LaunchTemplate"]
    environment.say(f"  created launch template {template_name} ({image['ImageId']}, IMDSv2 required, encrypted)")
    # Recorded before the group exists, so an interrupted launch still knows what to remove.
    environment.state.put(
        PENDING, {"group": group_name, "launch_template": template_name, "image_id": image["ImageId"]}
    )
    try:
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=group_name,
            LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
            MinSize=int(config.min_capacity),  # type: ignore[arg-type]
            MaxSize=int(config.max_capacity),  # type: ignore[arg-type]
            DesiredCapacity=int(config.desired_capacity),  # type: ignore[arg-type]
            VPCZoneIdentifier=",".join(subnet_ids),
            HealthCheckType="ELB",
            HealthCheckGracePeriod=GRACE_PERIOD_S,
            Tags=[
                {"Key": key, "Value": value, "PropagateAtLaunch": key != "Image"}
                for key, value in names.tags(Name=names.stack, Role="web", Image=image["ImageId"]).items()
            ],
            **environment.load_balancer.group_attachment(),
        )
    except BaseException:
        from deploy.health import abort_new_group  # late: health builds on this module

        # The call may have created the group before failing (a read timeout, Ctrl-C mid-call).
        abort_new_group(environment, environment.state.get(PENDING) or {}, reason="its creation failed")
        raise
    environment.say(
        f"  created group {group_name}: {config.desired_capacity} x {config.instance_type}"
        f" behind {environment.load_balancer.name}, ELB health checks, grace {GRACE_PERIOD_S}s"
    )
    return group_name


def promote(environment: Environment, group_name: str, image_id: str) -> None:
    """Mark the group as the one that serves, and its image as deployed (for rollback), in AWS itself."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    environment.aws.autoscaling.create_or_update_tags(
        Tags=[
            {
                "ResourceId": group_name,
                "ResourceType": "auto-scaling-group",
                "Key": PROMOTED_TAG,
                "Value": now,
                "PropagateAtLaunch": False,
            }
        ]
    )
    environment.aws.ec2.create_tags(Resources=[image_id], Tags=[{"Key": DEPLOYED_TAG, "Value": now}])
    environment.state.put(SERVING, {"group": group_name, "image_id": image_id})
    environment.state.put(PENDING, None)


def delete_launch_template(environment: Environment, name: str) -> bool:
    try:
        environment.aws.ec2.delete_launch_template(LaunchTemplateName=name)
        return True
    except ClientError as error:
        if error_code(error) in ("InvalidLaunchTemplateName.NotFoundException", "InvalidLaunchTemplateId.NotFound"):
            return False
        raise


def group_stamp_time(name: str, names: Names) -> datetime | None:
    try:
        return datetime.strptime(name[len(names.group_prefix) :], STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
