"""What both kinds of load balancer share: the `LoadBalancer` interface, the health check, change lines,
the settings a load balancer is given, the guard against a switch of kind, and the summary helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from deploy import facts
from deploy.aws.clients import Aws
from deploy.errors import DeployError
from deploy.facts import Facts
from deploy.naming import Names, tags_of

DRAINING_TIMEOUT_S = 300
# A bounded wait the caller runs (deploy/waiting.py, on its clock): a check answers (done, status); (done, last status).
Until = Callable[[Callable[[], tuple[bool, str]]], tuple[bool, str]]


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


@dataclass(frozen=True)
class LoadBalancerSettings:
    """What a load balancer needs of the environment's configuration, handed to it explicitly."""

    kind: str  # LOAD_BALANCER: the kind the environment wants
    region: str  # AWS_REGION, for messages
    poll_seconds: int  # POLL_SECONDS: between two polls of a bounded wait
    certificate_arn: str | None = None  # CERTIFICATE_ARN: HTTPS on an application load balancer
    health: HealthCheck = HealthCheck(path="/")  # HEALTH_CHECK_PATH on APP_PORT: a group's own target group's
    kind_source: str = "its env file"  # where LOAD_BALANCER was set ("env/prod.env"), for messages
    certificate_source: str = "its env file"  # where CERTIFICATE_ARN was set, for messages


class LoadBalancer(Protocol):
    """What the steps need of a load balancer, whatever its kind."""

    kind: ClassVar[str]  # "classic" or "application", as LOAD_BALANCER says
    min_zones: ClassVar[int]  # availability zones its subnets must span (AWS: two for an application one)
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
        *,
        vpc_id: str,
    ) -> list[str]:
        """Create or converge everything of the load balancer; return what changed (empty: nothing).

        DRY_RUN: no write call; the same lines, each starting with "would" ("would create load balancer …").
        """
        ...

    def describe(self) -> dict[str, Any] | None:
        """The load balancer's description (None: it does not exist), read once per run and remembered; this
        object's own writes update or forget it. Every step of an invocation shares the one object (and read)."""
        ...

    def forget(self) -> None:
        """Read everything of the load balancer again when next needed (someone else changed it)."""
        ...

    def exists(self) -> bool: ...

    def gone(self) -> bool:
        """Whether AWS no longer has it, read now: deleting an ALB takes a while (its deletion is polled)."""
        ...

    def require(self) -> dict[str, Any]:
        """DeployError when setup has not run (or the kind was switched); else at least the load balancer's name and
        ARN (the whole description where it was read: `describe`)."""
        ...

    def dns_target(self) -> tuple[str, str]:
        """(DNS name, hosted zone id) for the Route 53 ALIAS record."""
        ...

    def group_weight(self, raw_group: dict[str, Any]) -> int | None:
        """The weight the listeners give the group's target group (its description names it; no request beyond the
        listeners, read once). None where groups have no weights (classic: every attached group serves)."""
        ...

    def serving_ports(self) -> set[int]:
        """The instance ports of the groups that serve now beside APP_PORT (an ALB: its target groups' ports, one
        request; classic: none, its listener has one instance port)."""
        ...

    def instance_port(self) -> tuple[int, str] | None:
        """The port it sends requests to on the instances and what carries it (a classic listener's instance port:
        the load balancer; the target group's port: the target group), from what `require` read: no request of its
        own. None: not known (not set up)."""
        ...

    def group_attachment(self, group_name: str) -> dict[str, Any]:
        """The CreateAutoScalingGroup parameters that put GROUP_NAME behind the load balancer (an ALB: its own target
        group, created and put into the listeners at weight 0)."""
        ...

    def serving_states(self, instance_ids: list[str] | None = None, group_name: str | None = None) -> dict[str, str]:
        """State at the load balancer of the given (or all registered) instances of GROUP_NAME (an ALB: in its
        target group); IN_SERVICE when serving."""
        ...

    def serve(self, group_name: str, leaving: Sequence[str] = ()) -> None:
        """Send every request to GROUP_NAME (an ALB: weight 100 to its target group, 0 to the others, and the target
        groups named LEAVING out of the listeners, in the same request; classic: every attached group serves, nothing
        to do)."""
        ...

    def stand_by(self, group_name: str, raw_group: dict[str, Any]) -> None:
        """A kept group (its window) stops serving but keeps its capacity, ready to take every request back: an ALB
        gave it weight 0 already (`serve`); classic: detached (its instances drain and stay running)."""
        ...

    def restore(self, raw_group: dict[str, Any], raw_from: dict[str, Any], until: Until) -> None:
        """A rollback within the window: every request to the kept group RAW_GROUP again, none to RAW_FROM (an ALB:
        one ModifyListener; classic: attach it, wait (UNTIL) until its instances are in service, detach RAW_FROM).
        No read of the groups: their descriptions name their target groups and load balancers."""
        ...

    def forwarded_target_groups(self) -> set[str]:
        """An ALB: the names of the target groups its listeners forward to, weight 0 included (read with them);
        classic: none."""
        ...

    def take_back(self, serving: str | None, group_name: str) -> bool:
        """Send no request to GROUP_NAME any more, every one to SERVING (an ALB: one ModifyListener per listener, none
        when GROUP_NAME takes none; classic: nothing to do, a detachment drains it). Whether anything changed."""
        ...

    def release(self, serving: str | None, groups: list[str]) -> list[str]:
        """After GROUPS left (retired, or an aborted launch): what only served them is removed (an ALB: their target
        groups, and the shared one once SERVING does not use it); what was deleted."""
        ...

    def attached_to(self, raw_group: dict[str, Any]) -> bool:
        """Whether the group's description (DescribeAutoScalingGroups) lists this load balancer as attached."""
        ...

    def detach_group(self, group_name: str, attached: bool = False) -> None:
        """Start taking a group out of service: the load balancer drains its instances. ATTACHED: known to be
        attached (its description says so), so not asked again."""
        ...

    def group_detached(self, group_name: str, instance_ids: list[str] | None = None) -> bool:
        """Whether the group is detached and none of its instances is still registered or draining (INSTANCE_IDS:
        the group's instances, when the caller knows them)."""
        ...

    def tags(self) -> dict[str, str]:
        """The load balancer's tags (it must exist)."""
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


