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
from deploy.aws.history import ABORTED, entry, record
from deploy.aws.images import require_image
from deploy.aws.instances import require_instance_type
from deploy.aws.network import find_security_group, resolve_network
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import carry_out
from deploy.naming import tag_list
from deploy.plans.actions import Action
from deploy.plans.groups import next_stamp
from deploy.plans.pending import pending_launch
from deploy.steps.bake_carnivore import given_image


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
    """The new group an earlier run launched and did not promote, found in the account (its tags)."""
    return pending_launch(environment_groups(environment))


def reuses_leftover(leftover: dict[str, Any] | None, image_id: str | None) -> bool:
    """Whether the launch reuses an earlier run's unpromoted group: only one of the very same image."""
    return bool(leftover and image_id and leftover.get("image_id") == image_id)


def plan_abort(pending: dict[str, Any], raw_group: dict[str, Any] | None) -> list[Action]:
    """Remove a new group that never became healthy, and its launch template. Never one that was promoted
    (the record of its promotion was lost): it serves."""
    if raw_group is not None and Group.from_aws(raw_group).tags.get(PROMOTED_TAG):
        return []
    actions = [Action("delete-group", pending["group"], "never promoted")] if raw_group is not None else []
    return [*actions, Action("delete-launch-template", pending["launch_template"])]


def abort_new_group(environment: Environment, pending: dict[str, Any], reason: str, action: str = "deploy") -> None:
    """Remove a group that never became healthy, and its launch template; the serving group stays untouched.
    The abort is recorded in the account's history (ACTION: the deploy or rollback it ends)."""
    if not pending:
        return
    actions = plan_abort(pending, describe_group(environment, pending["group"]))
    if actions:
        environment.say(f"  removing the new group {pending['group']} ({reason}); the previous group keeps serving")
        carry_out(environment, actions)
        seconds = environment.log.elapsed()
        record(environment, entry(action, ABORTED, pending.get("image_id"), pending["group"], seconds, False, reason))


def launch_group(environment: Environment, image_id: str | None = None) -> str:
    """Create lt-NAME-STAMP and asg-NAME-STAMP with the image, attached to the load balancer; record it as pending."""
    names = environment.names
    config = environment.config
    image = require_image(environment, pending_image(environment, image_id), "Image")
    require_instance_type(environment)
    environment.load_balancer.require()
    leftover = leftover_launch(environment)
    if leftover and reuses_leftover(leftover, image["ImageId"]):
        environment.say(
            f"  skipped: {leftover['group']} with {image['ImageId']} was launched earlier; it is the new group"
        )
        return str(leftover["group"])
    vpc_id, subnet_ids = resolve_network(environment)
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
    # An interrupted launch leaves at most this template (cleanup deletes templates no group uses) or this
    # group, tagged as launched by this tool and not promoted: the next run finds it in the account.
    pending = {"group": group_name, "launch_template": template_name, "image_id": image["ImageId"]}
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
