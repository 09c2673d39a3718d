"""Everything specific to the kind of load balancer, behind one interface (`LoadBalancer`).

Two kinds, chosen per environment by LOAD_BALANCER:

- `classic`: the original scripts' classic load balancer `elb-NAME` (AWS's previous generation);
  groups attach by name and the load balancer reports instances InService/OutOfService.
- `application`: an Application Load Balancer `alb-NAME` with one target group `tg-NAME`; groups
  attach to the target group and targets report healthy/unhealthy/draining.

The steps (setup, launch, wait, retire, status, destroy) call the methods of `LoadBalancer` only and
never branch on the kind. An environment's kind never changes in place: a switch is refused with
instructions (`refuse_kind_switch`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from deploy.aws.clients import Aws, collect, error_code
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


TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.3 and 1.2 only: AWS's current recommendation
IN_SERVICE = "InService"  # what serving_states reports for an instance that receives traffic, whatever the kind
REDIRECT_TO_HTTPS = {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}
GONE = ("shutting-down", "terminated")


@dataclass(frozen=True)
class HealthCheck:
    """The original scripts' check: HTTP on the app's port (APP_PORT, 80 by default), every 30 s, 4 s timeout,
    2 failures / 2 successes."""

    path: str
    interval: int = 30
    timeout: int = 4
    unhealthy: int = 2
    healthy: int = 2
    port: int = 80  # APP_PORT: where the instances listen; the load balancer's own port stays 80

    def as_classic(self) -> dict[str, Any]:
        return {
            "Target": f"HTTP:{self.port}{self.path}",
            "Interval": self.interval,
            "Timeout": self.timeout,
            "UnhealthyThreshold": self.unhealthy,
            "HealthyThreshold": self.healthy,
        }

    def as_target_group(self) -> dict[str, Any]:
        """The same check for a target group (on its traffic port, APP_PORT), healthy on HTTP 200 only."""
        return {
            "HealthCheckProtocol": "HTTP",
            "HealthCheckPort": "traffic-port",
            "HealthCheckPath": self.path,
            "HealthCheckEnabled": True,
            "HealthCheckIntervalSeconds": self.interval,
            "HealthCheckTimeoutSeconds": self.timeout,
            "HealthyThresholdCount": self.healthy,
            "UnhealthyThresholdCount": self.unhealthy,
            "Matcher": {"HttpCode": "200"},
        }


def health_check_differs(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    return current is None or any(current.get(key) != value for key, value in desired.items())


def draining_differs(attributes: dict[str, Any]) -> bool:
    draining = attributes.get("ConnectionDraining", {})
    return not draining.get("Enabled") or draining.get("Timeout") != DRAINING_TIMEOUT_S


VERBS = {
    "created": "create",
    "set": "set",
    "attached": "attach",
    "applied": "apply",
    "enabled": "enable",
    "removed": "remove",
}


class Changes(list[str]):
    """The change lines of one ensure; in a dry run the calls are skipped and each line says "would …"."""

    def __init__(self, dry_run: bool) -> None:
        super().__init__()
        self.dry_run = dry_run

    def make(self, done: str, call: Callable[[], Any] | None = None) -> Any:
        """Run CALL and record DONE (past tense: "created X"); a dry run records "would create X" instead."""
        if self.dry_run or call is None:
            verb, _, rest = done.partition(" ")
            self.append(f"would {VERBS.get(verb, verb)} {rest}")
            return None
        result = call()
        self.append(done)
        return result


class LoadBalancer(Protocol):
    """What the steps need of a load balancer, whatever its kind."""

    kind: str  # "classic" or "application", as LOAD_BALANCER says
    name: str  # the load balancer's name: elb-NAME or alb-NAME

    def preflight(self, vpc_id: str) -> None:
        """Refuse, before setup creates anything, what it could only half do (a switch of kind, a bad certificate)."""
        ...

    def refuse_kind_switch(self) -> None:
        """Raise DeployError when the environment already has a load balancer of the other kind."""
        ...

    def ingress_ports(self) -> list[int]:
        """Ports the load balancer's security group opens to the world."""
        ...

    def ensure(
        self,
        subnet_ids: list[str],
        security_group_id: str,
        health: HealthCheck,
        dry_run: bool = False,
        vpc_id: str | None = None,
    ) -> list[str]:
        """Create or converge everything of the load balancer; return what changed (empty: nothing).

        DRY_RUN: no write call; the same lines, each starting with "would" ("would create load balancer …").
        """
        ...

    def exists(self) -> bool: ...

    def require(self) -> dict[str, Any]:
        """The load balancer's description; DeployError when setup has not run (or the kind was switched)."""
        ...

    def dns_target(self) -> tuple[str, str]:
        """(DNS name, hosted zone id) for the Route 53 ALIAS record."""
        ...

    def group_attachment(self) -> dict[str, Any]:
        """The CreateAutoScalingGroup parameters that put a group behind the load balancer."""
        ...

    def serving_states(self, instance_ids: list[str] | None = None) -> dict[str, str]:
        """State at the load balancer of the given (or all registered) instances; IN_SERVICE when serving."""
        ...

    def detach_group(self, group_name: str) -> None:
        """Start taking a group out of service: the load balancer drains its instances."""
        ...

    def group_detached(self, group_name: str) -> bool:
        """Whether the group is detached and none of its instances is still registered or draining."""
        ...

    def register(self, instance_ids: list[str]) -> None: ...

    def after_group_removed(self, group_name: str) -> list[str]:
        """Called once a group is deleted: deregister what it left registered; return those instance ids."""
        ...

    def describe_summary(self) -> dict[str, Any]:
        """For status, dry runs and destroy, always a dict: kind, name, exists; when it exists also dns_name,
        health_check (target, protocol, port, path, interval, timeout, healthy_threshold, unhealthy_threshold),
        listeners ([{port, protocol, action}]), security_groups, subnets, tags; an ALB adds target_group."""
        ...

    def delete(self) -> list[str]:
        """Delete the load balancer (an ALB: listeners, then target group, then itself); return what was deleted,
        one line each: empty (falsy) when there was nothing to delete."""
        ...


