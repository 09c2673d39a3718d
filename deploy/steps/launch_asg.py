"""`inv launch-asg`: a new launch template and Auto Scaling group with the image, behind the load balancer.

Also how a new group that never became healthy is removed (an abort), since launch-asg itself removes the
leftover of an earlier run that did not finish before it launches another.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deploy.aws.groups import (
    GRACE_PERIOD_S,
    PROMOTED_TAG,
    Group,
    create_group,
    create_launch_template,
    describe_group,
    environment_groups,
)
from deploy.aws.images import require_image
from deploy.aws.instances import require_instance_type
from deploy.aws.loadbalancers import IN_SERVICE
from deploy.aws.network import find_security_group
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import carry_out
from deploy.naming import tag_list
from deploy.plans.actions import Action
from deploy.plans.groups import next_stamp
from deploy.state import PENDING
from deploy.steps.bake_carnivore import given_image
from deploy.steps.networking import checked_network


def instance_security_group(environment: Environment, vpc_id: str) -> str:
    name = environment.names.instance_security_group
    group = find_security_group(environment, vpc_id, name)
    if group is None:
        raise DeployError(f"Security group {name} does not exist: run `inv setup --env {environment.env}` first.")
    return str(group["GroupId"])


def launch_template_data(environment: Environment, image: dict[str, Any], security_group_id: str) -> dict[str, Any]:
    """Current AWS defaults done right: IMDSv2 required, encrypted gp3 root volume, tagged instances."""
    names = environment.names
    instance_tags = tag_list(names.tags(Name=names.stack, Role="web", Image=image["ImageId"]))
    root_device = image.get("RootDeviceName") or "/dev/xvda"
    root_ebs: dict[str, Any] = next(
        (m.get("Ebs", {}) for m in image.get("BlockDeviceMappings", []) if m["DeviceName"] == root_device), {}
    )
    # The image's own size, stated: the volume is re-specified (encrypted gp3), so its size is too.
    size = {"VolumeSize": root_ebs["VolumeSize"]} if root_ebs.get("VolumeSize") else {}
    return {
        "ImageId": image["ImageId"],
        "InstanceType": environment.config.instance_type,
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


def leftover_launch(environment: Environment) -> dict[str, Any] | None:
    """The new group an earlier run launched and did not promote, if it still exists."""
    leftover = environment.state.get(PENDING)
    if leftover and describe_group(environment, leftover["group"]) is not None:
        return leftover
    return None


def reuses_leftover(leftover: dict[str, Any] | None, image_id: str | None) -> bool:
    """Whether the launch reuses an earlier run's unpromoted group: only one of the very same image."""
    return bool(leftover and image_id and leftover.get("image_id") == image_id)


def plan_abort(pending: dict[str, Any], raw_group: dict[str, Any] | None, served: bool = False) -> list[Action]:
    """Remove a new group that never became healthy, and its launch template. Never one that was promoted
    (the record of its promotion was lost): it serves. SERVED: some of its instances were InService at the
    load balancer (they took live requests), so the group drains before it is deleted."""
    if raw_group is not None and Group.from_aws(raw_group).tags.get(PROMOTED_TAG):
        return []
    actions = []
    if raw_group is not None:
        detail = "never promoted; it served, so it drains first" if served else "never promoted"
        actions.append(Action("delete-group", pending["group"], detail, (("drain", served),)))
    return [*actions, Action("delete-launch-template", pending["launch_template"])]


def has_served(environment: Environment, raw_group: dict[str, Any] | None) -> bool:
    """Whether any instance of the group is InService at the load balancer: it takes live requests."""
    if raw_group is None or not environment.load_balancer.exists():
        return False
    instance_ids = list(Group.from_aws(raw_group).instance_ids)
    return IN_SERVICE in environment.load_balancer.serving_states(instance_ids).values()


def abort_new_group(environment: Environment, pending: dict[str, Any], reason: str) -> None:
    """Remove a group that never became healthy, and its launch template; the serving group stays untouched.
    A group whose instances already served is drained first, for at most the load balancer's draining time."""
    if not pending:
        return
    raw_group = describe_group(environment, pending["group"])
    actions = plan_abort(pending, raw_group, has_served(environment, raw_group))
    if actions:
        environment.say(f"  removing the new group {pending['group']} ({reason}); the previous group keeps serving")
        carry_out(environment, actions)
    environment.state.put(PENDING, None)


def launch_group(environment: Environment, image_id: str | None = None) -> str:
    """Create lt-NAME-STAMP and asg-NAME-STAMP with the image, attached to the load balancer; record it as pending."""
    names = environment.names
    config = environment.config
    image = require_image(environment, pending_image(environment, image_id), "Image")
    require_instance_type(environment)
    environment.load_balancer.require()
    leftover = environment.state.get(PENDING)
    if leftover and reuses_leftover(leftover_launch(environment), image["ImageId"]):
        environment.say(
            f"  skipped: {leftover['group']} with {image['ImageId']} was launched earlier; it is the new group"
        )
        return str(leftover["group"])
    network = checked_network(environment)
    vpc_id, subnet_ids = network.vpc_id, network.group_subnet_ids  # only zones that offer INSTANCE_TYPE
    skipped = sorted(set(network.subnet_ids) - set(subnet_ids))
    if skipped:
        environment.say(f"  not using {', '.join(skipped)}: {config.instance_type} is not offered in their zones")
    security_group_id = instance_security_group(environment, vpc_id)
    # Stamped after every group there is, the leftover included: names only ever increase.
    when = next_stamp(datetime.now(UTC), [group.name for group in environment_groups(environment)], names)
    group_name, template_name = names.group(when), names.launch_template(when)
    if leftover:
        abort_new_group(environment, leftover, reason="left over by an earlier run that did not finish")
    template_id = create_launch_template(
        environment, template_name, launch_template_data(environment, image, security_group_id), image["ImageId"]
    )
    environment.say(f"  created launch template {template_name} ({image['ImageId']}, IMDSv2 required, encrypted)")
    # Recorded before the group exists, so an interrupted launch still knows what to remove.
    pending = {"group": group_name, "launch_template": template_name, "image_id": image["ImageId"]}
    environment.state.put(PENDING, pending)
    try:
        create_group(environment, group_name, template_id, subnet_ids, image["ImageId"])
    except BaseException:
        # The call may have created the group before failing (a read timeout, Ctrl-C mid-call).
        abort_new_group(environment, pending, reason="its creation failed")
        raise
    environment.say(
        f"  created group {group_name}: {config.desired_capacity} x {config.instance_type}"
        f" behind {environment.load_balancer.name}, ELB health checks, grace {GRACE_PERIOD_S}s"
    )
    return group_name