def kind_switch_refused(names: Names, settings: LoadBalancerSettings, found_kind: str, found_name: str) -> DeployError:
    wanted, env = settings.kind, names.env
    return DeployError(
        f"{names.stack} already has a {found_kind} load balancer ({found_name}), but LOAD_BALANCER={wanted}"
        f" ({settings.kind_source}). Switching the kind of an existing environment is refused, so that it is never"
        f" left half one kind, half the other. Either keep LOAD_BALANCER={found_kind} for {env}, or rebuild the"
        f" environment with the new kind: with LOAD_BALANCER={found_kind}, run `inv destroy --env {env}`; then set"
        f" LOAD_BALANCER={wanted} and run `inv setup --env {env}` and `inv deploy --env {env}` (the site is"
        ' down in between). See docs/aws.md, "Load balancer kinds".'
    )


class LoadBalancerBase:
    """What both kinds do alike: the memo of what was read of the load balancer, whether it exists, the guard
    against a switch of kind, `require`.

    OTHERS are the load balancers of the other kinds of the same environment (only asked whether they exist).

    What is read of the load balancer (its description; its attributes, target group, listeners) is read once
    per run and remembered in `known` (deploy/facts.py's memo, the object's own: one object per environment, so
    setup and the deploy share it). Its own writes update the memo with what AWS answered, or forget what they
    changed; polls (instance and target health, a group's attachment) never go through it.
    """

    kind: ClassVar[str]
    min_zones: ClassVar[int] = 1
    name: str

    def __init__(
        self,
        aws: Aws,
        names: Names,
        settings: LoadBalancerSettings,
        say: Callable[[str], None],
        others: Sequence[LoadBalancer] = (),
    ) -> None:
        self.aws = aws
        self.names = names
        self.settings = settings
        self.say = say
        self.others = tuple(others)
        self.name = self.name_for(names)
        self.known = Facts()

    @staticmethod
    def name_for(names: Names) -> str:
        """The load balancer's name in this environment (elb-NAME, alb-NAME)."""
        raise NotImplementedError

    def read_description(self) -> dict[str, Any] | None:
        """The load balancer's description as AWS gives it now (None: it does not exist)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any] | None:
        return self.known.once(facts.LOAD_BALANCER, self.read_description)

    def forget(self) -> None:
        self.known = Facts()

    def gone(self) -> bool:
        """Whether AWS no longer has the load balancer, read now (a poll of its deletion: deploy/execute.py)."""
        self.known.forget(facts.LOAD_BALANCER)
        return self.describe() is None

    def forget_after(self, call: Callable[..., Any], key: str, **params: Any) -> Any:
        """CALL(**PARAMS), a write of this object's that changes what is remembered as KEY: forgotten (read again
        when next needed), even if the call fails."""
        try:
            return call(**params)
        finally:
            self.known.forget(key)

    def amend(self, key: str, changed: Mapping[Any, Any] | None = None, **fields: Any) -> None:
        """This object's own write changed some entries of the remembered dict KEY, as AWS answered (CHANGED,
        FIELDS): the memo says so, and nothing is read after the write. Not known yet: nothing to amend."""
        known = self.known.get(key)
        if known is not None:
            self.known.put(key, {**known, **(changed or {}), **fields})

    def exists(self) -> bool:
        return self.describe() is not None

    def refuse_kind_switch(self) -> None:
        for other in self.others:
            if other.exists():
                raise kind_switch_refused(self.names, self.settings, other.kind, other.name)

    def guard_kind(self) -> None:
        """The guard against a switch of kind where it matters: while this kind's load balancer does not exist.
        Once it does, the environment is of this kind (setup never creates one beside the other kind's), and a
        run that finds it asks no more."""
        if not self.exists():
            self.refuse_kind_switch()

    def require(self) -> dict[str, Any]:
        found = self.describe()
        if found is None:
            self.refuse_kind_switch()
            raise DeployError(
                f"Load balancer {self.name} does not exist: run `inv setup --env {self.names.env}` first."
            )
        return found


# --- summary helpers (status, dry runs, destroy) ----------------------------------------------------


def summary_check(
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


def classic_check_summary(check: dict[str, Any]) -> dict[str, Any]:
    """summary_check of a classic load balancer's HealthCheck ({"Target": "HTTP:80/api/status/health", ...})."""
    protocol, _, rest = str(check.get("Target", "")).partition(":")
    port, slash, path = rest.partition("/")
    return summary_check(
        protocol,
        int(port) if port.isdigit() else port,
        slash + path,
        check.get("Interval"),
        check.get("Timeout"),
        check.get("HealthyThreshold"),
        check.get("UnhealthyThreshold"),
    )


def target_group_check_summary(group: dict[str, Any]) -> dict[str, Any]:
    """summary_check of a target group's description, with the HTTP codes it counts as healthy."""
    port = group.get("HealthCheckPort")
    return summary_check(
        str(group.get("HealthCheckProtocol", "")),
        group.get("Port") if port in (None, "traffic-port") else port,
        str(group.get("HealthCheckPath", "")),
        group.get("HealthCheckIntervalSeconds"),
        group.get("HealthCheckTimeoutSeconds"),
        group.get("HealthyThresholdCount"),
        group.get("UnhealthyThresholdCount"),
    ) | {"success_codes": (group.get("Matcher") or {}).get("HttpCode")}


def described_tags(descriptions: list[dict[str, Any]]) -> dict[str, str]:
    """The tags of a DescribeTags answer (either API), as a dict."""
    return {key: value for description in descriptions for key, value in tags_of(description).items()}