def _say(aws: Aws, message: str) -> None:
    if aws.log is not None:
        aws.log.say(message)


def _kind_switch_refused(aws: Aws, names: Names, found_kind: str, found_name: str) -> DeployError:
    wanted = str(aws.config.load_balancer)
    source = aws.config.sources.get("LOAD_BALANCER", f"env/{names.env}.env")
    env = names.env
    return DeployError(
        f"{names.stack} already has a {found_kind} load balancer ({found_name}), but LOAD_BALANCER={wanted}"
        f" ({source}). Switching the kind of an existing environment is refused, so that it is never left half"
        f" one kind, half the other. Either keep LOAD_BALANCER={found_kind} for {env}, or rebuild the environment"
        f" with the new kind: with LOAD_BALANCER={found_kind}, run `inv destroy --env {env}`; then set"
        f" LOAD_BALANCER={wanted} and run `inv setup --env {env}` and `inv deploy --env {env}` (the site is"
        ' down in between). See the README, section "Load balancer kinds".'
    )


def _summary_check(
    protocol: str, port: Any, path: str, interval: Any, timeout: Any, healthy: Any, unhealthy: Any
) -> dict[str, Any]:
    return {
        "target": f"{protocol}:{port}{path}",
        "protocol": protocol,
        "port": port,
        "path": path,
        "interval": interval,
        "timeout": timeout,
        "healthy_threshold": healthy,
        "unhealthy_threshold": unhealthy,
    }


class _LoadBalancerBase:
    """What both kinds do alike: whether the load balancer exists, the guard against a switch of kind, `require`."""

    kind: str
    name: str
    aws: Aws
    names: Names

    def describe(self) -> dict[str, Any] | None:
        raise NotImplementedError

    def exists(self) -> bool:
        return self.describe() is not None

    def refuse_kind_switch(self) -> None:
        for kind, other_class in KINDS.items():
            if kind != self.kind:
                other = other_class(self.aws, self.names)
                if other.exists():
                    raise _kind_switch_refused(self.aws, self.names, other.kind, other.name)

    def require(self) -> dict[str, Any]:
        self.refuse_kind_switch()
        found = self.describe()
        if found is None:
            raise DeployError(
                f"Load balancer {self.name} does not exist: run `inv setup --env {self.names.env}` first."
            )
        return found


