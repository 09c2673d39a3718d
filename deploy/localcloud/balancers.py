"""Each load balancer of the embedded cloud, both kinds, is a real HTTP endpoint with real health checks.

- Endpoint: every classic load balancer and every Application Load Balancer gets an HTTP server on 127.0.0.1 (a
  free port) that stands for its port 80 listener. The load balancer is tagged `LocalCloudURL` with that URL: the
  documented way the tool (status, deploy summary, `inv traffic`) finds where an emulated load balancer listens.
- Routing: each request goes, round robin, to a registered instance that passes its health checks (a classic
  load balancer's instances, an ALB's target group behind its port 80 listener), read live from moto at every
  request, so registrations count whichever path made them. No healthy target: 503 (a classic load balancer first
  holds the request in its surge queue for up to a second). Not modelled: an ALB's "fail open" (AWS routes to all
  targets of a target group whose targets are all unhealthy); here they get nothing.
- Health checks: every registered instance of an app image is probed on the configured path and port, with the
  configured interval, timeout and thresholds (times scaled). It starts out of service (ALB: `initial`) and turns
  healthy after HealthyThreshold consecutive passes; UnhealthyThreshold consecutive failures make it unhealthy.
  DescribeInstanceHealth and DescribeTargetHealth answer from these probes.
- Draining: a deregistered or detached instance gets no new request; those in flight finish, up to the draining
  time (classic: connection draining; ALB: the deregistration delay, during which the target reports `draining`).
  Requests still in flight then are cut (502), and the instance's process is stopped only after its in-flight
  requests ended (runtime.py).

Instances of images without an app are left to moto (records that are "InService"/"healthy" at once); they are
never routed to (nothing runs on them).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from deploy.localcloud.runtime import backends

if TYPE_CHECKING:
    from deploy.localcloud.runtime import Runtime

URL_TAG = "LocalCloudURL"
MIN_PROBE_TIMEOUT_S = 0.5  # a scaled timeout never below this: a loaded machine answers in milliseconds, not less
MIN_INTERVAL_S = 0.05
UPSTREAM_TIMEOUT_S = 60.0  # the load balancer's idle timeout (scaled, at least MIN_UPSTREAM_TIMEOUT_S)
MIN_UPSTREAM_TIMEOUT_S = 5.0
SURGE_WAIT_S = 1.0  # how long a classic load balancer's surge queue holds a request (real seconds)
SURGE_POLL_S = 0.01
MAX_PROBES = 10_000_000  # bounds a probe loop; deregistration or the cloud's end stop it long before
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}


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


def _attribute(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


@dataclass
class Site:
    """One load balancer: how to find it in moto, what it routes to, and its endpoint."""

    key: str  # "elb:ACCOUNT:REGION:NAME" or "alb:ARN"
    kind: str  # classic or application
    backend: Any  # moto's elb or elbv2 backend
    ident: str  # the classic name, or the ALB's ARN
    server: ThreadingHTTPServer | None = None
    counter: itertools.count = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def model(self) -> Any:
        if self.kind == "classic":
            return self.backend.load_balancers.get(self.ident)
        return self.backend.load_balancers.get(self.ident)


class Balancers:
    """Every load balancer endpoint, health prober and draining record of the embedded cloud."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.lock = threading.RLock()
        self.sites: dict[str, Site] = {}
        self.health: dict[tuple[str, str], TargetHealth] = {}  # (health key, instance id)
        self.probers: dict[tuple[str, str], threading.Event] = {}
        self.registered: dict[str, set[str]] = {}  # health key → instance ids seen registered
        self.draining: dict[tuple[str, str], float] = {}  # (health key, instance id) → end of draining
        self.in_flight_by: Counter[str] = Counter()
        self.connections: dict[tuple[str, str], set[http.client.HTTPConnection]] = {}

    # --- what the runtime and the moto patches ask -----------------------------------------------

    def in_flight(self, instance_id: str) -> int:
        with self.lock:
            return self.in_flight_by[instance_id]

    def longest_draining(self) -> float:
        """The longest draining time of any load balancer (scaled): how long a stopping instance may finish."""
        longest = 0.0
        with self.lock:
            sites = list(self.sites.values())
        for site in sites:
            with contextlib.suppress(Exception):
                longest = max(longest, self._draining_seconds_of_site(site))
        return self.runtime.timing.seconds(longest)

    def state_of(self, health_key: str, instance_id: str) -> TargetHealth:
        with self.lock:
            return self.health.get((health_key, instance_id)) or TargetHealth()

    def is_draining(self, health_key: str, instance_id: str) -> bool:
        with self.lock:
            end = self.draining.get((health_key, instance_id))
        return end is not None and self.runtime.timing.clock() < end

    def deregistered(self, health_key: str, instance_ids: list[str], draining_seconds: float) -> None:
        """An instance left a load balancer: no new request; in-flight ones finish until the draining time ends."""
        end = self.runtime.timing.clock() + self.runtime.timing.seconds(draining_seconds)
        with self.lock:
            for instance_id in instance_ids:
                self.draining[(health_key, instance_id)] = end
                self.registered.get(health_key, set()).discard(instance_id)
                stop = self.probers.pop((health_key, instance_id), None)
                if stop is not None:
                    stop.set()
                # The health record stays while it drains: an instance registered again meanwhile (moto's classic
                # load balancer drops and the tool re-registers a serving group's instances) keeps its health.

    # --- keeping up with moto --------------------------------------------------------------------

    def _all_sites(self) -> dict[str, Site]:
        found: dict[str, Site] = {}
        for backend in backends("moto.elb.models", "elb_backends"):
            for name in list(backend.load_balancers):
                key = f"elb:{backend.account_id}:{backend.region_name}:{name}"
                found[key] = Site(key, "classic", backend, name)
        for backend in backends("moto.elbv2.models", "elbv2_backends"):
            for arn, balancer in list(backend.load_balancers.items()):
                if getattr(balancer, "type", "application") == "application":
                    found[f"alb:{arn}"] = Site(f"alb:{arn}", "application", backend, arn)
        return found

    def ensure_site(self, site: Site) -> Site:
        """Start the endpoint of a load balancer (once) and tag the load balancer with its URL."""
        with self.lock:
            existing = self.sites.get(site.key)
            if existing is not None:
                return existing
            site.server = _serve(self, site)
            self.sites[site.key] = site
        model = site.model()
        if site.kind == "classic":
            model.tags[URL_TAG] = site.url
        else:
            site.backend.tagging_service.tag_resource(site.ident, [{"Key": URL_TAG, "Value": site.url}])
        print(f"embedded cloud: load balancer {getattr(model, 'name', site.ident)} serves {site.url}", flush=True)
        return site

    def sync(self, now: float) -> None:
        """Called by the runtime's loop: endpoints for new load balancers, probes for new registrations, and
        the end of whatever is gone (a deleted load balancer, a deregistered instance, a reset cloud)."""
        try:
            sites = self._all_sites()
        except RuntimeError:
            return
        for site in sites.values():
            self.ensure_site(site)
        with self.lock:
            gone = [key for key in self.sites if key not in sites]
        for key in gone:
            self._close_site(key)
        wanted: dict[str, tuple[set[str], float]] = {}
        for site in sites.values():
            with contextlib.suppress(RuntimeError, AttributeError, KeyError):
                for health_key, ids, draining in self._registrations(site):
                    wanted[health_key] = (ids, draining)
        for health_key, (ids, draining) in wanted.items():
            with self.lock:
                before = set(self.registered.get(health_key, set()))
                self.registered[health_key] = set(ids)
            left = sorted(before - ids)
            if left:
                self.deregistered(health_key, left, draining)
            for instance_id in ids:
                self._ensure_prober(health_key, instance_id)
        with self.lock:
            for health_key in [k for k in self.registered if k not in wanted]:
                self.deregistered(health_key, sorted(self.registered.pop(health_key)), 0)
            expired = [k for k, end in self.draining.items() if now >= end]
            for drained in expired:
                del self.draining[drained]
                if drained not in self.probers:
                    self.health.pop(drained, None)
                for connection in self.connections.get(drained, set()):
                    # Draining is over: what is still in flight to it is cut, as AWS does.
                    with contextlib.suppress(OSError, AttributeError):
                        connection.sock.shutdown(socket.SHUT_RDWR)

    def _registrations(self, site: Site) -> list[tuple[str, set[str], float]]:
        """(health key, registered instance ids, draining seconds) of what the load balancer routes to."""
        model = site.model()
        if model is None:
            return []
        if site.kind == "classic":
            return [(site.key, set(model.instance_ids), self._draining_seconds_of_site(site))]
        found = []
        for arn in self._target_groups(site):
            group = site.backend.target_groups.get(arn)
            if group is not None:
                delay = float(group.attributes.get("deregistration_delay.timeout_seconds", 300))
                found.append((f"tg:{arn}", set(group.targets), delay))
        return found

    def _target_groups(self, site: Site) -> list[str]:
        """The target groups an ALB's listeners forward to (port 80 first)."""
        model = site.model()
        arns: list[str] = []
        for listener in sorted(model.listeners.values(), key=lambda item: int(item.port) != 80):
            for action in listener.default_actions:
                data = getattr(action, "data", {}) or {}
                if data.get("TargetGroupArn"):
                    arns.append(data["TargetGroupArn"])
                for group in (data.get("ForwardConfig") or {}).get("TargetGroups", []):
                    arns.append(group["TargetGroupArn"])
        return list(dict.fromkeys(arns))

    def _draining_seconds_of_site(self, site: Site) -> float:
        model = site.model()
        if model is None:
            return 0.0
        if site.kind == "classic":
            draining = model.attributes.get("connection_draining") or {}
            enabled = _attribute(draining, "enabled", "Enabled")
            if str(enabled).lower() != "true":
                return 0.0
            return float(_attribute(draining, "timeout", "Timeout") or 300)
        delays = [
            float(group.attributes.get("deregistration_delay.timeout_seconds", 300))
            for arn in self._target_groups(site)
            if (group := site.backend.target_groups.get(arn)) is not None
        ]
        return max(delays, default=0.0)

    def _close_site(self, key: str) -> None:
        with self.lock:
            site = self.sites.pop(key, None)
        if site is not None and site.server is not None:
            site.server.shutdown()
            site.server.server_close()

    # --- health checks ---------------------------------------------------------------------------

    def check_of(self, health_key: str) -> Check | None:
        """The health check configured for HEALTH_KEY now (None when its load balancer or target group is gone)."""
        if health_key.startswith("elb:"):
            with self.lock:
                site = self.sites.get(health_key)
            model = site.model() if site else None
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
        arn = health_key.removeprefix("tg:")
        for backend in backends("moto.elbv2.models", "elbv2_backends"):
            group = backend.target_groups.get(arn)
            if group is None:
                continue
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
        return None

    def _instance(self, instance_id: str) -> Any:
        for backend in backends("moto.ec2.models", "ec2_backends"):
            found = backend.get_instance_by_id(instance_id)
            if found is not None:
                return found
        return None

    def _ensure_prober(self, health_key: str, instance_id: str) -> None:
        if self.runtime.app_of(self._instance(instance_id)) is None:
            return  # a record only: moto's health stands
        with self.lock:
            if (health_key, instance_id) in self.probers:
                return
            stop = threading.Event()
            self.probers[(health_key, instance_id)] = stop
            self.health.setdefault((health_key, instance_id), TargetHealth())  # new: out of service at first
            self.draining.pop((health_key, instance_id), None)
        threading.Thread(
            target=self._probe_loop, args=(health_key, instance_id, stop), name=f"probe-{instance_id}", daemon=True
        ).start()

    def _probe_loop(self, health_key: str, instance_id: str, stop: threading.Event) -> None:
        timing = self.runtime.timing
        for _ in range(MAX_PROBES):
            if stop.is_set():
                return
            check = self.check_of(health_key)
            if check is None:  # no health check configured (yet): out of service until there is one
                if stop.wait(1.0):
                    return
                continue
            passed, why = self.probe(instance_id, check)
            with self.lock:
                if stop.is_set():
                    return
                record = self.health.setdefault((health_key, instance_id), TargetHealth())
                record.record(passed, check.healthy_threshold, check.unhealthy_threshold, why)
            if stop.wait(timing.seconds(check.interval, MIN_INTERVAL_S)):
                return

    def probe(self, instance_id: str, check: Check) -> tuple[bool, str]:
        """One health check: GET PATH on the instance's PORT, within the (scaled) timeout."""
        port = self.runtime.address_of(instance_id, check.port)
        if port is None:
            return False, f"nothing listens on port {check.port} (booting, stopped, or another APP_PORT)"
        timeout = self.runtime.timing.seconds(check.timeout, MIN_PROBE_TIMEOUT_S)
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

    # --- routing ---------------------------------------------------------------------------------

    def route(self, site: Site) -> tuple[str, str, int] | tuple[int, dict[str, str]]:
        """Where the next request to SITE goes: (health key, instance id, loopback port), or (status, headers)
        when the load balancer answers itself (no healthy target, a redirect)."""
        model = site.model()
        if model is None:
            return 503, {}
        if site.kind == "classic":
            listener = next((item for item in model.listeners if int(item.load_balancer_port) == 80), None)
            if listener is None:
                return 503, {}
            return self._pick(site, site.key, list(model.instance_ids), int(listener.instance_port))
        listener = next((item for item in model.listeners.values() if int(item.port) == 80), None)
        if listener is None or not listener.default_actions:
            return 503, {}
        data = getattr(listener.default_actions[0], "data", {}) or {}
        if data.get("Type") == "redirect":
            config = data.get("RedirectConfig") or {}
            protocol = str(config.get("Protocol", "HTTPS")).lower()
            location = f"{protocol}://{getattr(model, 'dns_name', 'localhost')}:{config.get('Port', '443')}/"
            return int(str(config.get("StatusCode", "HTTP_301")).removeprefix("HTTP_")), {"Location": location}
        arns = self._target_groups(site)
        group = site.backend.target_groups.get(arns[0]) if arns else None
        if group is None:
            return 503, {}
        return self._pick(site, f"tg:{group.arn}", list(group.targets), int(group.port))

    def _pick(
        self, site: Site, health_key: str, registered: list[str], port: int
    ) -> tuple[str, str, int] | tuple[int, dict[str, str]]:
        with self.lock:
            states = {i: self.health.get((health_key, i)) for i in registered}
        healthy = [i for i, state in states.items() if state is not None and state.healthy]
        candidates = [(i, a) for i in healthy if (a := self.runtime.address_of(i, port)) is not None]
        if not candidates:
            return 503, {}
        instance_id, address = candidates[next(site.counter) % len(candidates)]
        return health_key, instance_id, address

    def enter(self, health_key: str, instance_id: str, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            self.in_flight_by[instance_id] += 1
            self.connections.setdefault((health_key, instance_id), set()).add(connection)

    def leave(self, health_key: str, instance_id: str, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            self.in_flight_by[instance_id] -= 1
            if self.in_flight_by[instance_id] <= 0:
                del self.in_flight_by[instance_id]
            held = self.connections.get((health_key, instance_id))
            if held is not None:
                held.discard(connection)
                if not held:
                    del self.connections[(health_key, instance_id)]

    def close(self) -> None:
        with self.lock:
            keys = list(self.sites)
            for stop in self.probers.values():
                stop.set()
            self.probers.clear()
        for key in keys:
            self._close_site(key)


def _serve(balancers: Balancers, site: Site) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "awselb/2.0"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            routed = balancers.route(site)
            # A classic load balancer holds a request in its surge queue until an instance can take it (AWS:
            # SurgeQueueLength), bounded here in time and polls; an ALB answers 503 at once.
            waits = int(SURGE_WAIT_S / SURGE_POLL_S) if site.kind == "classic" else 0
            for _ in range(waits):
                if len(routed) == 3:
                    break
                time.sleep(SURGE_POLL_S)
                routed = balancers.route(site)
            if len(routed) == 2:
                status, headers = routed
                self.answer(status, headers, b"" if status < 400 else f"{status} from the load balancer\n".encode())
                return
            health_key, instance_id, port = routed
            timeout = balancers.runtime.timing.seconds(UPSTREAM_TIMEOUT_S, MIN_UPSTREAM_TIMEOUT_S)
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            balancers.enter(health_key, instance_id, connection)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers.update(
                    {"X-Forwarded-For": self.client_address[0], "X-Forwarded-Proto": "http", "X-Forwarded-Port": "80"}
                )
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                reply = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
            except (OSError, http.client.HTTPException):
                self.answer(502, {}, b"502 Bad Gateway from the load balancer\n")
                return
            finally:
                connection.close()
                balancers.leave(health_key, instance_id, connection)
            self.send_response_only(response.status, response.reason)
            for key, value in reply:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = forward

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # bursts of traffic must queue, not be refused

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


# --- moto: health answered from the probes, deregistrations seen at once, endpoints made at creation ----------


def _runtime_balancers() -> Balancers | None:
    from deploy.localcloud.runtime import active

    runtime = active()
    return runtime.balancers if runtime is not None else None


def _describe_instance_health(original: Any) -> Any:
    def describe_instance_health(self: Any, lb_name: str, instances: list[dict[str, str]]) -> list[dict[str, Any]]:
        found = original(self, lb_name, instances)
        balancers = _runtime_balancers()
        if balancers is None:
            return found
        key = f"elb:{self.account_id}:{self.region_name}:{lb_name}"
        for entry in found:
            instance = balancers._instance(entry["InstanceId"])
            if entry["State"] == "Unknown" or balancers.runtime.app_of(instance) is None:
                continue
            if instance.state != "running":
                entry["State"] = "OutOfService"
                continue
            entry["State"] = "InService" if balancers.state_of(key, entry["InstanceId"]).healthy else "OutOfService"
        return found

    return describe_instance_health


def _health_for(original: Any) -> Any:
    from moto.elbv2.models import FakeHealthStatus

    def health_for(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        balancers = _runtime_balancers()
        if balancers is None:
            return original(self, target, ec2_backend)
        key, instance_id = f"tg:{self.arn}", target["Id"]
        registered = self.targets.get(instance_id)
        port = target.get("Port", self.port)
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
        if instance.state != "running":
            return FakeHealthStatus(
                instance_id, registered["Port"], self.health_check_port, "unhealthy", "Target.FailedHealthChecks",
                "Health checks failed",
            )  # fmt: skip
        if health.state == "initial":
            return FakeHealthStatus(
                instance_id,
                registered["Port"],
                self.health_check_port,
                "initial",
                "Elb.RegistrationInProgress",
                "Target registration is in progress",
            )
        if health.state == "unhealthy":
            return FakeHealthStatus(
                instance_id,
                registered["Port"],
                self.health_check_port,
                "unhealthy",
                "Target.FailedHealthChecks",
                health.reason,
            )
        return FakeHealthStatus(instance_id, registered["Port"], self.health_check_port, "healthy")

    return health_for


def _classic_deregister(original: Any) -> Any:
    def deregister_instances(self: Any, name: str, instance_ids: Any, *args: Any, **kwargs: Any) -> Any:
        ids = list(instance_ids)
        result = original(self, name, ids, *args, **kwargs)
        balancers = _runtime_balancers()
        if balancers is not None and ids:
            key = f"elb:{self.account_id}:{self.region_name}:{name}"
            with balancers.lock:
                site = balancers.sites.get(key)
            seconds = balancers._draining_seconds_of_site(site) if site else 0.0
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


def _patch(owner: Any, name: str, wrap: Any) -> None:
    current = getattr(owner, name)
    if getattr(current, "_embedded_cloud", False):
        return
    patched = wrap(current)
    patched._embedded_cloud = True
    setattr(owner, name, patched)


def patch_moto() -> None:
    """Hook the embedded cloud's balancers into moto (idempotent); each hook does nothing without a runtime."""
    from moto.elb.models import ELBBackend
    from moto.elbv2.models import ELBv2Backend, FakeTargetGroup

    _patch(ELBBackend, "describe_instance_health", _describe_instance_health)
    _patch(ELBBackend, "deregister_instances", _classic_deregister)
    _patch(ELBBackend, "create_load_balancer", lambda original: _endpoint_at_creation(original, "classic"))
    _patch(ELBv2Backend, "create_load_balancer", lambda original: _endpoint_at_creation(original, "application"))
    _patch(FakeTargetGroup, "health_for", _health_for)
    _patch(FakeTargetGroup, "deregister", _target_deregister)
    _patch(FakeTargetGroup, "deregister_terminated_instances", _target_deregister)
