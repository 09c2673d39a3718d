"""The environment's network as setup, launch-asg and the bakes need it, checked before anything is created:
the VPC (VPC_ID or the default one), its subnets, and the zones where INSTANCE_TYPE is offered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploy.aws.instances import zones_offering
from deploy.aws.network import describe_subnets, resolve_network
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.network import bake_subnet, network_refusal, offered_subnets


@dataclass(frozen=True)
class Network:
    vpc_id: str
    subnets: list[dict[str, Any]]
    offered_zones: set[str]

    @property
    def subnet_ids(self) -> list[str]:
        """Every subnet: the load balancer's."""
        return [subnet["SubnetId"] for subnet in self.subnets]

    @property
    def group_subnet_ids(self) -> list[str]:
        """The subnets of a zone offering INSTANCE_TYPE: a group's."""
        return offered_subnets(self.subnets, self.offered_zones)

    def bake_subnet(self) -> tuple[str, bool]:
        return bake_subnet(self.subnets, self.offered_zones)


def checked_network(environment: Environment) -> Network:
    """Read and check the network; DeployError saying what to set when the load balancer or the instances
    could not use it (no default VPC, too few zones, the instance type offered in none of them)."""
    vpc_id, subnet_ids = resolve_network(environment)
    subnets = describe_subnets(environment, subnet_ids)
    offered = zones_offering(environment)
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
