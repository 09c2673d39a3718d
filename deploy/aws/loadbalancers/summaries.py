"""What `inv status`, the dry runs and destroy show of a load balancer, from what it has read (its memo)."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from deploy.aws.loadbalancers.base import target_group_check_summary
from deploy.aws.loadbalancers.listeners import listener_summary


class WithTargetGroup(Protocol):
    """What the summary reads of an application load balancer (deploy/aws/loadbalancers/application.py)."""

    kind: ClassVar[str]
    name: str

    @property
    def target_group_name(self) -> str: ...
    def describe(self) -> dict[str, Any] | None: ...
    def describe_target_group(self) -> dict[str, Any] | None: ...
    def target_group_attributes(self, arn: str) -> dict[str, str]: ...
    def target_states(self, instance_ids: list[str] | None = None) -> dict[str, str]: ...
    def listeners(self, load_balancer_arn: str) -> dict[int, dict[str, Any]]: ...
    def tags(self) -> dict[str, str]: ...


def application_summary(balancer: WithTargetGroup) -> dict[str, Any]:
    """For status, dry runs and destroy: kind, name, exists and target_group (None when absent; else name,
    arn, deregistration_delay_seconds, targets); when the load balancer exists also dns_name, state,
    health_check (of the target group), listeners ({port, protocol, action[, certificate, ssl_policy]}),
    security_groups, subnets, tags."""
    found = balancer.describe()
    group = balancer.describe_target_group()
    summary: dict[str, Any] = {
        "kind": balancer.kind,
        "name": balancer.name,
        "exists": found is not None,
        "target_group": None,
    }
    if group is not None:
        arn = str(group["TargetGroupArn"])
        attributes = balancer.target_group_attributes(arn)
        summary["target_group"] = {
            "name": balancer.target_group_name,
            "arn": arn,
            "deregistration_delay_seconds": int(attributes.get("deregistration_delay.timeout_seconds", 0)),
            "targets": balancer.target_states(),
        }
        summary["health_check"] = target_group_check_summary(group)
    if found is None:
        return summary
    summary.update(
        dns_name=found.get("DNSName"),
        state=(found.get("State") or {}).get("Code"),
        listeners=[
            listener_summary(port, listener, balancer.target_group_name)
            for port, listener in sorted(balancer.listeners(found["LoadBalancerArn"]).items())
        ],
        security_groups=found.get("SecurityGroups", []),
        subnets=sorted(zone["SubnetId"] for zone in found.get("AvailabilityZones", [])),
        tags=balancer.tags(),
    )
    return summary
