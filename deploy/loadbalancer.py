"""Everything specific to the kind of load balancer, behind one interface.

The classic load balancer of the original scripts lives here; an Application Load Balancer variant
will sit beside it with the same methods, so that the steps never branch on the kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from deploy.aws import Aws, error_code
from deploy.errors import DeployError
from deploy.naming import Names, tag_list

DRAINING_TIMEOUT_S = 300

# AWS's published hosted zone ids of Elastic Load Balancing per region, used for the Route 53 alias
# only when a load balancer description lacks CanonicalHostedZoneNameID (moto leaves it out).
ELB_HOSTED_ZONE_IDS = {
    "us-east-1": "Z35SXDOTRQ7X7K",
    "us-east-2": "Z3AADJGX6KTTL2",
    "us-west-1": "Z368ELLRRE2KJ0",
    "us-west-2": "Z1H1FL5HABSF5",
    "ca-central-1": "ZQSVJUPU6J1EY",
    "eu-central-1": "Z215JYRZR1TBD5",
    "eu-west-1": "Z32O12XQLNTSW2",
    "eu-west-2": "ZHURV8PSTC4K8",
    "eu-west-3": "Z3Q77PNBQS71R4",
    "eu-north-1": "Z23TAZ7KLNNCE0",
    "ap-south-1": "ZP97RAFLXTNZK",
    "ap-northeast-1": "Z14GRHDCWA56QT",
    "ap-northeast-2": "ZWKZPGTI48KDX",
    "ap-southeast-1": "Z1LMS91P8CMLE5",
    "ap-southeast-2": "Z1GM3OXH4ZPM65",
    "sa-east-1": "Z2P70J7HTTTPLU",
}


@dataclass(frozen=True)
class HealthCheck:
    """The original scripts' check: HTTP on port 80, every 30 s, 4 s timeout, 2 failures / 2 successes."""

    path: str
    interval: int = 30
    timeout: int = 4
    unhealthy: int = 2
    healthy: int = 2

    def as_classic(self) -> dict[str, Any]:
        return {
            "Target": f"HTTP:80{self.path}",
            "Interval": self.interval,
            "Timeout": self.timeout,
            "UnhealthyThreshold": self.unhealthy,
            "HealthyThreshold": self.healthy,
        }


