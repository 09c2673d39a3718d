"""An Application Load Balancer `alb-NAME` with one target group `tg-NAME`: groups attach to the target group,
whose targets report healthy, unhealthy, initial, draining or unused."""

from __future__ import annotations

from typing import Any

from deploy import facts
from deploy.aws.clients import collect, or_none
from deploy.aws.converge import Changes
from deploy.aws.loadbalancers.base import (
    DRAINING_TIMEOUT_S,
    HealthCheck,
    LoadBalancerBase,
    described_tags,
)
from deploy.aws.loadbalancers.certificates import check_certificate
from deploy.aws.loadbalancers.listeners import listener_matches, wanted_listeners
from deploy.aws.loadbalancers.summaries import application_summary
from deploy.errors import DeployError
from deploy.naming import Names, tag_list
from deploy.plans.model import IN_SERVICE

TARGET_GROUP_ATTRIBUTES = "target-group-attributes"  # in the load balancer's memo (`known`), as its keys
LISTENERS = "listeners"
DELAY = "deregistration_delay.timeout_seconds"  # the target group attribute of draining


class ApplicationLoadBalancer(LoadBalancerBase):
    """An Application Load Balancer `alb-NAME` and its target group `tg-NAME`.

    HTTP 80 forwards to the target group (or redirects to HTTPS 443 when CERTIFICATE_ARN is set);
    the target group checks HTTP HEALTH_CHECK_PATH on port 80 and drains deregistered targets 300 s.
    """

    kind = "application"
    min_zones = 2  # AWS refuses an Application Load Balancer whose subnets span fewer zones

    @staticmethod
    def name_for(names: Names) -> str:
        return names.application_load_balancer

    @property
    def target_group_name(self) -> str:
        return self.names.target_group

    @property
    def elbv2(self) -> Any:
        return self.aws.client("elbv2")

    @property
    def certificate_arn(self) -> str | None:
        return self.settings.certificate_arn or None

    # --- descriptions -------------------------------------------------------------------------

    def read_description(self) -> dict[str, Any] | None:
        found = or_none(lambda: self.elbv2.describe_load_balancers(Names=[self.name])["LoadBalancers"])
        return found[0] if found else None

    def describe_target_group(self) -> dict[str, Any] | None:
        """The target group's description (None: it does not exist), read once per run."""

        def read() -> dict[str, Any] | None:
            found = or_none(lambda: self.elbv2.describe_target_groups(Names=[self.target_group_name])["TargetGroups"])
            return found[0] if found else None

        return self.known.once(facts.TARGET_GROUP, read)

    def target_group_attributes(self, arn: str) -> dict[str, str]:
        """The target group's attributes (deregistration delay, ...), read once per run."""
        return self.known.once(
            TARGET_GROUP_ATTRIBUTES,
            lambda: {
                a["Key"]: a["Value"]
                for a in self.elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
            },
        )

    def listeners(self, load_balancer_arn: str) -> dict[int, dict[str, Any]]:
        """The load balancer's listeners by port, read once per run; its own writes keep them up to date."""

        def read() -> dict[int, dict[str, Any]]:
            found = collect(self.elbv2, "describe_listeners", "Listeners", LoadBalancerArn=load_balancer_arn)
            return {int(listener["Port"]): listener for listener in found}

        return dict(self.known.once(LISTENERS, read))

    def _remember_listener(self, answer: dict[str, Any]) -> None:
        """A listener as CreateListener or ModifyListener answered: the memo says so (no read after the write)."""
        [listener] = answer["Listeners"]
        self.amend(LISTENERS, {int(listener["Port"]): listener})

    def target_group_arn(self) -> str:
        found = self.describe_target_group()
        if found is None:
            self.refuse_kind_switch()
            raise DeployError(
                f"Target group {self.target_group_name} does not exist: run `inv setup --env {self.names.env}` first."
            )
        return str(found["TargetGroupArn"])

    # --- setup --------------------------------------------------------------------------------

    def preflight(self, vpc_id: str) -> None:
        self.guard_kind()
        group = self.describe_target_group()
        if group is not None and group.get("VpcId") != vpc_id:
            raise DeployError(
                f"Target group {self.target_group_name} is in VPC {group.get('VpcId')}, not in {vpc_id}: a target"
                " group cannot move. Set VPC_ID back, or destroy the environment and set it up again."
            )
        if self.certificate_arn:
            check_certificate(self.aws, self.settings, self.names.host, self.say)

    def ingress_ports(self) -> list[int]:
        return [80, 443] if self.certificate_arn else [80]

    def ensure(
        self,
        subnet_ids: list[str],
        security_group_id: str,
        health: HealthCheck,
        dry_run: bool = False,
        *,
        vpc_id: str,
    ) -> list[str]:
        """Create or converge the load balancer, its target group and listeners; return what changed."""
        changes = Changes(dry_run)
        current = self.describe()
        if current is None:
            created = changes.make(
                f"created load balancer {self.name} (application, internet-facing)",
                lambda: self.elbv2.create_load_balancer(
                    Name=self.name,
                    Subnets=subnet_ids,
                    SecurityGroups=[security_group_id],
                    Scheme="internet-facing",
                    Type="application",
                    IpAddressType="ipv4",
                    Tags=tag_list(self.names.tags()),
                ),
            )
            load_balancer_arn = None
            if created:
                # AWS answers with the description: remembered, not read back. A new one has no listener yet.
                described = created["LoadBalancers"][0]
                self.known.put(facts.LOAD_BALANCER, described)
                self.known.put(LISTENERS, {})
                load_balancer_arn = described["LoadBalancerArn"]
        else:
            load_balancer_arn = current["LoadBalancerArn"]
            subnets_now = {zone["SubnetId"] for zone in current.get("AvailabilityZones", [])}
            missing_subnets = sorted(set(subnet_ids) - subnets_now)
            if missing_subnets:
                subnets = sorted(subnets_now | set(subnet_ids))
                changes.make(
                    f"attached {self.name} to subnets {', '.join(missing_subnets)}",
                    lambda: self.amend(
                        facts.LOAD_BALANCER,
                        AvailabilityZones=self.elbv2.set_subnets(LoadBalancerArn=load_balancer_arn, Subnets=subnets)[
                            "AvailabilityZones"
                        ],
                    ),
                )
            if current.get("SecurityGroups") != [security_group_id]:
                changes.make(
                    f"applied security group {security_group_id} to {self.name}",
                    lambda: self.amend(
                        facts.LOAD_BALANCER,
                        SecurityGroups=self.elbv2.set_security_groups(
                            LoadBalancerArn=load_balancer_arn, SecurityGroups=[security_group_id]
                        )["SecurityGroupIds"],
                    ),
                )
        target_group_arn = self._ensure_target_group(changes, vpc_id, health)
        self._ensure_listeners(changes, load_balancer_arn, target_group_arn)
        return list(changes)

    def _ensure_target_group(self, changes: Changes, vpc_id: str, health: HealthCheck) -> str | None:
        desired = health.as_target_group()
        group = self.describe_target_group()
        if group is None:
            created = changes.make(
                f"created target group {self.target_group_name} (HTTP:{health.port}, health check HTTP {health.path}"
                " → 200)",
                lambda: self.elbv2.create_target_group(
                    Name=self.target_group_name,
                    Protocol="HTTP",
                    Port=health.port,
                    VpcId=vpc_id,
                    TargetType="instance",
                    Tags=tag_list(self.names.tags()),
                    **desired,
                ),
            )
            if created is None:  # dry run (a new target group drains 300 s: AWS's default, checked below)
                return None
            group = created["TargetGroups"][0]
            self.known.put(facts.TARGET_GROUP, group)  # AWS answers with the description: not read back
            # AWS's default deregistration delay is 300 s: a new target group needs no read of its attributes.
            self.known.put(TARGET_GROUP_ATTRIBUTES, {DELAY: str(DRAINING_TIMEOUT_S)})
        else:
            if (group.get("Protocol"), group.get("Port"), group.get("TargetType", "instance")) != (
                "HTTP",
                health.port,
                "instance",
            ):
                raise DeployError(
                    f"Target group {self.target_group_name} is {group.get('Protocol')}:{group.get('Port')}"
                    f" ({group.get('TargetType')} targets), not HTTP:{health.port} (APP_PORT) to instances, and"
                    " cannot be changed in place: destroy the environment and run setup again (or set APP_PORT back)."
                )
            if any(group.get(key) != value for key, value in desired.items()):
                changes.make(
                    f"set the health check of {self.target_group_name} to HTTP {health.path} every"
                    f" {health.interval}s, timeout {health.timeout}s, thresholds {health.healthy}/{health.unhealthy}",
                    lambda: self.known.put(  # AWS answers with the description as it is now
                        facts.TARGET_GROUP,
                        self.elbv2.modify_target_group(TargetGroupArn=group["TargetGroupArn"], **desired)[
                            "TargetGroups"
                        ][0],
                    ),
                )
        arn = str(group["TargetGroupArn"])
        if self.target_group_attributes(arn).get(DELAY) != str(DRAINING_TIMEOUT_S):

            def modify_attributes() -> None:
                delay = [{"Key": DELAY, "Value": str(DRAINING_TIMEOUT_S)}]
                answer = self.elbv2.modify_target_group_attributes(TargetGroupArn=arn, Attributes=delay)
                self.known.put(TARGET_GROUP_ATTRIBUTES, {a["Key"]: a["Value"] for a in answer["Attributes"]})

            changes.make(
                f"set the deregistration delay of {self.target_group_name} to {DRAINING_TIMEOUT_S}s", modify_attributes
            )
        return arn

    def _ensure_listeners(self, changes: Changes, load_balancer_arn: str | None, target_group_arn: str | None) -> None:
        """The listeners wanted_listeners says, then no HTTPS listener without a certificate.

        The order never sends traffic nowhere: 443 exists before 80 redirects to it, and 80 forwards
        again before 443 is removed. (ARNs are None in a dry run when their resource is still to be made.)
        """
        current = self.listeners(load_balancer_arn) if load_balancer_arn else {}
        forward_to = target_group_arn or f"(new {self.target_group_name})"
        for port, desired, what in wanted_listeners(forward_to, self.target_group_name, self.certificate_arn):
            self._converge_listener(changes, load_balancer_arn, current.get(port), desired, what)
        if not self.certificate_arn and 443 in current:
            changes.make(
                f"removed the HTTPS listener 443 of {self.name} (CERTIFICATE_ARN is empty)",
                lambda: self.forget_after(
                    self.elbv2.delete_listener, LISTENERS, ListenerArn=current[443]["ListenerArn"]
                ),
            )

    def _converge_listener(
        self,
        changes: Changes,
        load_balancer_arn: str | None,
        current: dict[str, Any] | None,
        desired: dict[str, Any],
        what: str,
    ) -> None:
        if current is None:
            changes.make(
                f"created {what} on {self.name}",
                lambda: self._remember_listener(
                    self.elbv2.create_listener(LoadBalancerArn=load_balancer_arn, **desired)
                ),
            )
        elif not listener_matches(current, desired):
            changes.make(
                f"set {what} on {self.name}",
                lambda: self._remember_listener(
                    self.elbv2.modify_listener(ListenerArn=current["ListenerArn"], **desired)
                ),
            )

    def require(self) -> dict[str, Any]:
        """What a deploy needs: the target group, and a load balancer in front of it. The target group answers
        both (its LoadBalancerArns), so a deploy reads only it; the load balancer's own description only when the
        target group has none (then: why, as `LoadBalancerBase.require` says)."""
        group = self.describe_target_group()
        arns = (group or {}).get("LoadBalancerArns") or []
        if group is None or not arns:
            found = super().require()
            self.target_group_arn()  # and its target group
            return found
        return self.known.get(facts.LOAD_BALANCER) or {"LoadBalancerName": self.name, "LoadBalancerArn": arns[0]}

    def dns_target(self) -> tuple[str, str]:
        found = super().require()  # the whole description: its DNS name and zone
        self.target_group_arn()
        return found["DNSName"], found["CanonicalHostedZoneId"]

    # --- deploy -------------------------------------------------------------------------------

    def group_attachment(self) -> dict[str, Any]:
        return {"TargetGroupARNs": [self.target_group_arn()]}

    def target_states(self, instance_ids: list[str] | None = None) -> dict[str, str]:
        """Target health state (healthy, unhealthy, initial, draining, unused, ...) of the given or all targets."""
        params: dict[str, Any] = {"TargetGroupArn": self.target_group_arn()}
        if instance_ids is not None:
            if not instance_ids:
                return {}
            params["Targets"] = [{"Id": i} for i in instance_ids]
        found = or_none(lambda: self.elbv2.describe_target_health(**params), "InvalidTarget")
        if found is None and instance_ids and len(instance_ids) > 1:
            # One of them no longer exists, and AWS answers for none: ask for each, so that an instance still
            # draining is never taken for a gone one.
            return {i: state for single in instance_ids for i, state in self.target_states([single]).items()}
        if found is None:  # the one instance no longer exists
            return {i: "unused" for i in instance_ids or []}
        return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in found["TargetHealthDescriptions"]}

    def tags(self) -> dict[str, str]:
        found = self.require()
        return described_tags(self.elbv2.describe_tags(ResourceArns=[found["LoadBalancerArn"]])["TagDescriptions"])

    def serving_states(self, instance_ids: list[str] | None = None) -> dict[str, str]:
        """As target_states, with `healthy` reported as IN_SERVICE (the steps count serving instances by it)."""
        return {i: IN_SERVICE if state == "healthy" else state for i, state in self.target_states(instance_ids).items()}

    def _attachment_states(self, group_name: str) -> list[str]:
        found = self.aws.autoscaling.describe_load_balancer_target_groups(AutoScalingGroupName=group_name)
        arn = self.target_group_arn()
        return [g.get("State", "") for g in found["LoadBalancerTargetGroups"] if g["LoadBalancerTargetGroupARN"] == arn]

    def _group_instances(self, group_name: str) -> list[str]:
        found = self.aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])
        return [i["InstanceId"] for g in found["AutoScalingGroups"] for i in g.get("Instances", [])]

    def attached_to(self, raw_group: dict[str, Any]) -> bool:
        return self.target_group_arn() in raw_group.get("TargetGroupARNs", [])

    def detach_group(self, group_name: str, attached: bool = False) -> None:
        """Detach the group from the target group: AWS deregisters its instances, which drain (300 s at most).
        ATTACHED: the caller knows it is attached (from the group's description): no need to ask."""
        if not attached and not any(
            state not in ("Removing", "Removed") for state in self._attachment_states(group_name)
        ):
            return  # not attached, or already being detached: nothing to do
        self.aws.autoscaling.detach_load_balancer_target_groups(
            AutoScalingGroupName=group_name, TargetGroupARNs=[self.target_group_arn()]
        )

    def group_detached(self, group_name: str, instance_ids: list[str] | None = None) -> bool:
        if instance_ids:
            # Its instances known: detached once none is still a target (draining ends with `unused`).
            return all(state == "unused" for state in self.target_states(instance_ids).values())
        if any(state != "Removed" for state in self._attachment_states(group_name)):
            return False
        instance_ids = self._group_instances(group_name)
        return all(state == "unused" for state in self.target_states(instance_ids).values())

    # --- status and destroy -------------------------------------------------------------------

    def describe_summary(self) -> dict[str, Any]:
        return application_summary(self)

    def delete(self) -> list[str]:
        """Listeners, then the target group (no longer referenced), then the load balancer (the caller waits until it
        is gone: `gone`)."""
        changes: list[str] = []
        found = self.describe()
        listeners = sorted(self.listeners(found["LoadBalancerArn"]).items()) if found is not None else []
        group = self.describe_target_group()
        self.forget()  # what follows deletes it all: nothing read so far holds any more, even if a deletion fails
        for port, listener in listeners:
            self.elbv2.delete_listener(ListenerArn=listener["ListenerArn"])
            changes.append(f"deleted listener {listener['Protocol']} {port} of {self.name}")
        if group is not None:
            self.elbv2.delete_target_group(TargetGroupArn=group["TargetGroupArn"])
            changes.append(f"deleted target group {self.target_group_name}")
        if found is not None:
            # The caller polls `gone` until AWS has deleted it, on the run's clock (deploy/execute.py).
            self.elbv2.delete_load_balancer(LoadBalancerArn=found["LoadBalancerArn"])
            changes.append(f"deleted load balancer {self.name}")
        return changes
