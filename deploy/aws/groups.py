"""Auto Scaling groups, their launch templates and the original scripts' launch configurations.

Reads return what the decisions (deploy/plans) need; writes are single AWS calls, used alike by launch,
wait-health, cleanup and destroy (deploy/execute.py waits on them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deploy.aws.clients import after_create, collect, or_none, refusal
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.naming import MANAGED_BY, tag_list
from deploy.plans.model import DELETING, DEPLOYED_TAG, PROMOTED_TAG, Group

GRACE_PERIOD_S = 300


def environment_groups(environment: Environment) -> list[Group]:
    """This environment's groups: filtered by AWS on the Name tag, then checked by name prefix and tags.

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
    return [group for group in groups if names.belongs(group.tags)]


def describe_group(environment: Environment, name: str, include_deleting: bool = False) -> dict[str, Any] | None:
    """The group, or None when it does not exist (or is being deleted, unless INCLUDE_DELETING)."""
    found = environment.aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    groups = [g for g in found["AutoScalingGroups"] if include_deleting or g.get("Status") != DELETING]
    return groups[0] if groups else None


def launch_templates(environment: Environment) -> list[str]:
    """This environment's launch templates (lt-NAME-STAMP), filtered by AWS on the tool's tags."""
    names = environment.names
    filters = [
        {"Name": "tag:ManagedBy", "Values": [MANAGED_BY]},
        {"Name": "tag:App", "Values": [names.app]},
        {"Name": "tag:Env", "Values": [names.env]},
    ]
    found = collect(environment.aws.ec2, "describe_launch_templates", "LaunchTemplates", Filters=filters)
    return sorted(
        t["LaunchTemplateName"] for t in found if names.owns(t["LaunchTemplateName"], names.launch_template_prefix)
    )


def launch_configurations(environment: Environment) -> list[dict[str, Any]]:
    """The original scripts' lc-NAME-* configurations (AWS offers no server-side filter by name prefix)."""
    names = environment.names
    found = collect(environment.aws.autoscaling, "describe_launch_configurations", "LaunchConfigurations")
    return [lc for lc in found if names.owns(lc["LaunchConfigurationName"], names.launch_configuration_prefix)]


def template_image(environment: Environment, name: str) -> str | None:
    """The image of a launch template's latest version."""
    versions = environment.aws.ec2.describe_launch_template_versions(LaunchTemplateName=name, Versions=["$Latest"])[
        "LaunchTemplateVersions"
    ]
    return versions[0].get("LaunchTemplateData", {}).get("ImageId") if versions else None


def create_launch_template(environment: Environment, name: str, data: dict[str, Any], image_id: str) -> str:
    """Create the template; return its id."""
    template = environment.aws.ec2.create_launch_template(
        LaunchTemplateName=name,
        ClientToken=name,  # idempotent: a retried request (a timeout) cannot make a second template
        LaunchTemplateData=data,
        TagSpecifications=[
            {"ResourceType": "launch-template", "Tags": tag_list(environment.names.tags(Image=image_id))}
        ],
    )["LaunchTemplate"]
    return str(template["LaunchTemplateId"])


def create_group(environment: Environment, name: str, template_id: str, subnet_ids: list[str], image_id: str) -> None:
    """Create the group behind the load balancer, ELB health checks, sized as the env file says."""
    # The launch template was created a moment ago: Auto Scaling may not find it yet (retried, bounded).
    after_create(lambda: _create_group(environment, name, template_id, subnet_ids, image_id), environment.sleep)


def _create_group(environment: Environment, name: str, template_id: str, subnet_ids: list[str], image_id: str) -> None:
    config = environment.config
    names = environment.names
    environment.aws.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"},
        MinSize=config.min_capacity,
        MaxSize=config.max_capacity,
        DesiredCapacity=config.desired_capacity,
        VPCZoneIdentifier=",".join(subnet_ids),
        HealthCheckType="ELB",
        HealthCheckGracePeriod=GRACE_PERIOD_S,
        Tags=[
            {"Key": key, "Value": value, "PropagateAtLaunch": key != "Image"}
            for key, value in names.tags(Name=names.stack, Role="web", Image=image_id).items()
        ],
        **environment.load_balancer.group_attachment(),
    )


def tag_promoted(environment: Environment, group_name: str, image_id: str) -> None:
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


def delete_launch_template(environment: Environment, name: str) -> bool:
    """Delete the template; False when it was gone already."""
    return or_none(lambda: environment.aws.ec2.delete_launch_template(LaunchTemplateName=name)) is not None


def delete_launch_configuration(environment: Environment, name: str) -> None:
    """Delete it; nothing to do when it is gone already."""
    or_none(lambda: environment.aws.autoscaling.delete_launch_configuration(LaunchConfigurationName=name))


def scale_to_zero(environment: Environment, name: str) -> None:
    environment.aws.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=0, DesiredCapacity=0
    )


def instances_left(environment: Environment, name: str) -> int:
    raw = describe_group(environment, name, include_deleting=True)
    return len(raw.get("Instances", [])) if raw else 0


def request_group_deletion(environment: Environment, name: str, force: bool) -> str | None:
    """Ask AWS to delete the group (FORCE: with its instances). None once asked (or gone); else why AWS
    refused for now: it refuses while the group's last scaling activity runs, so the caller retries."""
    return refusal(
        lambda: environment.aws.autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=force),
        "ScalingActivityInProgress",
        "ResourceInUse",
    )


def group_gone(environment: Environment, name: str) -> bool:
    return describe_group(environment, name, include_deleting=True) is None


def require_group(environment: Environment, name: str) -> dict[str, Any]:
    raw = describe_group(environment, name)
    if raw is None:
        raise DeployError(f"Group {name} no longer exists.")
    return raw