def health_check_differs(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    return current is None or any(current.get(key) != value for key, value in desired.items())


def draining_differs(attributes: dict[str, Any]) -> bool:
    draining = attributes.get("ConnectionDraining", {})
    return not draining.get("Enabled") or draining.get("Timeout") != DRAINING_TIMEOUT_S


class LoadBalancer(Protocol):
    """What the steps need of a load balancer, whatever its kind."""

    kind: str
    name: str

    def ensure(self, subnet_ids: list[str], security_group_id: str, health: HealthCheck) -> list[str]: ...
    def exists(self) -> bool: ...
    def dns_target(self) -> tuple[str, str]: ...
    def group_attachment(self) -> dict[str, Any]: ...
    def serving_states(self, instance_ids: list[str] | None = None) -> dict[str, str]: ...
    def detach_group(self, group_name: str) -> None: ...
    def group_detached(self, group_name: str) -> bool: ...
    def register(self, instance_ids: list[str]) -> None: ...


class ClassicLoadBalancer:
    """A classic load balancer `elb-NAME`: HTTP 80 → 80, connection draining, HTTP health check."""

    kind = "classic"

    def __init__(self, aws: Aws, names: Names) -> None:
        self.aws = aws
        self.names = names
        self.name = names.load_balancer

    def describe(self) -> dict[str, Any] | None:
        try:
            found = self.aws.elb.describe_load_balancers(LoadBalancerNames=[self.name])
        except ClientError as error:
            if error_code(error) in ("LoadBalancerNotFound", "AccessPointNotFound"):
                return None
            raise
        return found["LoadBalancerDescriptions"][0]

    def exists(self) -> bool:
        return self.describe() is not None

    def ensure(self, subnet_ids: list[str], security_group_id: str, health: HealthCheck) -> list[str]:
        """Create or converge the load balancer; return what changed (empty when nothing did)."""
        elb = self.aws.elb
        changes: list[str] = []
        current = self.describe()
        if current is None:
            elb.create_load_balancer(
                LoadBalancerName=self.name,
                Listeners=[
                    {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}
                ],
                Subnets=subnet_ids,
                SecurityGroups=[security_group_id],
                Tags=tag_list(self.names.tags()),
            )
            changes.append(f"created load balancer {self.name}")
            current = self.describe() or {}
        else:
            missing_subnets = sorted(set(subnet_ids) - set(current.get("Subnets", [])))
            if missing_subnets:
                elb.attach_load_balancer_to_subnets(LoadBalancerName=self.name, Subnets=missing_subnets)
                changes.append(f"attached {self.name} to subnets {', '.join(missing_subnets)}")
            if security_group_id not in current.get("SecurityGroups", []):
                elb.apply_security_groups_to_load_balancer(
                    LoadBalancerName=self.name, SecurityGroups=[security_group_id]
                )
                changes.append(f"applied security group {security_group_id} to {self.name}")
        desired_check = health.as_classic()
        if health_check_differs(current.get("HealthCheck"), desired_check):
            elb.configure_health_check(LoadBalancerName=self.name, HealthCheck=desired_check)
            changes.append(f"set the health check of {self.name} to {desired_check['Target']}")
        attributes = elb.describe_load_balancer_attributes(LoadBalancerName=self.name)["LoadBalancerAttributes"]
        if draining_differs(attributes) or not attributes.get("CrossZoneLoadBalancing", {}).get("Enabled"):
            elb.modify_load_balancer_attributes(
                LoadBalancerName=self.name,
                LoadBalancerAttributes={
                    "ConnectionDraining": {"Enabled": True, "Timeout": DRAINING_TIMEOUT_S},
                    "CrossZoneLoadBalancing": {"Enabled": True},
                },
            )
            changes.append(f"enabled connection draining ({DRAINING_TIMEOUT_S}s) on {self.name}")
        return changes

    def require(self) -> dict[str, Any]:
        found = self.describe()
        if found is None:
            raise DeployError(
                f"Load balancer {self.name} does not exist: run `inv setup --env {self.names.env}` first."
            )
        return found

    def dns_target(self) -> tuple[str, str]:
        found = self.require()
        zone_id = found.get("CanonicalHostedZoneNameID")
        if not zone_id:
            # moto leaves CanonicalHostedZoneNameID out; AWS always has it.
            zone_id = ELB_HOSTED_ZONE_IDS.get(self.aws.config.region)
            if zone_id is None:
                raise DeployError(f"No known load balancer hosted zone id for region {self.aws.config.region}.")
        return found["DNSName"], zone_id

    def group_attachment(self) -> dict[str, Any]:
        return {"LoadBalancerNames": [self.name]}

    def serving_states(self, instance_ids: list[str] | None = None) -> dict[str, str]:
        """State at the load balancer (InService, OutOfService, ...) of the given or all registered instances."""
        params: dict[str, Any] = {"LoadBalancerName": self.name}
        if instance_ids is not None:
            if not instance_ids:
                return {}
            params["Instances"] = [{"InstanceId": i} for i in instance_ids]
        try:
            states = self.aws.elb.describe_instance_health(**params)["InstanceStates"]
        except ClientError as error:
            if error_code(error) == "InvalidInstance":
                return {i: "Unknown" for i in instance_ids or []}
            raise
        return {state["InstanceId"]: state["State"] for state in states}

    def detach_group(self, group_name: str) -> None:
        self.aws.autoscaling.detach_load_balancers(AutoScalingGroupName=group_name, LoadBalancerNames=[self.name])

    def group_detached(self, group_name: str) -> bool:
        found = self.aws.autoscaling.describe_load_balancers(AutoScalingGroupName=group_name)["LoadBalancers"]
        return not any(lb["LoadBalancerName"] == self.name and lb.get("State") != "Removed" for lb in found)

    def register(self, instance_ids: list[str]) -> None:
        if instance_ids:
            self.aws.elb.register_instances_with_load_balancer(
                LoadBalancerName=self.name, Instances=[{"InstanceId": i} for i in instance_ids]
            )


def load_balancer_for(aws: Aws, names: Names) -> LoadBalancer:
    return ClassicLoadBalancer(aws, names)
