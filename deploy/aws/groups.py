"""Auto Scaling groups, their launch templates and the original scripts' launch configurations.

Reads return what the decisions (deploy/plans) need; writes are single AWS calls, used alike by launch,
wait-health, cleanup and destroy (deploy/execute.py waits on them).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from deploy.aws.clients import after_create, collect, or_none, refusal
from deploy.aws.context import AwsContext
from deploy.aws.images import tag_image
from deploy.errors import DeployError
from deploy.facts import GROUPS
from deploy.naming import MANAGED_BY, tag_list
from deploy.plans.groups import serving_group
from deploy.plans.hand import GROUP_HAND_TAG as GROUP_HAND_TAG  # the rule: deploy/plans/hand.py
from deploy.plans.hand import group_tags
from deploy.plans.model import (
    DELETING,
    DEPLOYED_TAG,
    PROMOTED_TAG,
    RETIRE_ACTION,
    RETIRE_AT_TAG,
    ROLLED_BACK_TAG,
    Group,
)

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the tags' times (UTC): they order as text


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def utc_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


GRACE_PERIOD_S = 300


def environment_groups(environment: AwsContext) -> list[Group]:
    """This environment's groups: filtered by AWS on the Name tag, then checked by name prefix and tags.

    Read once per run (deploy/facts.py); this run's own changes to them are remembered (`remember_group`,
    `forget_group`), so launch-asg, wait-health and the deploy's cleanup share one read.
    Groups made by the original scripts carry the same Name tag and the asg-NAME- prefix.
    """
    return list(environment.facts.once(GROUPS, lambda: _read_environment_groups(environment)))


def _read_environment_groups(environment: AwsContext) -> list[Group]:
    names = environment.names
    raw = collect(
        environment.aws.autoscaling,
        "describe_auto_scaling_groups",
        "AutoScalingGroups",
        Filters=[{"Name": "tag:Name", "Values": [names.stack]}],
    )
    groups = [Group.from_aws(item) for item in raw if names.owns(item["AutoScalingGroupName"], names.group_prefix)]
    return [group for group in groups if names.belongs(group.tags)]


def describe_group(environment: AwsContext, name: str, include_deleting: bool = False) -> dict[str, Any] | None:
    """The group as AWS describes it now, or None when it does not exist (or is being deleted, unless
    INCLUDE_DELETING). Always a fresh read (a poll); what it finds updates the run's memo of the groups."""
    found = environment.aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    raw = found["AutoScalingGroups"][0] if found["AutoScalingGroups"] else None
    if raw is None:
        forget_group(environment, name)
    else:
        remember_group(environment, raw)
    return raw if raw is not None and (include_deleting or raw.get("Status") != DELETING) else None


def remember_group(environment: AwsContext, raw: dict[str, Any]) -> None:
    """This run knows the group as RAW now (it created, tagged or read it): the memo of the groups says so."""
    name = raw["AutoScalingGroupName"]
    if not environment.names.owns(name, environment.names.group_prefix):
        return
    group = Group.from_aws(raw)
    if environment.names.belongs(group.tags):  # not read yet: nothing to update (the first read will see it)
        environment.facts.update(GROUPS, lambda known: [g for g in known if g.name != name] + [group])


def forget_group(environment: AwsContext, name: str) -> None:
    """The group is gone (or going): the memo of the groups no longer lists it."""
    environment.facts.update(GROUPS, lambda known: [g for g in known if g.name != name])


def launch_templates(environment: AwsContext) -> list[str]:
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


def launch_configurations(environment: AwsContext) -> list[dict[str, Any]]:
    """The original scripts' lc-NAME-* configurations (AWS offers no server-side filter by name prefix)."""
    names = environment.names
    found = collect(environment.aws.autoscaling, "describe_launch_configurations", "LaunchConfigurations")
    return [lc for lc in found if names.owns(lc["LaunchConfigurationName"], names.launch_configuration_prefix)]


def template_image(environment: AwsContext, name: str) -> str | None:
    """The image of a launch template's latest version."""
    versions = environment.aws.ec2.describe_launch_template_versions(LaunchTemplateName=name, Versions=["$Latest"])[
        "LaunchTemplateVersions"
    ]
    return versions[0].get("LaunchTemplateData", {}).get("ImageId") if versions else None


def create_launch_template(environment: AwsContext, name: str, data: dict[str, Any], image_id: str) -> str:
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


