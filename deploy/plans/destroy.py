"""What `inv destroy` deletes, in an order AWS allows, and what it keeps (and why), from described state.

The order makes each deletion possible on AWS: the DNS record first (the site stops resolving to the
load balancer), then the groups (detached, force-deleted with their instances, awaited), their launch
templates and configurations, the load balancer, the images this tool baked and their snapshots, the
security groups (the instances' first: its rules name the load balancer's), the key pair, and last the
local key and state files.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.naming import belongs, made_by_tool
from deploy.plans.actions import Action
from deploy.plans.leftovers import plan_leftovers
from deploy.plans.model import Balancer, Group, Image, OrphanSnapshot, Owned, PackerLeftover, Record

PROTECTED_ENV = "production"


def _bare(dns_name: object) -> str:
    return str(dns_name).lower().rstrip(".").removeprefix("dualstack.")


@dataclass(frozen=True)
class Described:
    """What destroy decides about, as read (deploy/steps/destroy.py's describe_for_destroy)."""

    app: str
    env: str
    host: str
    zone_id: str | None
    record: Record | None
    load_balancer: Balancer
    groups: tuple[Group, ...] = ()
    launch_templates: tuple[str, ...] = ()
    launch_configurations: tuple[str, ...] = ()
    images: tuple[Image, ...] = ()
    images_used_elsewhere: frozenset[str] = frozenset()
    images_given_by_hand: frozenset[str] = frozenset()  # --image-id, as the account records it
    security_groups: tuple[Owned, ...] = ()
    packer_leftovers: tuple[PackerLeftover, ...] = ()
    orphan_snapshots: tuple[OrphanSnapshot, ...] = ()
    key_pair: Owned | None = None
    files: tuple[str, ...] = ()  # local files to remove (the key pair's)


def _alias_of_balancer(alias: str | None, balancer: Balancer) -> bool:
    """Whether an ALIAS target is exactly this environment's load balancer: its DNS name, which names its region.

    No name pattern: when the load balancer does not exist in this region (a stray AWS_REGION, or deleted
    already), no record is known to be ours, and a live record elsewhere is never deleted.
    """
    if not alias or not balancer.dns_name:
        return False
    return _bare(alias) == _bare(balancer.dns_name)


def plan_destroy(described: Described) -> list[Action]:
    """Pure: what destroy deletes, in order, and what it keeps (and why), from DESCRIBED state."""
    app, env = described.app, described.env
    actions: list[Action] = []
    balancer = described.load_balancer

    record = described.record
    if record is not None:
        alias = record.alias
        if _alias_of_balancer(alias, balancer):
            actions.append(
                Action(
                    "delete-record",
                    described.host,
                    f"ALIAS A → {alias.rstrip('.')}",
                    (("zone_id", described.zone_id), ("record", record.raw)),
                )
            )
        else:
            actions.append(
                Action("keep", f"DNS record {described.host}", "it does not point at this environment's load balancer")
            )

    # Groups are detached first (the load balancer drains them) unless it is gone, or an ALB lost its target group.
    attached = balancer.exists and (balancer.kind != "application" or balancer.has_target_group)
    for group in described.groups:
        if belongs(group.tags, app, env):
            detail = f"{len(group.instance_ids)} instances, force-deleted"
            actions.append(Action("delete-group", group.name, detail, (("detach", attached),)))
        else:
            actions.append(Action("keep", f"group {group.name}", "its tags name another app or environment"))
    actions += [Action("delete-launch-template", name) for name in described.launch_templates]
    actions += [Action("delete-launch-configuration", name) for name in described.launch_configurations]

    if balancer.exists:
        actions.append(Action("delete-load-balancer", balancer.name, balancer.kind))

    for image in described.images:
        if not made_by_tool(image.tags, app, env):
            actions.append(Action("keep", f"image {image.id}", "not baked by this tool for this environment"))
        elif image.id in described.images_given_by_hand:
            actions.append(Action("keep", f"image {image.id}", "given by hand (--image-id): never deleted"))
        elif image.id in described.images_used_elsewhere:
            actions.append(Action("keep", f"image {image.id}", "another environment uses it"))
        else:
            detail = f"{image.tags.get('Role', 'image')}, {len(image.snapshots)} snapshot(s)"
            actions.append(Action("delete-image", image.id, detail, (("snapshots", image.snapshots),)))

    actions += plan_leftovers(list(described.packer_leftovers), list(described.orphan_snapshots))
    # The instances' group first: its rules name the load balancer's group.
    for security_group in sorted(described.security_groups, key=lambda g: not g.name.endswith("-web")):
        name, group_id = security_group.name, security_group.id
        if belongs(security_group.tags, app, env):
            actions.append(Action("delete-security-group", name, group_id, (("id", group_id),)))
        else:
            actions.append(Action("keep", f"security group {name}", "its tags name another app or environment"))

    pair = described.key_pair
    if pair is not None:
        if belongs(pair.tags, app, env):
            actions.append(Action("delete-key-pair", pair.name))
        else:
            actions.append(Action("keep", f"key pair {pair.name}", "its tags name another app or environment"))
    actions += [Action("delete-file", path) for path in described.files]
    return actions


def refusal(env_flag: str | None, env: str, yes: bool, dry_run: bool) -> str | None:
    """Pure: why destroy refuses to run, or None. Production needs --yes and --env production, both."""
    if dry_run or env != PROTECTED_ENV:
        return None
    if not yes or env_flag != PROTECTED_ENV:
        return (
            "Refusing to destroy production: pass both --env production and --yes"
            " (the environment was not named, or not confirmed)."
        )
    return None
