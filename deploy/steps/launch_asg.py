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
from deploy.aws.images import require_image
from deploy.aws.instances import require_instance_type
from deploy.aws.loadbalancers.group_targets import GroupTargetGroups, target_group_name
from deploy.aws.metrics import alarm_states
from deploy.aws.network import find_security_group, resolve_network
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import abort_new_group, carry_out, take_back
from deploy.naming import tag_list
from deploy.plans.groups import next_stamp
from deploy.plans.hand import given_image
from deploy.plans.launch import LaunchPlan, plan_launch
from deploy.plans.pending import Pending, pending_launch
from deploy.plans.ports import PortCheck, port_refusal
from deploy.plans.stages import DEPLOY, ROLLBACK, Launch, Made, Request
from deploy.plans.traffic import MAX_TARGET_GROUPS, missing_alarms, target_groups_refusal
from deploy.steps.networking import checked_network

ALARMS = "alarms"  # facts key: the states of ALARM_NAMES, read once per run


def instance_security_group(environment: Environment, vpc_id: str) -> str:
    """The instances' security group (NAME-web); refused unless it lets the load balancer reach APP_PORT (an
    APP_PORT change: setup opens the new port, and keeps the serving groups' ports open while they serve)."""
    names = environment.names
    name = names.instance_security_group
    group = find_security_group(environment, vpc_id, name)
    if group is None:
        raise DeployError(f"Security group {name} does not exist: run `inv setup --env {environment.env}` first.")
    balancer_group = find_security_group(environment, vpc_id, names.lb_security_group)
    source = str((balancer_group or {}).get("GroupId", ""))
    port = environment.config.app_port
    if not opens(group, port, source):
        raise DeployError(
            f"Security group {name} does not let the load balancer reach port {port} (APP_PORT,"
            f" {environment.config.source_of('APP_PORT')}): run `inv setup --env {environment.env}` first (it opens"
            f" port {port} and keeps the serving group's port open), then deploy. Nothing was launched."
        )
    return str(group["GroupId"])


def opens(group: dict[str, Any], port: int, source_group: str) -> bool:
    """Whether the security group's inbound rules let SOURCE_GROUP reach TCP PORT."""
    return any(
        permission.get("IpProtocol") in ("tcp", "-1")
        and int(permission.get("FromPort", 0)) <= port <= int(permission.get("ToPort", 65535))
        and any(pair.get("GroupId") == source_group for pair in permission.get("UserIdGroupPairs", []))
        for permission in group.get("IpPermissions", [])
    )


def refuse_before_launch(environment: Environment, action: str = DEPLOY) -> None:
    """DeployError, before anything is baked or launched, when the deploy could not be done as configured: APP_PORT
    is not the port the load balancer, as set up, sends requests to (its description is read already: no request),
    or ALARM_NAMES names an alarm the account does not have (one DescribeAlarms, once per run, only when set; not
    for a rollback: it takes no steps)."""
    balancer, config = environment.load_balancer, environment.config
    port, carrier = balancer.instance_port() or (None, balancer.name)
    check = PortCheck(carrier, port, config.app_port, config.source_of("APP_PORT"), environment.env)
    refused = (
        port_refusal(check)
        or (alarms_refusal(environment) if action != ROLLBACK else None)
        or forward_limit_refusal(environment)
    )
    if refused:
        raise DeployError(refused)


def forward_limit_refusal(environment: Environment) -> str | None:
    """Why the new group's target group cannot join the listeners' forward action: AWS allows 5 target groups in
    one, and retiring groups keep theirs there (at weight 0) until they are deleted. Read from the listeners the run
    read already; the groups (an earlier run's leftover leaves first) only when the action is full."""
    balancer = environment.load_balancer
    if not isinstance(balancer, GroupTargetGroups) or not balancer.exists():
        return None
    forwarded = {target_group_name(arn) for arn in balancer.weights()}
    if len(forwarded) < MAX_TARGET_GROUPS:
        return None
    leftover = leftover_launch(environment)
    leaving = {environment.names.group_target_group(leftover.group)} if leftover else set()
    return target_groups_refusal(forwarded, leaving, balancer.name, environment.env)


def alarms_refusal(environment: Environment) -> str | None:
    """Why ALARM_NAMES cannot be used, when it names alarms the account does not have (an alarm that does not exist
    can never roll a step back); None when it can, or when no step reads them (TRAFFIC_STEPS=100). One
    DescribeAlarms, once per run."""
    config = environment.config
    names = tuple(config.alarm_names or ())
    if not names or config.traffic_steps == (100,):
        return None
    states = environment.facts.once(ALARMS, lambda: alarm_states(environment.aws.client("cloudwatch"), names))
    missing = missing_alarms(names, states)
    if not missing:
        return None
    return (
        f"ALARM_NAMES ({config.source_of('ALARM_NAMES')}) names alarms that {config.region} does not have:"
        f" {', '.join(missing)} (an alarm that does not exist can never roll a step back). Create them, or remove"
        " them from ALARM_NAMES. Nothing was launched."
    )


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


def leftover_launch(environment: Environment) -> Pending | None:
    """The new group an earlier run launched and did not promote, found in the account (its tags)."""
    return pending_launch(environment_groups(environment))