def create_group(
    environment: AwsContext,
    name: str,
    template: tuple[str, str],
    subnet_ids: list[str],
    image_id: str,
    by_hand: bool = False,
) -> None:
    """Create the group behind the load balancer, ELB health checks, sized as the env file says.
    TEMPLATE: the launch template's (id, name). BY_HAND: its image was given by hand (--image-id): the group's tag
    says so, and its promotion marks the image as never to be deleted."""
    # Its place behind the load balancer first (an ALB: its own target group, in the listeners at weight 0).
    attachment = environment.load_balancer.group_attachment(name)
    # The launch template was created a moment ago: Auto Scaling may not find it yet (retried, bounded).
    create = partial(_create_group, environment, name, template, subnet_ids, image_id, by_hand, attachment)
    after_create(create, environment.sleep)


def _create_group(
    environment: AwsContext,
    name: str,
    template: tuple[str, str],
    subnet_ids: list[str],
    image_id: str,
    by_hand: bool,
    attachment: dict[str, Any],
) -> None:
    template_id, template_name = template
    config = environment.config
    names = environment.names
    hand = group_tags(by_hand)
    tags = [
        {"Key": key, "Value": value, "PropagateAtLaunch": key not in ("Image", GROUP_HAND_TAG)}
        for key, value in names.tags(Name=names.stack, Role="web", Image=image_id, **hand).items()
    ]
    environment.aws.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateId": template_id, "Version": "$Latest"},
        MinSize=config.min_capacity,
        MaxSize=config.max_capacity,
        DesiredCapacity=config.desired_capacity,
        VPCZoneIdentifier=",".join(subnet_ids),
        HealthCheckType="ELB",
        HealthCheckGracePeriod=GRACE_PERIOD_S,
        Tags=tags,
        **attachment,
    )
    # What AWS now holds, as far as the later steps decide from it (no describe: the first poll reads it).
    remember_group(
        environment,
        {
            "AutoScalingGroupName": name,
            "MinSize": config.min_capacity,
            "DesiredCapacity": config.desired_capacity,
            "MaxSize": config.max_capacity,
            "LaunchTemplate": {"LaunchTemplateId": template_id, "LaunchTemplateName": template_name},
            "Instances": [],
            "Tags": tags,
            **attachment,
        },
    )


def tag_promoted(
    environment: AwsContext, group_name: str, image_id: str, image_tags: dict[str, str] | None = None
) -> None:
    """Mark the group as the one that serves, and its image as deployed (for rollback), in AWS itself; IMAGE_TAGS
    go onto the image in the same request (an image given by hand: GivenByHand).

    The group that served until now gets, in the same request, the end of its window (RetireAt: now +
    KEEP_PREVIOUS_SECONDS, scaled on an emulator): the account then says at once which group is kept and until
    when, whatever happens to this run (the deploy's end schedules its retirement at that time)."""
    moment = datetime.now(UTC)
    now = utc_text(moment)
    tag = {"Key": PROMOTED_TAG, "Value": now, "PropagateAtLaunch": False}
    tags = {group_name: [tag]}
    window = environment.config.aws_seconds(environment.config.keep_previous_seconds)
    previous = serving_group([g for g in environment_groups(environment) if g.name != group_name])
    if window > 0 and previous is not None and previous.tags.get("ManagedBy") == MANAGED_BY:
        end = utc_text(moment + timedelta(seconds=window))
        tags[previous.name] = [{"Key": RETIRE_AT_TAG, "Value": end, "PropagateAtLaunch": False}]
    write_group_tags(environment, tags)
    # An image shared with this account by its owner cannot be tagged here: it is then not this tool's to delete.
    tag_image(environment, image_id, {**(image_tags or {}), DEPLOYED_TAG: now})


def write_group_tags(environment: AwsContext, tags: dict[str, list[dict[str, Any]]]) -> None:
    """One CreateOrUpdateTags for every group's TAGS; the run's memo of the groups follows."""
    environment.aws.autoscaling.create_or_update_tags(
        Tags=[
            {"ResourceId": name, "ResourceType": "auto-scaling-group", **tag}
            for name, each in tags.items()
            for tag in each
        ]
    )
    for name, each in tags.items():
        known = next((g for g in environment_groups_known(environment) if g.name == name), None)
        if known is not None and known.raw:
            keys = {tag["Key"] for tag in each}
            kept = [t for t in known.raw.get("Tags", []) if t["Key"] not in keys]
            remember_group(environment, {**known.raw, "Tags": kept + [{**t, "ResourceId": name} for t in each]})


