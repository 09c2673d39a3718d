"""Where moto differs from AWS, fixed inside the embedded cloud: each fix says what AWS does and what moto did.

The one condition: `patch_moto()` runs in every process that hosts moto for the tool, that is the embedded
cloud's server process (deploy/localcloud/server.py, also `python -m deploy.motoserver`) and the test
process, where tests use moto in-process through `mock_aws` (tests/conftest.py calls it at import).
Production modules never know about these fixes: they are written for AWS only.

Each fix replaces or wraps a method of moto's own models, so it holds whichever API call reaches the model.
The fixes progressive delivery needs (target groups no listener uses, CloudWatch percentiles) are in
traffic_fixes.py, those of IAM enforcement in iam_enforcement.py, those of a retirement AWS runs (scheduled
actions, a scale-in that drains) in scaling_fixes.py, installed here with the others.
`patch_moto()` is idempotent: calling it twice installs each fix once.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any

from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup
from moto.core.authorization import ActionAuthenticatorMixin
from moto.ec2.models import amis
from moto.ec2.models.instances import Instance
from moto.elb.models import ELBBackend
from moto.elbv2.exceptions import TargetGroupNotFoundError
from moto.elbv2.models import ELBv2Backend
from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase

from deploy.localcloud.iam_enforcement import (
    iam_prefix,
    refusals_in_the_services_shape,
    sign_the_body,
    unknown_request,
    unknown_resource,
)
from deploy.localcloud.scaling_fixes import install_scaling_fixes
from deploy.localcloud.traffic_fixes import install_traffic_fixes

FIXED = "_localcloud_fix"  # set on every installed replacement: what makes patch_moto idempotent
REGISTRATIONS = "_localcloud_registrations"  # on a group: {load balancer key: instance ids it registered there}

# AWS's published Route 53 hosted zone ids of Elastic Load Balancing, per region: the column "Application and
# Classic Load Balancers" of https://docs.aws.amazon.com/general/latest/gr/elb.html (network load balancers
# have other ids).
ELB_HOSTED_ZONE_IDS = {
    "af-south-1": "Z268VQBMOI5EKX",
    "ap-east-1": "Z3DQVH9N71FHZ0",
    "ap-northeast-1": "Z14GRHDCWA56QT",
    "ap-northeast-2": "ZWKZPGTI48KDX",
    "ap-northeast-3": "Z5LXEXXYW11ES",
    "ap-south-1": "ZP97RAFLXTNZK",
    "ap-southeast-1": "Z1LMS91P8CMLE5",
    "ap-southeast-2": "Z1GM3OXH4ZPM65",
    "ca-central-1": "ZQSVJUPU6J1EY",
    "cn-north-1": "Z1GDH35T77C1KE",
    "cn-northwest-1": "ZM7IZAIOVVDZF",
    "eu-central-1": "Z215JYRZR1TBD5",
    "eu-north-1": "Z23TAZ6LKFMNIO",
    "eu-south-1": "Z3ULH7SSC9OV64",
    "eu-west-1": "Z32O12XQLNTSW2",
    "eu-west-2": "ZHURV8PSTC4K8",
    "eu-west-3": "Z3Q77PNBQS71R4",
    "me-south-1": "ZS929ML54UICD",
    "sa-east-1": "Z2P70J7HTTTPLU",
    "us-east-1": "Z35SXDOTRQ7X7K",
    "us-east-2": "Z3AADJGX6KTTL2",
    "us-gov-east-1": "Z166TLBEWOO7G0",
    "us-gov-west-1": "Z33AYJ8TM3BH4J",
    "us-west-1": "Z368ELLRRE2KJ0",
    "us-west-2": "Z1H1FL5HABSF5",
}
UNKNOWN_REGION_ZONE_ID = "Z2P70J7EXAMPLE"  # moto's own placeholder (of its ALBs), for a region not listed above


def _install(owner: type, name: str, make: Callable[[Any], Callable[..., Any]]) -> None:
    """Replace OWNER.NAME by make(moto's method), once; moto's method stays reachable as __wrapped__."""
    original = getattr(owner, name)
    if getattr(original, FIXED, False):
        return
    fixed = make(original)
    setattr(fixed, FIXED, True)
    setattr(fixed, "__wrapped__", original)  # noqa: B010  # a plain function's attribute mypy does not know
    setattr(owner, name, fixed)


# --- images --------------------------------------------------------------------------------------


def _ebs_backed_images(original: Callable[..., None]) -> Callable[..., None]:
    # AWS: an image made from an EBS-backed instance (CreateImage, CopyImage, RegisterImage) is "ebs".
    # moto: such images report root device type "standard". Packer's amazon-ebs builder refuses a non-EBS
    # source, so without this a carnivore image could not be baked from a primal one. Built-in images pass
    # their own type and are left as they are.
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("root_device_type", "ebs")
        original(self, *args, **kwargs)

    return init


def _root_volume_from_image(original: Callable[..., None]) -> Callable[..., None]:
    # AWS: a launch template's (or RunInstances') block device mapping for the image's root device that gives
    # neither a size nor a snapshot (say, only Encrypted and VolumeType) starts from the image's snapshot, at
    # its size. moto: refuses the launch (MissingParameter: size/snapshot).
    def add_block_device(
        self: Instance, size: int | None, device_path: str, snapshot_id: str | None, *args: Any, **kwargs: Any
    ) -> None:
        if size is None and snapshot_id is None:
            image = self.ec2_backend.amis.get(self.image_id)
            if image is not None and device_path == image.root_device_name:
                snapshot_id = image.ebs_snapshot.id
        original(self, size, device_path, snapshot_id, *args, **kwargs)

    return add_block_device


# --- classic load balancers: one list of registered instances -------------------------------------


def _register_once(original: Callable[..., Any]) -> Callable[..., Any]:
    # AWS: a classic load balancer has one list of registered instances; registering an instance that is
    # already registered changes nothing. moto: keeps two lists (registered by hand, registered by a group)
    # and appends an instance again each time it is registered, so it shows up twice.
    def register_instances(
        self: ELBBackend, load_balancer_name: str, instance_ids: Iterable[str], from_autoscaling: bool = False
    ) -> Any:
        ids = list(dict.fromkeys(instance_ids))
        balancer = self.get_load_balancer(load_balancer_name)
        if balancer is not None:
            ids = [i for i in ids if i not in balancer.instance_ids]
        return original(self, load_balancer_name, ids, from_autoscaling)

    return register_instances


def _deregister_everywhere(original: Callable[..., Any]) -> Callable[..., Any]:
    # AWS: deregistering an instance removes it from the load balancer, however it was registered.
    # moto: removes it only from the list the caller names (by hand, or by a group), so an instance a group
    # registered survives DeregisterInstancesFromLoadBalancer, and one registered by hand survives its
    # group's detachment.
    def deregister_instances(
        self: ELBBackend, load_balancer_name: str, instance_ids: Iterable[str], from_autoscaling: bool = False
    ) -> Any:
        ids = list(instance_ids)
        original(self, load_balancer_name, ids, not from_autoscaling)
        return original(self, load_balancer_name, ids, from_autoscaling)

    return deregister_instances


def _hosted_zone_and_dns_name(original: Callable[..., Any]) -> Callable[..., Any]:
    # AWS: a classic load balancer's description always has CanonicalHostedZoneNameID (Elastic Load
    # Balancing's hosted zone of the region, for Route 53 aliases), and its DNS name is
    # NAME-<digits>.REGION.elb.amazonaws.com. moto: leaves CanonicalHostedZoneNameID out and names every
    # load balancer NAME.us-east-1.elb.amazonaws.com, whatever the region. The digits here are stable for a
    # name (a checksum), as good as AWS's for anyone who reads them from the description.
    def create_load_balancer(self: ELBBackend, name: str, *args: Any, **kwargs: Any) -> Any:
        balancer = original(self, name, *args, **kwargs)
        balancer.dns_name = f"{name}-{zlib.crc32(name.encode())}.{self.region_name}.elb.amazonaws.com"
        balancer.canonical_hosted_zone_name_id = ELB_HOSTED_ZONE_IDS.get(self.region_name, UNKNOWN_REGION_ZONE_ID)
        return balancer

    return create_load_balancer


def _application_hosted_zone(original: Callable[..., Any]) -> Callable[..., Any]:
    # AWS: an Application Load Balancer's CanonicalHostedZoneId is Elastic Load Balancing's hosted zone of
    # its region (the same as a classic load balancer's). moto: the placeholder Z2P70J7EXAMPLE everywhere.
    def create_load_balancer(self: ELBv2Backend, *args: Any, **kwargs: Any) -> Any:
        balancer = original(self, *args, **kwargs)
        if balancer.type == "application":
            balancer.canonical_hosted_zone_id = ELB_HOSTED_ZONE_IDS.get(self.region_name, UNKNOWN_REGION_ZONE_ID)
        return balancer

    return create_load_balancer


# --- groups behind load balancers: each group registers and deregisters its own instances only -----
#
# AWS: an Auto Scaling group registers each of its InService instances with every classic load balancer and
# target group attached to it, and deregisters an instance when it leaves the group (scale-in, termination,
# detachment, standby), when the load balancer is detached, or when the group is deleted. It never touches
# the instances of another group: two groups behind one load balancer both serve.
#
# moto did otherwise. Classic: whenever a group was created, updated or scaled, the load balancer's instance
# list was made equal to that group's instances (every other group was dropped); detaching one load balancer
# deregistered the group from all of them. Target groups: instances were registered but never deregistered, so
# the instances of a group scaled to 0 or deleted stayed registered and "healthy", terminated as they were; an
# instance that replaced a terminated one was never registered. The replacements below keep, per group, which
# instances it registered where (REGISTRATIONS) and converge that to the group's InService instances.


def _registrations(group: FakeAutoScalingGroup) -> dict[str, set[str]]:
    found = group.__dict__.get(REGISTRATIONS)
    if found is None:
        found = {}
        setattr(group, REGISTRATIONS, found)
    return found


def _serving(group: FakeAutoScalingGroup) -> set[str]:
    return {state.instance.id for state in group.active_instances()}


def _sync_classic(backend: AutoScalingBackend, group: FakeAutoScalingGroup, name: str) -> None:
    balancer = backend.elb_backend.get_load_balancer(name)
    if balancer is None:  # deleted before its group
        return
    registered, serving = _registrations(group), _serving(group)
    backend.elb_backend.register_instances(name, sorted(serving), from_autoscaling=True)
    gone = registered.get(f"elb:{name}", set()) - serving
    if gone:
        backend.elb_backend.deregister_instances(name, sorted(gone), from_autoscaling=True)
    registered[f"elb:{name}"] = serving


def _sync_target_group(backend: AutoScalingBackend, group: FakeAutoScalingGroup, arn: str) -> None:
    target_group = backend.elbv2_backend.target_groups.get(arn)
    if target_group is None:  # deleted before its group
        return
    registered, serving = _registrations(group), _serving(group)
    ec2 = backend.ec2_backend
    new = [i for i in sorted(serving) if i not in target_group.targets]
    # Only a running instance can be registered (moto refuses the others: TargetNotRunning).
    new = [i for i in new if (instance := ec2.get_instance_by_id(i)) is not None and instance.is_running()]
    if new:
        backend.elbv2_backend.register_targets(arn, [{"Id": i, "Port": target_group.port} for i in new])
    gone = [i for i in sorted(registered.get(f"tg:{arn}", set()) - serving) if i in target_group.targets]
    if gone:
        backend.elbv2_backend.deregister_targets(arn, [{"Id": i} for i in gone])
    registered[f"tg:{arn}"] = serving


def _release_classic(backend: AutoScalingBackend, group: FakeAutoScalingGroup, name: str) -> None:
    """Deregister from classic load balancer NAME every instance the group registered there or has now."""
    ids = _registrations(group).pop(f"elb:{name}", set()) | {s.instance.id for s in group.instance_states}
    if backend.elb_backend.get_load_balancer(name) is not None and ids:
        backend.elb_backend.deregister_instances(name, sorted(ids), from_autoscaling=True)


def _release_target_group(backend: AutoScalingBackend, group: FakeAutoScalingGroup, arn: str) -> None:
    """Deregister from target group ARN every instance the group registered there or has now, if registered."""
    ids = _registrations(group).pop(f"tg:{arn}", set()) | {s.instance.id for s in group.instance_states}
    target_group = backend.elbv2_backend.target_groups.get(arn)
    if target_group is None:
        raise TargetGroupNotFoundError()
    registered = [i for i in sorted(ids) if i in target_group.targets]
    if registered:
        backend.elbv2_backend.deregister_targets(arn, [{"Id": i} for i in registered])


def _attached_sync(
    attached: Callable[[FakeAutoScalingGroup], list[str]],
    sync: Callable[[AutoScalingBackend, FakeAutoScalingGroup, str], None],
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """moto's update of what is attached to a group, replaced: SYNC each of ATTACHED(group) in turn, as AWS does."""

    def update_attached(self: AutoScalingBackend, group_name: str) -> None:
        group = self.autoscaling_groups[group_name]
        for name in list(attached(group)):
            sync(self, group, name)

    return lambda _: update_attached


_classic_sync = _attached_sync(lambda group: group.load_balancer_names, _sync_classic)
_target_group_sync = _attached_sync(lambda group: group.target_group_arns, _sync_target_group)


def _detach_named_classic(_: Callable[..., None]) -> Callable[..., None]:
    # AWS: DetachLoadBalancers deregisters the group's instances from the load balancers it names.
    # moto: from every load balancer attached to the group, named or not.
    def detach_load_balancers(self: AutoScalingBackend, group_name: str, load_balancer_names: list[str]) -> None:
        group = self.autoscaling_groups[group_name]
        for name in [n for n in group.load_balancer_names if n in load_balancer_names]:
            _release_classic(self, group, name)
        group.load_balancer_names = [n for n in group.load_balancer_names if n not in load_balancer_names]

    return detach_load_balancers


def _detach_registered_targets(_: Callable[..., None]) -> Callable[..., None]:
    # AWS: DetachLoadBalancerTargetGroups detaches the target groups and deregisters whichever of the group's
    # instances are registered there. moto: deregistered every instance of the group and failed with
    # InvalidTarget, after detaching, as soon as one of them was not registered (deregistered by hand, or the
    # replacement of an instance terminated through EC2).
    def detach_load_balancer_target_groups(
        self: AutoScalingBackend, group_name: str, target_group_arns: list[str]
    ) -> None:
        group = self.autoscaling_groups[group_name]
        group.target_group_arns = [arn for arn in group.target_group_arns if arn not in target_group_arns]
        for arn in target_group_arns:
            _release_target_group(self, group, arn)

    return detach_load_balancer_target_groups


def _deregister_deleted_group(original: Callable[..., None]) -> Callable[..., None]:
    # AWS: deleting a group deregisters its instances from its load balancers and target groups. moto: a
    # classic load balancer lost every group's instances, and target groups kept the deleted group's.
    def delete_auto_scaling_group(self: AutoScalingBackend, group_name: str) -> None:
        group = self.autoscaling_groups.get(group_name)
        original(self, group_name)
        if group is None:
            return
        for name in group.load_balancer_names:
            _release_classic(self, group, name)
        for arn in group.target_group_arns:
            if arn in self.elbv2_backend.target_groups:
                _release_target_group(self, group, arn)

    return delete_auto_scaling_group


def _register_replacements(original: Callable[..., None]) -> Callable[..., None]:
    # AWS: when an instance of a group is terminated through EC2, the group deregisters it and registers its
    # replacement with the target groups too. moto: only with classic load balancers.
    def notify_terminate_instances(self: AutoScalingBackend, instance_ids: list[str]) -> None:
        original(self, instance_ids)
        for name, group in list(self.autoscaling_groups.items()):
            if group.target_group_arns:
                self.update_attached_target_groups(name)

    return notify_terminate_instances


def patch_moto() -> None:
    """Install every fix (idempotent): in the embedded cloud's server process, and in tests using mock_aws."""
    _install(amis.Ami, "__init__", _ebs_backed_images)
    _install(Instance, "add_block_device", _root_volume_from_image)
    _install(ELBBackend, "register_instances", _register_once)
    _install(ELBBackend, "deregister_instances", _deregister_everywhere)
    _install(ELBBackend, "create_load_balancer", _hosted_zone_and_dns_name)
    _install(ELBv2Backend, "create_load_balancer", _application_hosted_zone)
    _install(AutoScalingBackend, "update_attached_elbs", _classic_sync)
    _install(AutoScalingBackend, "update_attached_target_groups", _target_group_sync)
    _install(AutoScalingBackend, "detach_load_balancers", _detach_named_classic)
    _install(AutoScalingBackend, "detach_load_balancer_target_groups", _detach_registered_targets)
    _install(AutoScalingBackend, "delete_auto_scaling_group", _deregister_deleted_group)
    _install(AutoScalingBackend, "notify_terminate_instances", _register_replacements)
    install_traffic_fixes(_install)  # target groups no listener uses; CloudWatch percentiles
    install_scaling_fixes(_install)  # scheduled actions; a scale-in drains before it terminates
    _install(IAMRequestBase, "_create_aws_request", sign_the_body)
    _install(IAMRequestBase, "__init__", iam_prefix)
    _install(IAMPolicyStatement, "_check_element_matches", unknown_resource)
    _install(IAMPolicyStatement, "is_action_permitted", unknown_request)
    _install(ActionAuthenticatorMixin, "_authenticate_and_authorize_normal_action", refusals_in_the_services_shape)