def read_launch_plan(environment: Environment, image_id: str | None) -> LaunchPlan:
    """Read what launch-asg decides from, and decide. The leftover of an earlier run is found in the account: a
    group this tool launched and never promoted."""
    groups = environment_groups(environment)
    leftover = pending_launch(groups)
    leftover_group = next((group for group in groups if leftover and group.name == leftover.group), None)
    when = next_stamp(datetime.now(UTC), [group.name for group in groups], environment.names)
    served = has_served(environment, leftover_group)
    return plan_launch(environment.names, when, image_id, leftover, leftover_group, served)


def decide_launch(environment: Environment, request: Request, made: Made) -> Launch:
    """The image bake-carnivore handed on (or the one given), checked; the leftover of an earlier run reused or
    removed first; the template and group to create, in the subnets that offer INSTANCE_TYPE."""
    config = environment.config
    image = made.image or given_image(request.image_id, config.image_id)
    by_hand = made.by_hand if made.image else bool(image)
    if image is None and not made.planned:
        raise DeployError(f"No image to launch for {environment.env}: run `inv bake-carnivore` or pass --image-id.")
    if image is not None:
        require_image(environment, image, "Image")
    require_instance_type(environment)
    balancer = environment.load_balancer
    if made.planned and not balancer.exists():
        raise DeployError(
            f"The deploy would fail at launch-asg: load balancer {balancer.name} does not exist;"
            f" run `inv setup --env {environment.env}` first."
        )
    balancer.require()
    refuse_before_launch(environment, request.action)
    plan = read_launch_plan(environment, image)
    subnets: tuple[str, ...] = ()
    security_group = ""
    if not plan.reused:
        if made.planned:
            vpc_id, subnet_ids = resolve_network(environment)
            subnets = tuple(subnet_ids)
        else:
            network = checked_network(environment)
            vpc_id, subnets = network.vpc_id, tuple(network.group_subnet_ids)  # zones that offer INSTANCE_TYPE
            skipped = sorted(set(network.instance_subnet_ids) - set(subnets))
            if skipped:
                environment.say(
                    f"  not using {', '.join(skipped)}: {config.instance_type} is not offered in their zones"
                )
        security_group = instance_security_group(environment, vpc_id)
    return Launch(
        plan=plan,
        image=image,
        by_hand=by_hand,
        capacity=config.desired_capacity,
        instance_type=config.instance_type,
        load_balancer=balancer.name,
        subnet_ids=subnets,
        security_group_id=security_group,
        target_group=environment.names.group_target_group(plan.group) if balancer.kind == "application" else "",
    )


def act_launch(environment: Environment, decision: Launch, made: Made) -> Made:
    group = carry_out_launch(environment, decision)
    removed = frozenset(action.target for action in decision.plan.remove_first)
    return made.with_(
        image=decision.image,
        by_hand=decision.by_hand,
        group=group,
        launch_template=decision.plan.launch_template,
        removed=removed,
    )


def carry_out_launch(environment: Environment, decision: Launch) -> str:
    """Create the template and group the decision names, attached to the load balancer (the group is found by its
    tags until it is promoted); remove an earlier run's leftover first."""
    plan, image_id = decision.plan, decision.image
    assert image_id is not None  # a run's decision always names its image
    if plan.reused:
        environment.say(f"  skipped: {plan.group} with {image_id} was launched earlier; it is the new group")
        # A run killed during its traffic steps left it weight: every request back to the serving group until it is
        # found healthy and judged again (no request when its weight is 0 already).
        take_back(environment, plan.group)
        return plan.group
    if plan.remove_first:
        environment.say(
            "  removing the leftover of an earlier run that did not finish; the serving group keeps serving"
        )
        leftovers = [action.target for action in plan.remove_first if action.op == "delete-group"]
        for leftover in leftovers:  # a run killed during its traffic steps left it weight: the serving group first
            take_back(environment, leftover)
        carry_out(environment, list(plan.remove_first))
        for line in environment.load_balancer.release(None, leftovers):
            environment.say(f"  {line}")
    image = require_image(environment, image_id, "Image")
    group_name, template_name = plan.group, plan.launch_template
    data = launch_template_data(environment, image, decision.security_group_id)
    template_id = create_launch_template(environment, template_name, data, image_id)
    environment.say(f"  created launch template {decision.template_text()}")
    # An interrupted launch leaves at most this template (cleanup deletes templates no group uses) or this
    # group, tagged as launched by this tool and not promoted: the next run finds it in the account.
    pending = Pending(group_name, template_name, image_id)
    try:
        create_group(
            environment, group_name, (template_id, template_name), list(decision.subnet_ids), image_id, decision.by_hand
        )
    except BaseException:
        # The call may have created the group before failing (a read timeout, Ctrl-C mid-call).
        abort_new_group(environment, pending, reason="its creation failed")
        raise
    environment.say(f"  created group {decision.group_text()}, ELB health checks, grace {GRACE_PERIOD_S}s")
    return group_name


def launch_group(environment: Environment, image_id: str | None = None, by_hand: bool = False) -> str:
    """The stage alone, with IMAGE_ID (BY_HAND: given by hand): lt-NAME-STAMP and asg-NAME-STAMP; the group's name."""
    made = Made(image=image_id, by_hand=by_hand)
    return carry_out_launch(environment, decide_launch(environment, Request(), made))