def tag_rolled_back(environment: AwsContext, group_name: str) -> None:
    """Mark a promoted group as rolled back: it never serves again (deploy/plans/groups.py serving_group)."""
    write_group_tags(
        environment,
        {group_name: [{"Key": ROLLED_BACK_TAG, "Value": utc_text(datetime.now(UTC)), "PropagateAtLaunch": False}]},
    )


def scale_in(environment: AwsContext, name: str) -> None:
    """Size the group 0: AWS deregisters its instances from the load balancer, waits for their draining, then
    terminates them (no wait here). Repeating it changes nothing."""
    environment.aws.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=0, DesiredCapacity=0
    )
    known = next((g for g in environment_groups_known(environment) if g.name == name), None)
    if known is not None and known.raw:
        remember_group(environment, {**known.raw, "MinSize": 0, "MaxSize": 0, "DesiredCapacity": 0})


def schedule_retirement(environment: AwsContext, name: str, start: datetime) -> None:
    """Have AWS size the group 0 at START (its window's end, in AWS's time): one scheduled action of a fixed name,
    so a rollback deletes it with no read, and putting it again replaces it."""
    environment.aws.autoscaling.put_scheduled_update_group_action(
        AutoScalingGroupName=name,
        ScheduledActionName=RETIRE_ACTION,
        StartTime=start,
        MinSize=0,
        MaxSize=0,
        DesiredCapacity=0,
    )


def cancel_retirement(environment: AwsContext, name: str) -> bool:
    """Delete the group's scheduled retirement; False when there was none (it ran, or was never put)."""
    call = lambda: environment.aws.autoscaling.delete_scheduled_action(  # noqa: E731
        AutoScalingGroupName=name, ScheduledActionName=RETIRE_ACTION
    )
    return or_none(call, "ValidationError") is not None


def scheduled_retirements(environment: AwsContext, names: list[str]) -> dict[str, str]:
    """{group: the StartTime of its retirement, as AWS says it} for those of NAMES that have one."""
    found: dict[str, str] = {}
    for name in names:  # AWS lists one group's actions a request (or every group of the region)
        actions = collect(
            environment.aws.autoscaling,
            "describe_scheduled_actions",
            "ScheduledUpdateGroupActions",
            AutoScalingGroupName=name,
            ScheduledActionNames=[RETIRE_ACTION],
        )
        for action in actions:
            start = action.get("StartTime") or action.get("Time")
            found[name] = utc_text(start) if isinstance(start, datetime) else str(start)
    return found


def describe_groups(environment: AwsContext, names: list[str]) -> list[dict[str, Any]]:
    """The groups NAMES as AWS describes them now (a poll: never from the memo); one request per 50 names."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(names), 50):
        chunk = names[start : start + 50]
        found += collect(
            environment.aws.autoscaling,
            "describe_auto_scaling_groups",
            "AutoScalingGroups",
            AutoScalingGroupNames=chunk,
        )
    return found


def environment_groups_known(environment: AwsContext) -> list[Group]:
    """The groups as this run knows them, without reading (empty when it has not read them)."""
    return list(environment.facts.get(GROUPS) or [])


def delete_launch_template(environment: AwsContext, name: str) -> bool:
    """Delete the template; False when it was gone already."""
    return or_none(lambda: environment.aws.ec2.delete_launch_template(LaunchTemplateName=name)) is not None


def delete_launch_configuration(environment: AwsContext, name: str) -> None:
    """Delete it; nothing to do when it is gone already."""
    or_none(lambda: environment.aws.autoscaling.delete_launch_configuration(LaunchConfigurationName=name))


def request_group_deletion(environment: AwsContext, name: str, force: bool) -> str | None:
    """Ask AWS to delete the group (FORCE: with its instances). None once asked (or gone); else why AWS
    refused for now: it refuses while the group's last scaling activity runs, so the caller retries."""
    return refusal(
        lambda: environment.aws.autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=force),
        "ScalingActivityInProgress",
        "ResourceInUse",
    )


def group_gone(environment: AwsContext, name: str) -> bool:
    return describe_group(environment, name, include_deleting=True) is None


def require_group(environment: AwsContext, name: str) -> dict[str, Any]:
    raw = describe_group(environment, name)
    if raw is None:
        raise DeployError(f"Group {name} no longer exists.")
    return raw
