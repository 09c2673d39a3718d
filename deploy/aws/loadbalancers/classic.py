"""The classic load balancer `elb-NAME` of the original scripts (AWS's previous generation): groups attach by
name, and it reports each instance InService or OutOfService."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from deploy import facts
from deploy.aws.clients import or_none
from deploy.aws.converge import Changes
from deploy.aws.loadbalancers.base import (
    DRAINING_TIMEOUT_S,
    HealthCheck,
    LoadBalancerBase,
    Until,
    classic_check_summary,
    described_tags,
    draining_differs,
    health_check_differs,
)
from deploy.errors import DeployError
from deploy.naming import Names, tag_list
from deploy.plans.model import IN_SERVICE

LB_NOT_FOUND = ("LoadBalancerNotFound", "AccessPointNotFound")
ATTRIBUTES = "classic-attributes"  # its LoadBalancerAttributes, in its memo (`known`)


class ClassicLoadBalancer(LoadBalancerBase):
    """A classic load balancer `elb-NAME`: HTTP 80 → 80, connection draining, HTTP health check."""

    kind = "classic"

    @staticmethod
    def name_for(names: Names) -> str:
        return names.load_balancer

    def read_description(self) -> dict[str, Any] | None:
        found = or_none(lambda: self.aws.elb.describe_load_balancers(LoadBalancerNames=[self.name]))
        return found["LoadBalancerDescriptions"][0] if found else None

    def attributes(self) -> dict[str, Any]:
        """Its attributes (connection draining, cross-zone), read once per run; {} while it does not exist."""
        if self.describe() is None:
            return {}
        return self.known.once(
            ATTRIBUTES,
            lambda: self.aws.elb.describe_load_balancer_attributes(LoadBalancerName=self.name)[
                "LoadBalancerAttributes"
            ],
        )

    def _changed(self, call: Callable[[], Any]) -> Callable[[], Any]:
        """CALL changes the description: forgotten once it is made (read again only when needed)."""
        return lambda: self.forget_after(call, facts.LOAD_BALANCER)

    def preflight(self, vpc_id: str) -> None:
        self.guard_kind()

    def serve(self, group_name: str, leaving: Sequence[str] = ()) -> None:
        return None  # every attached group serves

    def stand_by(self, group_name: str, raw_group: dict[str, Any]) -> None:
        if not raw_group or self.attached_to(raw_group):
            self.detach_group(group_name, attached=True)

    def restore(self, raw_group: dict[str, Any], raw_from: dict[str, Any], until: Until) -> None:
        name = raw_group["AutoScalingGroupName"]
        if not self.attached_to(raw_group):
            self.aws.autoscaling.attach_load_balancers(AutoScalingGroupName=name, LoadBalancerNames=[self.name])
        instances = [i["InstanceId"] for i in raw_group.get("Instances", [])]

        def in_service() -> tuple[bool, str]:
            states = self.serving_states(instances)
            ready = sum(state == IN_SERVICE for state in states.values())
            return ready == len(instances), f"{name}: {ready}/{len(instances)} in service at {self.name}"

        done, status = until(in_service)
        if not done:
            still = raw_from.get("AutoScalingGroupName", "the group serving until now")
            raise DeployError(f"{status}: stopped; {still} still serves. Run the command again to finish.")
        if raw_from:
            self.detach_group(raw_from["AutoScalingGroupName"], attached=True)

    def forwarded_target_groups(self) -> set[str]:
        return set()

    def take_back(self, serving: str | None, group_name: str) -> bool:
        return False  # no weights: detaching the group drains it

    def release(self, serving: str | None, groups: list[str]) -> list[str]:
        return []  # groups attach to the load balancer itself

    def group_weight(self, raw_group: dict[str, Any]) -> int | None:
        return None

    def serving_ports(self) -> set[int]:
        return set()

    def instance_port(self) -> tuple[int, str] | None:
        found = self.describe() or {}
        ports = [d["Listener"].get("InstancePort") for d in found.get("ListenerDescriptions", [])]
        return next(((int(port), self.name) for port in ports if port), None)

    def ingress_ports(self) -> list[int]:
        return [80]

    def ensure(
        self,
        subnet_ids: list[str],
        security_group_id: str,
        health: HealthCheck,
        dry_run: bool = False,
        *,
        vpc_id: str,
    ) -> list[str]:
        """Create or converge the load balancer; return what changed (empty when nothing did)."""
        elb = self.aws.elb
        changes = Changes(dry_run)
        current = self.describe()
        if current is None:
            changes.make(
                f"created load balancer {self.name}",
                self._changed(
                    lambda: elb.create_load_balancer(
                        LoadBalancerName=self.name,
                        Listeners=[self._listener(health.port)],
                        Subnets=subnet_ids,
                        SecurityGroups=[security_group_id],
                        Tags=tag_list(self.names.tags()),
                    )
                ),
            )
            # Not read back: a new one has AWS's default health check and no draining, set below. Its description
            # (the hosted zone id of its DNS name, which CreateLoadBalancer does not return) is read when needed.
            current = {}
        else:
            missing_subnets = sorted(set(subnet_ids) - set(current.get("Subnets", [])))
            if missing_subnets:
                changes.make(
                    f"attached {self.name} to subnets {', '.join(missing_subnets)}",
                    self._changed(
                        lambda: elb.attach_load_balancer_to_subnets(LoadBalancerName=self.name, Subnets=missing_subnets)
                    ),
                )
            if security_group_id not in current.get("SecurityGroups", []):
                changes.make(
                    f"applied security group {security_group_id} to {self.name}",
                    self._changed(
                        lambda: elb.apply_security_groups_to_load_balancer(
                            LoadBalancerName=self.name, SecurityGroups=[security_group_id]
                        )
                    ),
                )
            ports = {
                d["Listener"]["LoadBalancerPort"]: d["Listener"].get("InstancePort")
                for d in current.get("ListenerDescriptions", [])
            }
            if ports.get(80) != health.port:
                # APP_PORT changed: a listener cannot be modified, only replaced (a moment without port 80).
                def replace_listener() -> None:
                    if 80 in ports:
                        elb.delete_load_balancer_listeners(LoadBalancerName=self.name, LoadBalancerPorts=[80])
                    elb.create_load_balancer_listeners(
                        LoadBalancerName=self.name, Listeners=[self._listener(health.port)]
                    )

                changes.make(
                    f"set the listener of {self.name} to HTTP 80 → instances HTTP:{health.port}",
                    self._changed(replace_listener),
                )
        desired_check = health.as_classic()
        if health_check_differs(current.get("HealthCheck"), desired_check):
            changes.make(
                f"set the health check of {self.name} to {desired_check['Target']}",
                self._changed(
                    lambda: elb.configure_health_check(LoadBalancerName=self.name, HealthCheck=desired_check)
                ),
            )
        attributes = self.attributes() if current else {}
        if draining_differs(attributes) or not attributes.get("CrossZoneLoadBalancing", {}).get("Enabled"):
            wanted = {
                "ConnectionDraining": {"Enabled": True, "Timeout": DRAINING_TIMEOUT_S},
                "CrossZoneLoadBalancing": {"Enabled": True},
            }

            def modify_attributes() -> None:
                elb.modify_load_balancer_attributes(LoadBalancerName=self.name, LoadBalancerAttributes=wanted)
                self.known.put(ATTRIBUTES, {**attributes, **wanted})  # what AWS has now: no read after the write

            changes.make(f"enabled connection draining ({DRAINING_TIMEOUT_S}s) on {self.name}", modify_attributes)
        return list(changes)

    @staticmethod
    def _listener(instance_port: int) -> dict[str, Any]:
        return {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": instance_port}

    def dns_target(self) -> tuple[str, str]:
        found = self.require()
        return found["DNSName"], found["CanonicalHostedZoneNameID"]

    def group_attachment(self, group_name: str) -> dict[str, Any]:
        return {"LoadBalancerNames": [self.name]}

    def serving_states(self, instance_ids: list[str] | None = None, group_name: str | None = None) -> dict[str, str]:
        """State at the load balancer (InService, OutOfService, ...) of the given or all registered instances."""
        params: dict[str, Any] = {"LoadBalancerName": self.name}
        if instance_ids is not None:
            if not instance_ids:
                return {}
            params["Instances"] = [{"InstanceId": i} for i in instance_ids]
        found = or_none(lambda: self.aws.elb.describe_instance_health(**params), "InvalidInstance", *LB_NOT_FOUND)
        if found is None:
            self.forget()  # read again: the memo may predate its deletion
            self.require()  # the load balancer is gone: says why (setup not run, or the kind was switched)
            return {i: "Unknown" for i in instance_ids or []}  # an instance that no longer exists
        return {state["InstanceId"]: state["State"] for state in found["InstanceStates"]}

    def attached_to(self, raw_group: dict[str, Any]) -> bool:
        return self.name in raw_group.get("LoadBalancerNames", [])

    def detach_group(self, group_name: str, attached: bool = False) -> None:
        """Detach the group: AWS deregisters its instances, which drain (connection draining, 300 s at most)."""
        self.aws.autoscaling.detach_load_balancers(AutoScalingGroupName=group_name, LoadBalancerNames=[self.name])

    def group_detached(self, group_name: str, instance_ids: list[str] | None = None) -> bool:
        found = self.aws.autoscaling.describe_load_balancers(AutoScalingGroupName=group_name)["LoadBalancers"]
        return not any(lb["LoadBalancerName"] == self.name and lb.get("State") != "Removed" for lb in found)

    def tags(self) -> dict[str, str]:
        return described_tags(self.aws.elb.describe_tags(LoadBalancerNames=[self.name])["TagDescriptions"])

    def describe_summary(self) -> dict[str, Any]:
        """For status, dry runs and destroy: kind, name, exists; when it exists also dns_name, health_check,
        listeners ({port, protocol, action}), security_groups, subnets, tags, draining_seconds, instances."""
        found = self.describe()
        summary: dict[str, Any] = {"kind": self.kind, "name": self.name, "exists": found is not None}
        if found is None:
            return summary
        attributes = self.attributes()
        draining = attributes.get("ConnectionDraining", {})
        summary.update(
            dns_name=found.get("DNSName"),
            health_check=classic_check_summary(found.get("HealthCheck", {})),
            listeners=[
                {
                    "port": d["Listener"]["LoadBalancerPort"],
                    "protocol": d["Listener"]["Protocol"],
                    "action": f"instances {d['Listener']['InstanceProtocol']}:{d['Listener']['InstancePort']}",
                }
                for d in found.get("ListenerDescriptions", [])
            ],
            security_groups=found.get("SecurityGroups", []),
            subnets=sorted(found.get("Subnets", [])),
            tags=self.tags(),
            draining_seconds=draining.get("Timeout") if draining.get("Enabled") else 0,
            instances=self.serving_states(),
        )
        return summary

    def delete(self) -> list[str]:
        if self.describe() is None:
            return []
        self.forget()
        self.aws.elb.delete_load_balancer(LoadBalancerName=self.name)
        self.known.put(facts.LOAD_BALANCER, None)  # AWS deletes a classic load balancer at once
        return [f"deleted load balancer {self.name}"]

    def gone(self) -> bool:
        return self.describe() is None  # deleted at once: what this run did or read holds
