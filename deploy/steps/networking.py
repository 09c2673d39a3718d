"""The environment's network as setup, launch-asg and the bakes need it, checked before anything is created:
the VPC (VPC_ID or the default one), the load balancer's subnets (LB_SUBNET_IDS), the instances' (SUBNET_IDS,
which may be private), where a bake starts (BAKE_SUBNET_ID), and the zones where INSTANCE_TYPE is offered.

Each is read once per run (deploy/facts.py), so `inv setup deploy` reads the subnets once for all its steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy import facts
from deploy.aws.instances import zones_offering
from deploy.aws.network import read_network
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.model import Subnet
from deploy.plans.network import bake_subnet, network_refusal, offered_subnets, zone_refusal


@dataclass(frozen=True)
class Subnets:
    """The VPC and the load balancer's subnets: all a load balancer needs."""

    vpc_id: str
    subnets: list[Subnet]

    @property
    def subnet_ids(self) -> list[str]:
        """The load balancer's subnets."""
        return [subnet.id for subnet in self.subnets]


@dataclass(frozen=True)
class Network(Subnets):
    """Besides the load balancer's: the instances' subnets, the bake's and the zones offering INSTANCE_TYPE: what a
    group and a bake need."""

    offered_zones: set[str]
    instance_subnets: list[Subnet]
    given_bake_subnet: Subnet | None = None

    @property
    def group_subnet_ids(self) -> list[str]:
        """The instances' subnets of a zone offering INSTANCE_TYPE: a group's."""
        return offered_subnets(self.instance_subnets, self.offered_zones)

    @property
    def instance_subnet_ids(self) -> list[str]:
        return [subnet.id for subnet in self.instance_subnets]

    def bake_subnet(self) -> tuple[str, bool]:
        return bake_subnet(self.instance_subnets, self.offered_zones, self.subnets, self.given_bake_subnet)


def _balancer_key(environment: Environment) -> str:
    """The setting that names the load balancer's subnets, for messages."""
    return "LB_SUBNET_IDS" if environment.config.lb_subnet_ids else "SUBNET_IDS"


def checked_subnets(environment: Environment) -> Subnets:
    """Read and check the load balancer's subnets (setup, which launches no instance); DeployError saying what to
    set when it could not use them (no default VPC, subnets of another VPC, too few zones, two in one zone)."""
    found = read_network(environment)
    balancer = environment.load_balancer
    key = _balancer_key(environment)
    refused = zone_refusal(found.balancer, balancer.kind, balancer.min_zones, environment.config.source_of(key), key)
    if refused:
        raise DeployError(refused)
    return Subnets(found.vpc_id, found.balancer)


def checked_network(environment: Environment) -> Network:
    """Read and check the network for instances (launch-asg, the bakes); DeployError saying what to set when the
    load balancer or the instances could not use it (no default VPC, too few zones, the instance type offered in
    none of them, instances in a zone the load balancer is not in)."""
    found = read_network(environment)
    offered = environment.facts.once(facts.OFFERED_ZONES, lambda: zones_offering(environment))
    config = environment.config
    key = _balancer_key(environment)
    refused = network_refusal(
        found.instances,
        offered,
        config.instance_type,
        environment.load_balancer.kind,
        environment.load_balancer.min_zones,
        config.source_of(key),
        found.balancer,
        key,
    )
    if refused:
        raise DeployError(refused)
    return Network(found.vpc_id, found.balancer, offered, found.instances, found.bake)