class ClassicLoadBalancer(_LoadBalancerBase):
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

    def preflight(self, vpc_id: str) -> None:
        self.refuse_kind_switch()

    def ingress_ports(self) -> list[int]:
        return [80]

    def ensure(
        self,
        subnet_ids: list[str],
        security_group_id: str,
        health: HealthCheck,
        dry_run: bool = False,
        vpc_id: str | None = None,
    ) -> list[str]:
        """Create or converge the load balancer; return what changed (empty when nothing did)."""
        elb = self.aws.elb
        changes = Changes(dry_run)
        current = self.describe()
        if current is None:
            changes.make(
                f"created load balancer {self.name}",
                lambda: elb.create_load_balancer(
                    LoadBalancerName=self.name,
                    Listeners=[self._listener(health.port)],
                    Subnets=subnet_ids,
                    SecurityGroups=[security_group_id],
                    Tags=tag_list(self.names.tags()),
                ),
            )
            current = {} if dry_run else self.describe() or {}
        else:
            missing_subnets = sorted(set(subnet_ids) - set(current.get("Subnets", [])))
            if missing_subnets:
                changes.make(
                    f"attached {self.name} to subnets {', '.join(missing_subnets)}",
                    lambda: elb.attach_load_balancer_to_subnets(LoadBalancerName=self.name, Subnets=missing_subnets),
                )
            if security_group_id not in current.get("SecurityGroups", []):
                changes.make(
                    f"applied security group {security_group_id} to {self.name}",
                    lambda: elb.apply_security_groups_to_load_balancer(
                        LoadBalancerName=self.name, SecurityGroups=[security_group_id]
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
                    f"set the listener of {self.name} to HTTP 80 → instances HTTP:{health.port}", replace_listener
                )
        desired_check = health.as_classic()
        if health_check_differs(current.get("HealthCheck"), desired_check):
            changes.make(
                f"set the health check of {self.name} to {desired_check['Target']}",
                lambda: elb.configure_health_check(LoadBalancerName=self.name, HealthCheck=desired_check),
            )
        attributes = (
            elb.describe_load_balancer_attributes(LoadBalancerName=self.name)["LoadBalancerAttributes"]
            if current
            else {}
        )
        if draining_differs(attributes) or not attributes.get("CrossZoneLoadBalancing", {}).get("Enabled"):
            changes.make(
                f"enabled connection draining ({DRAINING_TIMEOUT_S}s) on {self.name}",
                lambda: elb.modify_load_balancer_attributes(
                    LoadBalancerName=self.name,
                    LoadBalancerAttributes={
                        "ConnectionDraining": {"Enabled": True, "Timeout": DRAINING_TIMEOUT_S},
                        "CrossZoneLoadBalancing": {"Enabled": True},
                    },
                ),
            )
        return list(changes)

    @staticmethod
    def _listener(instance_port: int) -> dict[str, Any]:
        return {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": instance_port}

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
            if error_code(error) in ("LoadBalancerNotFound", "AccessPointNotFound"):
                self.require()  # says why: setup not run, or the kind was switched
            raise
        return {state["InstanceId"]: state["State"] for state in states}

    def detach_group(self, group_name: str) -> None:
        self.aws.autoscaling.detach_load_balancers(AutoScalingGroupName=group_name, LoadBalancerNames=[self.name])
        if self.aws.config.endpoint_url:
            # moto divergence: detaching deregisters only the instances the group registered itself, not
            # those keep_serving_registered put back by hand (they would stay listed, OutOfService once
            # terminated). AWS deregisters every instance of the group: do the same here.
            groups = self.aws.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])
            ids = [i["InstanceId"] for g in groups["AutoScalingGroups"] for i in g.get("Instances", [])]
            registered = [i for i, state in self.serving_states(ids).items() if state != "Unknown"]
            if registered:
                self.aws.elb.deregister_instances_from_load_balancer(
                    LoadBalancerName=self.name, Instances=[{"InstanceId": i} for i in registered]
                )

    def group_detached(self, group_name: str) -> bool:
        found = self.aws.autoscaling.describe_load_balancers(AutoScalingGroupName=group_name)["LoadBalancers"]
        return not any(lb["LoadBalancerName"] == self.name and lb.get("State") != "Removed" for lb in found)

    def register(self, instance_ids: list[str]) -> None:
        if instance_ids:
            self.aws.elb.register_instances_with_load_balancer(
                LoadBalancerName=self.name, Instances=[{"InstanceId": i} for i in instance_ids]
            )

    def after_group_removed(self, group_name: str) -> list[str]:
        # A classic load balancer forgets the instances of a deleted group, on AWS and in moto alike.
        return []

    def describe_summary(self) -> dict[str, Any]:
        """For status, dry runs and destroy: kind, name, exists; when it exists also dns_name, health_check,
        listeners ({port, protocol, action}), security_groups, subnets, tags, draining_seconds, instances."""
        found = self.describe()
        summary: dict[str, Any] = {"kind": self.kind, "name": self.name, "exists": found is not None}
        if found is None:
            return summary
        check = found.get("HealthCheck", {})
        protocol, _, rest = str(check.get("Target", "")).partition(":")  # "HTTP:80/api/status/health"
        port, slash, path = rest.partition("/")
        attributes = self.aws.elb.describe_load_balancer_attributes(LoadBalancerName=self.name)[
            "LoadBalancerAttributes"
        ]
        draining = attributes.get("ConnectionDraining", {})
        tags = self.aws.elb.describe_tags(LoadBalancerNames=[self.name])["TagDescriptions"]
        summary.update(
            dns_name=found.get("DNSName"),
            health_check=_summary_check(
                protocol,
                int(port) if port.isdigit() else port,
                slash + path,
                check.get("Interval"),
                check.get("Timeout"),
                check.get("HealthyThreshold"),
                check.get("UnhealthyThreshold"),
            ),
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
            tags={t["Key"]: t["Value"] for d in tags for t in d.get("Tags", [])},
            draining_seconds=draining.get("Timeout") if draining.get("Enabled") else 0,
            instances=self.serving_states(),
        )
        return summary

    def delete(self) -> list[str]:
        if self.describe() is None:
            return []
        self.aws.elb.delete_load_balancer(LoadBalancerName=self.name)
        return [f"deleted load balancer {self.name}"]


