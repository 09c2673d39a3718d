"""Health checks of the embedded cloud's load balancers: the check as configured, one probe, and the health a
target's probes made.

Every registered instance of an app image is probed on the configured path and port, with the configured
interval, timeout and thresholds (times scaled). It starts out of service (ALB: `initial`) and turns healthy
after HealthyThreshold consecutive passes; UnhealthyThreshold consecutive failures make it unhealthy. The probe
loops run in balancers.py; DescribeInstanceHealth and DescribeTargetHealth answer from them (hooks.py).
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from typing import Any

from deploy.localcloud.backends import Host

MIN_PROBE_TIMEOUT_S = 0.5  # a scaled timeout never below this: a loaded machine answers in milliseconds, not less
MIN_INTERVAL_S = 0.05
MAX_PROBES = 10_000_000  # bounds a probe loop; deregistration or the cloud's end stop it long before


@dataclass
class TargetHealth:
    """The health of one registered instance as its probes made it (pure: fed one probe result at a time)."""

    state: str = "initial"  # initial (registering, out of service), healthy, unhealthy
    passes: int = 0
    failures: int = 0
    reason: str = "Target registration is in progress"

    def record(self, passed: bool, healthy_threshold: int, unhealthy_threshold: int, why: str = "") -> None:
        if passed:
            self.passes, self.failures = self.passes + 1, 0
            if self.passes >= healthy_threshold:
                self.state, self.reason = "healthy", ""
        else:
            self.passes, self.failures = 0, self.failures + 1
            if self.failures >= unhealthy_threshold:
                self.state = "unhealthy"
                self.reason = f"Health checks failed {self.failures} times in a row: {why}"

    @property
    def healthy(self) -> bool:
        return self.state == "healthy"


@dataclass(frozen=True)
class Check:
    """A health check as configured on a classic load balancer or a target group (AWS seconds)."""

    path: str
    port: int
    interval: float
    timeout: float
    healthy_threshold: int
    unhealthy_threshold: int
    codes: str = "200"

    def passes(self, status: int) -> bool:
        for part in self.codes.split(","):
            low, _, high = part.strip().partition("-")
            if low.isdigit() and int(low) <= status <= int(high or low):
                return True
        return False


def classic_check(model: Any) -> Check | None:
    """The health check of a classic load balancer (moto's model), None when it has none (or is gone)."""
    if model is None or model.health_check is None:
        return None
    check = model.health_check
    _, _, rest = str(check.target).partition(":")  # HTTP:PORT/PATH
    port, slash, path = rest.partition("/")
    return Check(
        path=slash + path,
        port=int(port) if port.isdigit() else 80,
        interval=float(check.interval),
        timeout=float(check.timeout),
        healthy_threshold=int(check.healthy_threshold),
        unhealthy_threshold=int(check.unhealthy_threshold),
    )


def target_group_check(group: Any) -> Check:
    """The health check of a target group (moto's model)."""
    port = group.health_check_port
    return Check(
        path=group.health_check_path or "/",
        port=int(group.port if port in (None, "traffic-port") else port),
        interval=float(group.health_check_interval_seconds),
        timeout=float(group.health_check_timeout_seconds),
        healthy_threshold=int(group.healthy_threshold_count),
        unhealthy_threshold=int(group.unhealthy_threshold_count),
        codes=str((group.matcher or {}).get("HttpCode", "200")),
    )


def probe(host: Host, instance_id: str, check: Check) -> tuple[bool, str]:
    """One health check: GET PATH on the instance's PORT, within the (scaled) timeout."""
    port = host.address_of(instance_id, check.port)
    if port is None:
        return False, f"nothing listens on port {check.port} (booting, stopped, or another APP_PORT)"
    timeout = host.timing.seconds(check.timeout, MIN_PROBE_TIMEOUT_S)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", check.path, headers={"User-Agent": "ELB-HealthChecker/2.0"})
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as error:
        return False, f"{type(error).__name__}: {error}"
    finally:
        connection.close()
    if check.passes(response.status):
        return True, ""
    return False, f"HTTP {response.status} (expected {check.codes})"
