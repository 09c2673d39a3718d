"""What an interrupted bake or deregistration left behind, and how it goes: Packer's instance (terminated,
awaited), then its key pair and security group; snapshots whose image is gone. One decision for cleanup,
destroy, their dry runs and `inv status`."""

from __future__ import annotations

from deploy.plans.actions import Action
from deploy.plans.model import OrphanSnapshot, PackerLeftover


def plan_leftovers(packer: list[PackerLeftover], snapshots: list[OrphanSnapshot]) -> list[Action]:
    actions: list[Action] = []
    for instance in packer:
        if instance.state != "terminated":
            actions.append(Action("terminate-instance", instance.id, "Packer's, left by an interrupted bake"))
    for instance in packer:
        if instance.key_pair:
            actions.append(Action("delete-key-pair", instance.key_pair, "Packer's temporary key pair"))
        for group_id, name in instance.security_groups:
            actions.append(Action("delete-security-group", name, group_id, (("id", group_id),)))
    for snapshot in snapshots:
        actions.append(Action("delete-snapshot", snapshot.id, f"its image {snapshot.image} is gone"))
    return actions
