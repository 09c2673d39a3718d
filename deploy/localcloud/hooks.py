"""Hooks of the embedded cloud's runtime into moto: what moto answers from what really runs.

fixes.py makes moto behave as AWS does; these hooks are not fixes but the emulation's wiring: an image captures
its app when tagged, and the load balancers' health, deregistrations and endpoints come from the runtime
(runtime.py, balancers.py). Each hook wraps a method of moto's own models (after the fixes, which it keeps) and
does nothing without an active runtime.

The one condition: `hook_moto()` runs in the embedded cloud's server process only (deploy/localcloud/server.py,
after `patch_moto()` and before `running()`); tests that use moto in-process through `mock_aws` run no runtime.
It is idempotent: calling it twice installs each hook once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.autoscaling.models import AutoScalingBackend
from moto.ec2.models.tags import TagBackend
from moto.elb.models import ELBBackend
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus, FakeTargetGroup

from deploy.localcloud.apps import APP_DIR_TAG
from deploy.localcloud.backends import instance_by_id
from deploy.localcloud.balancers import Balancers
from deploy.localcloud.proxy import Site
from deploy.localcloud.runtime import active
from deploy.localcloud.traffic_fixes import target_group_in_use

HOOKED = "_embedded_cloud"  # set on every installed hook: what makes hook_moto idempotent


def _runtime_balancers() -> Balancers | None:
    runtime = active()
    return runtime.balancers if runtime is not None else None


def _capture_images(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_tags(self: Any, resource_ids: list[str], tags: dict[str, str]) -> Any:
        result = original(self, resource_ids, tags)
        runtime = active()
        if runtime is not None and APP_DIR_TAG in tags:
            for resource_id in resource_ids:
                if resource_id.startswith("ami-"):
                    merged = dict(self.tags.get(resource_id, {}))
                    runtime.store.capture(resource_id, {**merged, **tags})
        return result

    return create_tags


def _describe_instance_health(original: Any) -> Any:
    def describe_instance_health(self: Any, lb_name: str, instances: list[dict[str, str]]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = original(self, lb_name, instances)
        balancers = _runtime_balancers()
        if balancers is None:
            return found
        key = f"elb:{self.account_id}:{self.region_name}:{lb_name}"
        for entry in found:
            instance = instance_by_id(entry["InstanceId"])
            if entry["State"] == "Unknown" or balancers.runtime.app_of(instance) is None:
                continue
            if instance.state != "running":
                entry["State"] = "OutOfService"
                continue
            entry["State"] = "InService" if balancers.state_of(key, entry["InstanceId"]).healthy else "OutOfService"
        return found

    return describe_instance_health


def _health_for(original: Any) -> Any:
    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        balancers = _runtime_balancers()
        if balancers is None:
            return original(self, target, ec2_backend)
        key, instance_id = f"tg:{self.arn}", target["Id"]
        registered = self.targets.get(instance_id)
        port = target.get("Port", self.port)
        if registered is not None and not target_group_in_use(self):
            return original(self, target, ec2_backend)  # not health checked: `unused` (fixes.py)
        if registered is None:
            if balancers.is_draining(key, instance_id):
                return FakeHealthStatus(
                    instance_id,
                    port,
                    self.health_check_port,
                    "draining",
                    "Target.DeregistrationInProgress",
                    "Target deregistration is in progress",
                )
            return original(self, target, ec2_backend)
        instance = ec2_backend.get_instance_by_id(instance_id)
        if instance is None or balancers.runtime.app_of(instance) is None or instance.state == "stopped":
            return original(self, target, ec2_backend)
        health = balancers.state_of(key, instance_id)

        def status(state: str, *reason: str) -> Any:
            return FakeHealthStatus(instance_id, registered["Port"], self.health_check_port, state, *reason)

        if instance.state != "running":
            return status("unhealthy", "Target.FailedHealthChecks", "Health checks failed")
        if health.state == "initial":
            return status("initial", "Elb.RegistrationInProgress", "Target registration is in progress")
        if health.state == "unhealthy":
            return status("unhealthy", "Target.FailedHealthChecks", health.reason)
        return status("healthy")

    return health_for


def _classic_deregister(original: Any) -> Any:
    def deregister_instances(self: Any, name: str, instance_ids: Any, *args: Any, **kwargs: Any) -> Any:
        ids = list(instance_ids)
        result = original(self, name, ids, *args, **kwargs)
        balancers = _runtime_balancers()
        if balancers is not None and ids:
            key = f"elb:{self.account_id}:{self.region_name}:{name}"
            site = balancers.site(key)
            seconds = balancers.draining_seconds(site) if site else 0.0
            balancers.deregistered(key, ids, seconds)
        return result

    return deregister_instances


def _target_deregister(original: Any) -> Any:
    def deregister(self: Any, targets: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        before = set(self.targets)
        try:
            return original(self, targets, *args, **kwargs)
        finally:
            balancers = _runtime_balancers()
            left = sorted(before - set(self.targets))
            if balancers is not None and left:
                delay = float(self.attributes.get("deregistration_delay.timeout_seconds", 300))
                balancers.deregistered(f"tg:{self.arn}", left, delay)

    return deregister


def _draining_at_balancers(original: Any) -> Any:
    def deregistration_in_progress(self: Any, instance_id: str) -> bool:
        balancers = _runtime_balancers()
        return balancers.still_draining(instance_id) if balancers is not None else original(self, instance_id)

    return deregistration_in_progress


def _endpoint_at_creation(original: Any, kind: str) -> Any:
    def create_load_balancer(self: Any, *args: Any, **kwargs: Any) -> Any:
        created = original(self, *args, **kwargs)
        balancers = _runtime_balancers()
        if balancers is not None and (kind == "classic" or getattr(created, "type", "application") == "application"):
            ident = created.name if kind == "classic" else created.arn
            key = f"elb:{self.account_id}:{self.region_name}:{ident}" if kind == "classic" else f"alb:{ident}"
            balancers.ensure_site(Site(key, kind, self, ident))
        return created

    return create_load_balancer


def _hook(owner: Any, name: str, wrap: Callable[[Any], Any]) -> None:
    current = getattr(owner, name)
    if getattr(current, HOOKED, False):
        return
    patched = wrap(current)
    setattr(patched, HOOKED, True)
    setattr(owner, name, patched)


def hook_moto() -> None:
    """Hook the embedded cloud's runtime into moto (idempotent); each hook does nothing without a runtime."""
    # CreateTags: an image tagged with the app it was baked with (LocalAppDir…) captures a copy of that app.
    _hook(TagBackend, "create_tags", _capture_images)
    # DescribeInstanceHealth: an app instance is InService only when its probes made it healthy.
    _hook(ELBBackend, "describe_instance_health", _describe_instance_health)
    # DeregisterInstancesFromLoadBalancer: the instance drains at once (no new request; in-flight ones finish).
    _hook(ELBBackend, "deregister_instances", _classic_deregister)
    # CreateLoadBalancer (classic, ALB): its endpoint listens, and the URL tag is there, when the call returns.
    _hook(ELBBackend, "create_load_balancer", lambda original: _endpoint_at_creation(original, "classic"))
    _hook(ELBv2Backend, "create_load_balancer", lambda original: _endpoint_at_creation(original, "application"))
    # DescribeTargetHealth: initial, healthy, unhealthy from the probes; draining while the delay runs; `unused`
    # in a target group no listener rule forwards to (not checked).
    _hook(FakeTargetGroup, "health_for", _health_for)
    # DeregisterTargets and the deregistration of terminated instances: the targets drain at once.
    _hook(FakeTargetGroup, "deregister", _target_deregister)
    _hook(FakeTargetGroup, "deregister_terminated_instances", _target_deregister)
    # A scaled-in instance is terminated once its load balancers have drained it (scaling_fixes.py).
    _hook(AutoScalingBackend, "deregistration_in_progress", _draining_at_balancers)
