"""Which subnets a group, a load balancer and a bake use, from the subnets and instance-type offerings read."""

from __future__ import annotations

from collections import defaultdict

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
    lb_subnets: list[Subnet] | None = None,
    key: str = "SUBNET_IDS",
) -> str | None:
    """Why the environment's subnets cannot serve (a message saying what to set), or None.

    The load balancer of KIND needs LB_SUBNETS (default: SUBNETS, the instances') in MIN_ZONES zones, one subnet a
    zone; the instances need at least one subnet in a zone that offers INSTANCE_TYPE, and the load balancer a
    subnet in every zone of theirs (it sends no traffic into a zone it is not in). WHERE: the file to fix; KEY:
    the load balancer's subnets' setting.
    """
    balancer = subnets if lb_subnets is None else lb_subnets
    refused = zone_refusal(balancer, kind, min_zones, where, key)
    if refused:
        return refused
    zones = zones_of(subnets)
    offered = offered_subnets(subnets, offered_zones)
    if not offered:
        return (
            f"INSTANCE_TYPE {instance_type} is not offered in any zone of the subnets ({', '.join(zones)}):"
            f" choose another INSTANCE_TYPE, or subnets in other zones (SUBNET_IDS), in {where}."
        )
    uncovered = sorted({s.zone for s in subnets if s.id in offered} - set(zones_of(balancer)))
    if uncovered:
        return (
            f"The instances' subnets (SUBNET_IDS) reach zones {', '.join(uncovered)}, where the load balancer has no"
            f" subnet ({key}: {', '.join(zones_of(balancer))}): it would send them no traffic. Add a subnet of"
            f" those zones to {key}, or leave them out of SUBNET_IDS, in {where}."
        )
    return None


def zone_refusal(subnets: list[Subnet], kind: str, min_zones: int, where: str, key: str = "SUBNET_IDS") -> str | None:
    """Why the load balancer of KIND cannot use SUBNETS, or None: AWS takes at most one subnet a zone (two of
    one zone fail CreateLoadBalancer), and an application one needs MIN_ZONES zones."""
    by_zone: dict[str, list[str]] = defaultdict(list)
    for subnet in subnets:
        by_zone[subnet.zone].append(subnet.id)
    shared = {zone: ids for zone, ids in sorted(by_zone.items()) if len(ids) > 1}
    if shared:
        listed = "; ".join(f"{', '.join(ids)} are all in {zone}" for zone, ids in shared.items())
        return (
            f"A load balancer takes at most one subnet per availability zone: {listed}. Keep one subnet of each"
            f" zone in {key} in {where}."
        )
    if len(by_zone) >= min_zones:
        return None
    listed = ", ".join(f"{s.id} ({s.zone})" for s in subnets) or "none"
    return (
        f"An {kind} load balancer needs subnets in at least {min_zones} availability zones; the subnets are"
        f" {listed}. Add a subnet of another zone to {key} in {where}, or use LOAD_BALANCER=classic."
    )


def bake_subnet(
    subnets: list[Subnet],
    offered_zones: set[str],
    lb_subnets: list[Subnet] | None = None,
    given: Subnet | None = None,
) -> tuple[str, bool]:
    """(the subnet a Packer build instance starts in, whether it needs a public IP of its own): GIVEN
    (BAKE_SUBNET_ID); else, when the instances' SUBNETS are not the load balancer's (private ones), the first
    load-balancer subnet offering the instance type (the bake machine reaches it over ssh); else the first of
    SUBNETS offering it. A public IP unless the subnet gives one (MapPublicIpOnLaunch)."""
    private = lb_subnets is not None and [s.id for s in lb_subnets] != [s.id for s in subnets]
    candidates = ([given] if given else []) + (
        [s for s in lb_subnets or [] if s.zone in offered_zones] if private else []
    )
    candidates += [subnet for subnet in subnets if subnet.zone in offered_zones]
    first = candidates[0]
    return first.id, not first.public_ip