class ApplicationLoadBalancer(_LoadBalancerBase):
    """An Application Load Balancer `alb-NAME` and its target group `tg-NAME`.

    HTTP 80 forwards to the target group (or redirects to HTTPS 443 when CERTIFICATE_ARN is set);
    the target group checks HTTP HEALTH_CHECK_PATH on port 80 and drains deregistered targets 300 s.
    """

    kind = "application"

    def __init__(self, aws: Aws, names: Names) -> None:
        self.aws = aws
        self.names = names
        self.name = names.application_load_balancer
        self.target_group_name = names.target_group
        self._target_group_arn: str | None = None

    @property
    def elbv2(self) -> Any:
        return self.aws.client("elbv2")

    @property
    def certificate_arn(self) -> str | None:
        value = self.aws.config.certificate_arn
        return str(value) if value else None

    # --- descriptions -------------------------------------------------------------------------

    def describe(self) -> dict[str, Any] | None:
        try:
            found = self.elbv2.describe_load_balancers(Names=[self.name])["LoadBalancers"]
        except ClientError as error:
            if error_code(error) == "LoadBalancerNotFound":
                return None
            raise
        return found[0] if found else None

    def describe_target_group(self) -> dict[str, Any] | None:
        try:
            found = self.elbv2.describe_target_groups(Names=[self.target_group_name])["TargetGroups"]
        except ClientError as error:
            if error_code(error) == "TargetGroupNotFound":
                return None
            raise
        return found[0] if found else None

    def listeners(self, load_balancer_arn: str) -> dict[int, dict[str, Any]]:
        found = collect(self.elbv2, "describe_listeners", "Listeners", LoadBalancerArn=load_balancer_arn)
        return {int(listener["Port"]): listener for listener in found}

    def target_group_arn(self) -> str:
        if self._target_group_arn is None:
            found = self.describe_target_group()
            if found is None:
                self.refuse_kind_switch()
                raise DeployError(
                    f"Target group {self.target_group_name} does not exist: run `inv setup --env {self.names.env}`"
                    " first."
                )
            self._target_group_arn = str(found["TargetGroupArn"])
        return self._target_group_arn

    # --- setup --------------------------------------------------------------------------------

    def preflight(self, vpc_id: str) -> None:
        self.refuse_kind_switch()
        group = self.describe_target_group()
        if group is not None and group.get("VpcId") != vpc_id:
            raise DeployError(
                f"Target group {self.target_group_name} is in VPC {group.get('VpcId')}, not in {vpc_id}: a target"
                " group cannot move. Set VPC_ID back, or destroy the environment and set it up again."
            )
        if self.certificate_arn:
            self._check_certificate(self.certificate_arn)

    def _check_certificate(self, arn: str) -> None:
        try:
            certificate = self.aws.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]
        except ClientError as error:
            if error_code(error) in ("ResourceNotFoundException", "ValidationException"):
                raise DeployError(
                    f"CERTIFICATE_ARN {arn} is not a certificate in ACM of {self.aws.config.region}: request or"
                    f" import it there, or fix CERTIFICATE_ARN in env/{self.names.env}.env."
                ) from None
            raise
        status = certificate.get("Status")
        if status != "ISSUED":
            raise DeployError(
                f"CERTIFICATE_ARN {arn} is {status}: an HTTPS listener needs an issued certificate."
                " Complete its validation in ACM, then run setup again."
            )
        host = self.names.host.lower()
        covered = {certificate.get("DomainName", ""), *certificate.get("SubjectAlternativeNames", [])}
        if not any(fnmatch.fnmatchcase(host, name.lower()) and name.count(".") == host.count(".") for name in covered):
            _say(self.aws, f"  warning: certificate {arn} does not name {host} ({', '.join(sorted(covered))})")

    def ingress_ports(self) -> list[int]:
        return [80, 443] if self.certificate_arn else [80]

    def ensure(
        self,
        subnet_ids: list[str],
        security_group_id: str,
        health: HealthCheck,
        dry_run: bool = False,
        vpc_id: str | None = None,
    ) -> list[str]:
        """Create or converge the load balancer, its target group and listeners; return what changed."""
        changes = Changes(dry_run)
        vpc_id = vpc_id or self._vpc_of(subnet_ids)
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
            load_balancer_arn = created["LoadBalancers"][0]["LoadBalancerArn"] if created else None
        else:
            load_balancer_arn = current["LoadBalancerArn"]
            subnets_now = {zone["SubnetId"] for zone in current.get("AvailabilityZones", [])}
            missing_subnets = sorted(set(subnet_ids) - subnets_now)
            if missing_subnets:
                changes.make(
                    f"attached {self.name} to subnets {', '.join(missing_subnets)}",
                    lambda: self.elbv2.set_subnets(
                        LoadBalancerArn=load_balancer_arn, Subnets=sorted(subnets_now | set(subnet_ids))
                    ),
                )
            if current.get("SecurityGroups") != [security_group_id]:
                changes.make(
                    f"applied security group {security_group_id} to {self.name}",
                    lambda: self.elbv2.set_security_groups(
                        LoadBalancerArn=load_balancer_arn, SecurityGroups=[security_group_id]
                    ),
                )
        target_group_arn = self._ensure_target_group(changes, vpc_id, health)
        self._ensure_listeners(changes, load_balancer_arn, target_group_arn)
        return list(changes)

    def _vpc_of(self, subnet_ids: list[str]) -> str:
        found = self.aws.ec2.describe_subnets(SubnetIds=subnet_ids[:1])["Subnets"]
        return str(found[0]["VpcId"])

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
                    lambda: self.elbv2.modify_target_group(TargetGroupArn=group["TargetGroupArn"], **desired),
                )
        arn = str(group["TargetGroupArn"])
        self._target_group_arn = arn
        attributes = {
            a["Key"]: a["Value"] for a in self.elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
        }
        if attributes.get("deregistration_delay.timeout_seconds") != str(DRAINING_TIMEOUT_S):
            changes.make(
                f"set the deregistration delay of {self.target_group_name} to {DRAINING_TIMEOUT_S}s",
                lambda: self.elbv2.modify_target_group_attributes(
                    TargetGroupArn=arn,
                    Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": str(DRAINING_TIMEOUT_S)}],
                ),
            )
        return arn

    def _ensure_listeners(self, changes: Changes, load_balancer_arn: str | None, target_group_arn: str | None) -> None:
        """HTTP 80 forwards to the target group; with a certificate, HTTPS 443 does and HTTP 80 redirects to it.

        The order never sends traffic nowhere: 443 exists before 80 redirects to it, and 80 forwards
        again before 443 is removed. (ARNs are None in a dry run when their resource is still to be made.)
        """
        current = self.listeners(load_balancer_arn) if load_balancer_arn else {}
        forward = [{"Type": "forward", "TargetGroupArn": target_group_arn or f"(new {self.target_group_name})"}]
        certificate = self.certificate_arn
        if certificate:
            https = {
                "Protocol": "HTTPS",
                "Port": 443,
                "DefaultActions": forward,
                "Certificates": [{"CertificateArn": certificate}],
                "SslPolicy": TLS_POLICY,
            }
            self._converge_listener(
                changes,
                load_balancer_arn,
                current.get(443),
                https,
                f"HTTPS listener 443 → {self.target_group_name} ({TLS_POLICY})",
            )
            redirect = {
                "Protocol": "HTTP",
                "Port": 80,
                "DefaultActions": [{"Type": "redirect", "RedirectConfig": REDIRECT_TO_HTTPS}],
            }
            self._converge_listener(
                changes, load_balancer_arn, current.get(80), redirect, "HTTP listener 80 → redirect to HTTPS 443"
            )
        else:
            http = {"Protocol": "HTTP", "Port": 80, "DefaultActions": forward}
            self._converge_listener(
                changes, load_balancer_arn, current.get(80), http, f"HTTP listener 80 → {self.target_group_name}"
            )
            if 443 in current:
                changes.make(
                    f"removed the HTTPS listener 443 of {self.name} (CERTIFICATE_ARN is empty)",
                    lambda: self.elbv2.delete_listener(ListenerArn=current[443]["ListenerArn"]),
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
                lambda: self.elbv2.create_listener(LoadBalancerArn=load_balancer_arn, **desired),
            )
        elif not listener_matches(current, desired):
            changes.make(
                f"set {what} on {self.name}",
                lambda: self.elbv2.modify_listener(ListenerArn=current["ListenerArn"], **desired),
            )

    def require(self) -> dict[str, Any]:
        found = super().require()
        self.target_group_arn()  # and its target group
        return found

    def dns_target(self) -> tuple[str, str]:
        found = self.require()
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
        try:
            found = self.elbv2.describe_target_health(**params)["TargetHealthDescriptions"]
        except ClientError as error:
            if error_code(error) == "InvalidTarget":  # an instance that no longer exists
                return {i: "unused" for i in instance_ids or []}
            raise
        return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in found}

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

    def detach_group(self, group_name: str) -> None:
        """Detach the group from the target group: AWS deregisters its instances, which drain (300 s at most)."""
        if not any(state not in ("Removing", "Removed") for state in self._attachment_states(group_name)):
            return  # not attached, or already being detached: detaching again would fail in moto
        instance_ids = self._group_instances(group_name)
        try:
            self.aws.autoscaling.detach_load_balancer_target_groups(
                AutoScalingGroupName=group_name, TargetGroupARNs=[self.target_group_arn()]
            )
        except ClientError as error:
            if error_code(error) != "InvalidTarget":
                raise
            # moto divergence: detaching fails as soon as one of the group's instances is no longer
            # registered (say, terminated through EC2), after moto has already detached the group. AWS
            # detaches and deregisters whatever is registered; do the rest of that here.
            still = [i for i, state in self.target_states(instance_ids).items() if state not in ("unused", "draining")]
            if still:
                self.elbv2.deregister_targets(
                    TargetGroupArn=self.target_group_arn(), Targets=[{"Id": i} for i in still]
                )

    def group_detached(self, group_name: str) -> bool:
        if any(state != "Removed" for state in self._attachment_states(group_name)):
            return False
        instance_ids = self._group_instances(group_name)
        return all(state == "unused" for state in self.target_states(instance_ids).values())

    def register(self, instance_ids: list[str]) -> None:
        if instance_ids:
            self.elbv2.register_targets(
                TargetGroupArn=self.target_group_arn(), Targets=[{"Id": i} for i in instance_ids]
            )

    def after_group_removed(self, group_name: str) -> list[str]:
        """Deregister targets whose instances are terminated (or gone); return their ids.

        moto divergence: the instances of a group that is scaled to 0 or deleted while attached stay
        registered and report `healthy`, terminated as they are. On AWS the group deregisters them
        itself, so this finds nothing there.
        """
        if self.describe_target_group() is None:
            return []
        registered = [i for i, state in self.target_states().items() if state not in ("draining", "unused")]
        if not registered:
            return []
        reservations = self.aws.ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": registered}])
        states = {i["InstanceId"]: i["State"]["Name"] for r in reservations["Reservations"] for i in r["Instances"]}
        leftovers = sorted(i for i in registered if states.get(i, "terminated") in GONE)
        if leftovers:
            self.elbv2.deregister_targets(
                TargetGroupArn=self.target_group_arn(), Targets=[{"Id": i} for i in leftovers]
            )
            _say(
                self.aws,
                f"  deregistered {len(leftovers)} terminated instance(s) still registered in {self.target_group_name}"
                f" after {group_name} was removed ({', '.join(leftovers)}): moto keeps them registered as"
                " healthy, AWS deregisters them itself",
            )
        return leftovers

    # --- status and destroy -------------------------------------------------------------------

    def describe_summary(self) -> dict[str, Any]:
        """For status, dry runs and destroy: kind, name, exists and target_group (None when absent; else name,
        arn, deregistration_delay_seconds, targets); when the load balancer exists also dns_name, state,
        health_check (of the target group), listeners ({port, protocol, action[, certificate, ssl_policy]}),
        security_groups, subnets, tags."""
        found = self.describe()
        group = self.describe_target_group()
        summary: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "exists": found is not None,
            "target_group": None,
        }
        if group is not None:
            arn = str(group["TargetGroupArn"])
            self._target_group_arn = arn
            attributes = {
                a["Key"]: a["Value"]
                for a in self.elbv2.describe_target_group_attributes(TargetGroupArn=arn)["Attributes"]
            }
            summary["target_group"] = {
                "name": self.target_group_name,
                "arn": arn,
                "deregistration_delay_seconds": int(attributes.get("deregistration_delay.timeout_seconds", 0)),
                "targets": self.target_states(),
            }
            port = group.get("HealthCheckPort")
            summary["health_check"] = _summary_check(
                str(group.get("HealthCheckProtocol", "")),
                group.get("Port") if port in (None, "traffic-port") else port,
                str(group.get("HealthCheckPath", "")),
                group.get("HealthCheckIntervalSeconds"),
                group.get("HealthCheckTimeoutSeconds"),
                group.get("HealthyThresholdCount"),
                group.get("UnhealthyThresholdCount"),
            ) | {"success_codes": (group.get("Matcher") or {}).get("HttpCode")}
        if found is None:
            return summary
        summary.update(
            dns_name=found.get("DNSName"),
            state=(found.get("State") or {}).get("Code"),
            listeners=[
                {
                    "port": port,
                    "protocol": listener["Protocol"],
                    "action": describe_actions(listener.get("DefaultActions", []), self.target_group_name),
                    **(
                        {
                            "certificate": (listener.get("Certificates") or [{}])[0].get("CertificateArn"),
                            "ssl_policy": listener.get("SslPolicy"),
                        }
                        if listener["Protocol"] == "HTTPS"
                        else {}
                    ),
                }
                for port, listener in sorted(self.listeners(found["LoadBalancerArn"]).items())
            ],
            security_groups=found.get("SecurityGroups", []),
            subnets=sorted(zone["SubnetId"] for zone in found.get("AvailabilityZones", [])),
            tags={
                t["Key"]: t["Value"]
                for d in self.elbv2.describe_tags(ResourceArns=[found["LoadBalancerArn"]])["TagDescriptions"]
                for t in d.get("Tags", [])
            },
        )
        return summary

    def delete(self) -> list[str]:
        """Listeners, then the target group (no longer referenced), then the load balancer; wait until it is gone."""
        changes: list[str] = []
        found = self.describe()
        if found is not None:
            for port, listener in sorted(self.listeners(found["LoadBalancerArn"]).items()):
                self.elbv2.delete_listener(ListenerArn=listener["ListenerArn"])
                changes.append(f"deleted listener {listener['Protocol']} {port} of {self.name}")
        group = self.describe_target_group()
        if group is not None:
            self.elbv2.delete_target_group(TargetGroupArn=group["TargetGroupArn"])
            self._target_group_arn = None
            changes.append(f"deleted target group {self.target_group_name}")
        if found is not None:
            self.elbv2.delete_load_balancer(LoadBalancerArn=found["LoadBalancerArn"])
            poll = int(self.aws.config.poll_seconds)  # type: ignore[arg-type]
            # Bounded: its network interfaces are released within minutes (the security group waits on them).
            self.elbv2.get_waiter("load_balancers_deleted").wait(
                LoadBalancerArns=[found["LoadBalancerArn"]],
                WaiterConfig={"Delay": poll, "MaxAttempts": max(1, 600 // poll)},
            )
            changes.append(f"deleted load balancer {self.name}")
        return changes


def _action_target(action: dict[str, Any]) -> str | None:
    if action.get("TargetGroupArn"):
        return str(action["TargetGroupArn"])
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
    return str(groups[0]["TargetGroupArn"]) if len(groups) == 1 else None


def actions_match(current: list[dict[str, Any]], desired: list[dict[str, Any]]) -> bool:
    """Pure: whether a listener's default actions do what DESIRED says (AWS adds defaults and ForwardConfig)."""
    if len(current) != len(desired):
        return False
    for have, want in zip(current, desired, strict=True):
        if have.get("Type") != want["Type"]:
            return False
        if want["Type"] == "forward" and _action_target(have) != want["TargetGroupArn"]:
            return False
        if want["Type"] == "redirect":
            config = have.get("RedirectConfig") or {}
            if any(str(config.get(key)) != value for key, value in want["RedirectConfig"].items()):
                return False
            defaults = {"Host": "#{host}", "Path": "/#{path}", "Query": "#{query}"}
            if any(config.get(key, value) != value for key, value in defaults.items()):
                return False
    return True


def listener_matches(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Pure: whether an existing listener is the desired one (protocol, actions, certificate, TLS policy)."""
    if current.get("Protocol") != desired["Protocol"]:
        return False
    if not actions_match(current.get("DefaultActions", []), desired["DefaultActions"]):
        return False
    if desired["Protocol"] == "HTTPS":
        certificates = [c.get("CertificateArn") for c in current.get("Certificates", [])]
        if desired["Certificates"][0]["CertificateArn"] not in certificates[:1]:
            return False
        if current.get("SslPolicy") != desired["SslPolicy"]:
            return False
    return True


def describe_actions(actions: list[dict[str, Any]], target_group_name: str) -> str:
    """One line per listener for status: `forward to tg-NAME` or `redirect to HTTPS:443 (HTTP_301)`."""
    parts = []
    for action in actions:
        if action.get("Type") == "forward":
            target = _action_target(action) or "several target groups"
            parts.append(f"forward to {target_group_name if f'/{target_group_name}/' in target else target}")
        elif action.get("Type") == "redirect":
            config = action.get("RedirectConfig") or {}
            parts.append(f"redirect to {config.get('Protocol')}:{config.get('Port')} ({config.get('StatusCode')})")
        else:
            parts.append(str(action.get("Type")))
    return ", ".join(parts)


KINDS: dict[str, type[ClassicLoadBalancer] | type[ApplicationLoadBalancer]] = {
    ClassicLoadBalancer.kind: ClassicLoadBalancer,
    ApplicationLoadBalancer.kind: ApplicationLoadBalancer,
}


def load_balancer_for(aws: Aws, names: Names) -> LoadBalancer:
    """The load balancer LOAD_BALANCER names (application unless an env file says classic)."""
    kind = str(aws.config.load_balancer)
    return KINDS[kind](aws, names)
