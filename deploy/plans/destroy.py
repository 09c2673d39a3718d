"""What `inv destroy` deletes, in an order AWS allows, and what it keeps (and why), from described state.

The order makes each deletion possible on AWS: the DNS record first (the site stops resolving to the
load balancer), then the groups (detached, force-deleted with their instances, awaited), their launch
templates and configurations, the load balancer, the images this tool baked and their snapshots, the
security groups (the instances' first: its rules name the load balancer's), the key pair, and last the
local key and state files.
"""

from __future__ import annotations

from typing import Any

from deploy.naming import belongs, made_by_tool
from deploy.plans.actions import Action
from deploy.plans.leftovers import plan_leftovers
from deploy.plans.model import Record

PROTECTED_ENV = "production"


def _bare(dns_name: object) -> str:
    return str(dns_name).lower().rstrip(".").removeprefix("dualstack.")


def _alias_of_balancer(alias: str | None, balancer: dict[str, Any]) -> bool:
    """Whether an ALIAS target is exactly this environment's load balancer: its DNS name, which names its region.

    No name pattern: when the load balancer does not exist in this region (a stray AWS_REGION, or deleted
    already), no record is known to be ours, and a live record elsewhere is never deleted.
    """
    if not alias or not balancer.get("dns_name"):
        return False
    return _bare(alias) == _bare(balancer["dns_name"])


def plan_destroy(described: dict[str, Any]) -> list[Action]:
    """Pure: what destroy deletes, in order, and what it keeps (and why), from DESCRIBED state."""
    app, env = described["app"], described["env"]
    actions: list[Action] = []
    balancer = described["load_balancer"]

    record: Record | None = described.get("record")
    if record is not None:
        alias = record.alias
        if _alias_of_balancer(alias, balancer):
            actions.append(
                Action(
                    "delete-record",
                    described["host"],
                    f"ALIAS A → {alias.rstrip('.')}",
                    (("zone_id", described["zone_id"]), ("record", record.raw)),
                )
            )
        else:
            actions.append(
                Action(
                    "keep", f"DNS record {described['host']}", "it does not point at this environment's load balancer"
                )
            )

    # Groups are detached first (the load balancer drains them) unless it is gone, or an ALB lost its target group.
    attached = bool(balancer["exists"]) and (
        balancer.get("kind") != "application" or bool(balancer.get("target_group"))
    )
    for group in described["groups"]:
        if belongs(group["tags"], app, env):
            detail = f"{len(group['instances'])} instances, force-deleted"
            actions.append(Action("delete-group", group["name"], detail, (("detach", attached),)))
        else:
            actions.append(Action("keep", f"group {group['name']}", "its tags name another app or environment"))
    actions += [Action("delete-launch-template", name) for name in described["launch_templates"]]
    actions += [Action("delete-launch-configuration", name) for name in described["launch_configurations"]]

    if balancer["exists"]:
        actions.append(Action("delete-load-balancer", balancer["name"], balancer.get("kind", "")))

    elsewhere = set(described.get("images_used_elsewhere", []))
    by_hand = set(described.get("images_given_by_hand", []))
    for image in described["images"]:
        tags = image["tags"]
        if not made_by_tool(tags, app, env):
            actions.append(Action("keep", f"image {image['id']}", "not baked by this tool for this environment"))
        elif image["id"] in by_hand:
            actions.append(Action("keep", f"image {image['id']}", "given by hand (--image-id): never deleted"))
        elif image["id"] in elsewhere:
            actions.append(Action("keep", f"image {image['id']}", "another environment uses it"))
        else:
            snapshots = tuple(image["snapshots"])
            detail = f"{tags.get('Role', 'image')}, {len(snapshots)} snapshot(s)"
            actions.append(Action("delete-image", image["id"], detail, (("snapshots", snapshots),)))

    actions += plan_leftovers(described.get("packer_leftovers", []), described.get("orphan_snapshots", []))
    # The instances' group first: its rules name the load balancer's group.
    for group in sorted(described["security_groups"], key=lambda g: not g["name"].endswith("-web")):
        if belongs(group["tags"], app, env):
            actions.append(Action("delete-security-group", group["name"], group["id"], (("id", group["id"]),)))
        else:
            actions.append(
                Action("keep", f"security group {group['name']}", "its tags name another app or environment")
            )

    pair = described.get("key_pair")
    if pair is not None:
        if belongs(pair["tags"], app, env):
            actions.append(Action("delete-key-pair", pair["name"]))
        else:
            actions.append(Action("keep", f"key pair {pair['name']}", "its tags name another app or environment"))
    actions += [Action("delete-file", path) for path in described["files"]]
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
