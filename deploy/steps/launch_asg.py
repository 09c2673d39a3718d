"""`inv launch-asg`: a new launch template and Auto Scaling group with the image, behind the load balancer.

An earlier run's unpromoted group is reused (same image) or removed first (deploy/plans/launch.py decides).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deploy.aws.groups import (
    GRACE_PERIOD_S,
    create_group,
    create_launch_template,
    environment_groups,
)
from deploy.aws.health import has_served
from deploy.aws.images import CARNIVORE, require_image
from deploy.aws.instances import require_instance_type
from deploy.aws.network import find_security_group
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import abort_new_group, carry_out
from deploy.naming import tag_list
from deploy.plans.groups import next_stamp
from deploy.plans.launch import LaunchPlan, plan_launch
from deploy.plans.pending import pending_launch
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
    image = given_image(environment, image_id) or (environment.state.get(CARNIVORE) or {}).get("image_id")
    if not image:
        raise DeployError(f"No image to launch for {environment.env}: run `inv bake-carnivore` or pass --image-id.")
    return str(image)


def leftover_launch(environment: Environment) -> dict[str, Any] | None:
    """The new group an earlier run launched and did not promote, found in the account (its tags)."""
    return pending_launch(environment_groups(environment))


def read_launch_plan(environment: Environment, image_id: str | None) -> LaunchPlan:
    """Read what launch-asg decides from, and decide (for the step and the deploy's dry run alike). The leftover
    of an earlier run is found in the account: a group this tool launched and never promoted."""
    groups = environment_groups(environment)
    leftover = pending_launch(groups)
    leftover_raw = next((group.raw for group in groups if leftover and group.name == leftover["group"]), None)
    when = next_stamp(datetime.now(UTC), [group.name for group in groups], environment.names)
    served = has_served(environment, leftover_raw)
    return plan_launch(environment.names, when, image_id, leftover, leftover_raw, served)


def launch_group(environment: Environment, image_id: str | None = None) -> str:
    """Create lt-NAME-STAMP and asg-NAME-STAMP with the image, attached to the load balancer; record it as pending."""
    config = environment.config
    image = require_image(environment, pending_image(environment, image_id), "Image")
    require_instance_type(environment)
    environment.load_balancer.require()
    plan = read_launch_plan(environment, image["ImageId"])
    if plan.reused:
        environment.say(f"  skipped: {plan.group} with {image['ImageId']} was launched earlier; it is the new group")
        return plan.group
    network = checked_network(environment)
    vpc_id, subnet_ids = network.vpc_id, network.group_subnet_ids  # only zones that offer INSTANCE_TYPE
    skipped = sorted(set(network.instance_subnet_ids) - set(subnet_ids))
    if skipped:
        environment.say(f"  not using {', '.join(skipped)}: {config.instance_type} is not offered in their zones")
    security_group_id = instance_security_group(environment, vpc_id)
    if plan.remove_first:
        environment.say(
            "  removing the leftover of an earlier run that did not finish; the serving group keeps serving"
        )
        carry_out(environment, list(plan.remove_first))
    group_name, template_name = plan.group, plan.launch_template
    template_id = create_launch_template(
        environment, template_name, launch_template_data(environment, image, security_group_id), image["ImageId"]
    )
    environment.say(f"  created launch template {template_name} ({image['ImageId']}, IMDSv2 required, encrypted)")
    # An interrupted launch leaves at most this template (cleanup deletes templates no group uses) or this
    # group, tagged as launched by this tool and not promoted: the next run finds it in the account.
    pending = {"group": group_name, "launch_template": template_name, "image_id": image["ImageId"]}
    by_hand = environment.given_image == image["ImageId"]
    try:
        create_group(environment, group_name, (template_id, template_name), subnet_ids, image["ImageId"], by_hand)
    except BaseException:
        # The call may have created the group before failing (a read timeout, Ctrl-C mid-call).
        abort_new_group(environment, pending, reason="its creation failed")
        raise
    environment.say(
        f"  created group {group_name}: {config.desired_capacity} x {config.instance_type}"
        f" behind {environment.load_balancer.name}, ELB health checks, grace {GRACE_PERIOD_S}s"
    )
    return group_name
