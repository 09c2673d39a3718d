"""The environment's network as setup, launch-asg and the bakes need it, checked before anything is created:
the VPC (VPC_ID or the default one), its subnets, and the zones where INSTANCE_TYPE is offered.

Each is read once per run (deploy/facts.py), so `inv setup deploy` reads the subnets once for all its steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy import facts
from deploy.aws.instances import zones_offering
from deploy.aws.network import read_subnets
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.model import Subnet
from deploy.plans.network import bake_subnet, network_refusal, offered_subnets, zone_refusal


@dataclass(frozen=True)
class Subnets:
    """The VPC and subnets of the environment: all a load balancer needs."""

    vpc_id: str
    subnets: list[Subnet]

    @property
    def subnet_ids(self) -> list[str]:
        """Every subnet: the load balancer's."""
        return [subnet.id for subnet in self.subnets]


@dataclass(frozen=True)
class Network(Subnets):
    """The subnets and the zones offering INSTANCE_TYPE: what a group and a bake need."""

    offered_zones: set[str]

    @property
    def group_subnet_ids(self) -> list[str]:
        """The subnets of a zone offering INSTANCE_TYPE: a group's."""
        return offered_subnets(self.subnets, self.offered_zones)

    def bake_subnet(self) -> tuple[str, bool]:
        return bake_subnet(self.subnets, self.offered_zones)


def checked_subnets(environment: Environment) -> Subnets:
    """Read and check the subnets for the load balancer (setup, which launches no instance); DeployError saying
    what to set when it could not use them (no default VPC, subnets of another VPC, too few zones)."""
    vpc_id, raw = read_subnets(environment)
    subnets = [Subnet.from_aws(subnet) for subnet in raw]
    balancer = environment.load_balancer
    refused = zone_refusal(subnets, balancer.kind, balancer.min_zones, environment.config.source_of("SUBNET_IDS"))
    if refused:
        raise DeployError(refused)
    return Subnets(vpc_id, subnets)


def checked_network(environment: Environment) -> Network:
    """Read and check the network for instances (launch-asg, the bakes); DeployError saying what to set when the
    load balancer or the instances could not use it (no default VPC, too few zones, the instance type offered in
    none of them)."""
    vpc_id, raw = read_subnets(environment)
    subnets = [Subnet.from_aws(subnet) for subnet in raw]
    offered = environment.facts.once(facts.OFFERED_ZONES, lambda: zones_offering(environment))
    config = environment.config
    refused = network_refusal(
        subnets,
        offered,
        config.instance_type,
        environment.load_balancer.kind,
        environment.load_balancer.min_zones,
        config.source_of("SUBNET_IDS"),
    )
    if refused:
        raise DeployError(refused)
    return Network(vpc_id, subnets, offered)
