"""Which subnets a group, a load balancer and a bake use, from the subnets and instance-type offerings read."""

from __future__ import annotations

from deploy.plans.model import Subnet


def zones_of(subnets: list[Subnet]) -> list[str]:
    """The distinct availability zones of SUBNETS, sorted."""
    return sorted({subnet.zone for subnet in subnets})


def offered_subnets(subnets: list[Subnet], offered_zones: set[str]) -> list[str]:
    """The subnets (ids, in order) in a zone where INSTANCE_TYPE is offered: a group given a subnet of a zone
    without the type fails CreateAutoScalingGroup."""
    return [subnet.id for subnet in subnets if subnet.zone in offered_zones]


def network_refusal(
    subnets: list[Subnet],
    offered_zones: set[str],
    instance_type: str,
    kind: str,
    min_zones: int,
    where: str,
) -> str | None:
    """Why the environment's subnets cannot serve (a message saying what to set), or None.

    The load balancer of KIND needs subnets in MIN_ZONES zones; the instances need at least one subnet in
    a zone that offers INSTANCE_TYPE. WHERE: the file to fix.
    """
    refused = zone_refusal(subnets, kind, min_zones, where)
    if refused:
        return refused
    zones = zones_of(subnets)
    if not offered_subnets(subnets, offered_zones):
        return (
            f"INSTANCE_TYPE {instance_type} is not offered in any zone of the subnets ({', '.join(zones)}):"
            f" choose another INSTANCE_TYPE, or subnets in other zones (SUBNET_IDS), in {where}."
        )
    return None


def zone_refusal(subnets: list[Subnet], kind: str, min_zones: int, where: str) -> str | None:
    """Why the load balancer of KIND cannot use SUBNETS (they span fewer than MIN_ZONES zones), or None."""
    if len(zones_of(subnets)) >= min_zones:
        return None
    listed = ", ".join(f"{s.id} ({s.zone})" for s in subnets) or "none"
    return (
        f"An {kind} load balancer needs subnets in at least {min_zones} availability zones; the subnets are"
        f" {listed}. Add a subnet of another zone to SUBNET_IDS in {where}, or use LOAD_BALANCER=classic."
    )


def bake_subnet(subnets: list[Subnet], offered_zones: set[str]) -> tuple[str, bool]:
    """(the subnet a Packer build instance starts in, whether it needs a public IP of its own): the first subnet
    offering the instance type; a public IP unless the subnet gives one (MapPublicIpOnLaunch)."""
    [first, *_] = [subnet for subnet in subnets if subnet.zone in offered_zones]
    return first.id, not first.public_ip
