"""Each load balancer of the embedded cloud, both kinds, is a real HTTP endpoint with real health checks.

- Endpoint: every classic load balancer and every Application Load Balancer gets an HTTP server on 127.0.0.1 (a
  free port, proxy.py) that stands for its port 80 listener. The load balancer is tagged `LocalCloudURL` with that
  URL: the documented way the tool (status, deploy summary, `inv traffic`) finds where an emulated load balancer
  listens.
- Routing: each request goes, round robin, to a registered instance that passes its health checks (a classic
  load balancer's instances, an ALB's target group behind its port 80 listener), read live from moto at every
  request, so registrations count whichever path made them. An ALB's forward action with several target groups
  (ForwardConfig.TargetGroups with Weight) is honoured request by request: each request picks a target group by
  smooth weighted round robin (over any run of requests as long as the weights' sum, each group gets exactly its
  weight; weight 0 gets none). No healthy target: 503 (a classic load balancer first holds the request in its
  surge queue for up to a second). Not modelled: an ALB's "fail open" (AWS routes to all targets of a target
  group whose targets are all unhealthy); here they get nothing.
- Health checks (health_checks.py): every registered instance of an app image in a target group some listener
  rule forwards to (at any weight, 0 included), or of a classic load balancer, is probed, here, by a thread of
  its own. DescribeInstanceHealth and DescribeTargetHealth answer from these probes (hooks.py); the targets of a
  target group no listener references are `unused`, as on AWS (fixes.py).
- Metrics (metrics.py): what an ALB forwarded is published to CloudWatch as AWS/ApplicationELB metrics.
- Draining: a deregistered or detached instance gets no new request; those in flight finish, up to the draining
  time (classic: connection draining; ALB: the deregistration delay, during which the target reports `draining`).
  It is over as soon as none is in flight any more, at once when none was, as on AWS (schedule.drain_over).
  Requests still in flight at the end of the draining time are cut (502), and the instance's process is stopped
  only after its in-flight requests ended (runtime.py). A request counts as in flight from the moment a target is
  picked for it, so a deregistration never completes between the pick and the forward. A group's scale-in
  terminates an instance only once its draining is over (scaling_fixes.py, through `still_draining`).

Instances of images without an app are left to moto (records that are "InService"/"healthy" at once); they are
never routed to (nothing runs on them).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections import Counter
from typing import Any

from moto.elb.models import elb_backends
from moto.elbv2.models import elbv2_backends

from deploy.localcloud.backends import Host, backends, instance_by_id
from deploy.localcloud.health_checks import (
    MAX_PROBES,
    MIN_INTERVAL_S,
    Check,
    TargetHealth,
    classic_check,
    probe,
    target_group_check,
)
from deploy.localcloud.metrics import PERIOD_S, Metrics, Source
from deploy.localcloud.proxy import Site, serve
from deploy.localcloud.routing import forward_weights, weighted_pick
from deploy.localcloud.schedule import drain_over

URL_TAG = "LocalCloudURL"


def _attribute(mapping: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in mapping:
            return mapping[key]
    return None


class Balancers:
    """Every load balancer endpoint, health prober and draining record of the embedded cloud."""

    def __init__(self, runtime: Host) -> None:
        self.runtime = runtime
        self.lock = threading.RLock()
        self.sites: dict[str, Site] = {}
        self.health: dict[tuple[str, str], TargetHealth] = {}  # (health key, instance id)
        self.probers: dict[tuple[str, str], threading.Event] = {}
        self.registered: dict[str, set[str]] = {}  # health key → instance ids seen registered
        self.draining: dict[tuple[str, str], float] = {}  # (health key, instance id) → end of draining
        self.in_flight_by: Counter[str] = Counter()
        self.flights: Counter[tuple[str, str]] = Counter()  # (health key, instance id) → requests in flight
        self.connections: dict[tuple[str, str], set[http.client.HTTPConnection]] = {}
        self.credits: dict[str, dict[str, int]] = {}  # site key → weighted round robin credit per target group
        self.metrics = Metrics(runtime.timing.seconds(PERIOD_S))

    # --- what the runtime and the moto hooks ask -------------------------------------------------

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
                longest = max(longest, self.draining_seconds(site))
        return self.runtime.timing.seconds(longest)

    def site(self, key: str) -> Site | None:
        with self.lock:
            return self.sites.get(key)

    def state_of(self, health_key: str, instance_id: str) -> TargetHealth:
        with self.lock:
            return self.health.get((health_key, instance_id)) or TargetHealth()

    def still_draining(self, instance_id: str) -> bool:
        """Whether a load balancer or target group is still draining INSTANCE_ID (its deregistration incomplete)."""
        with self.lock:
            return any(drained == instance_id for _, drained in self.draining)

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
        for backend in backends(elb_backends):
            for name in list(backend.load_balancers):
                key = f"elb:{backend.account_id}:{backend.region_name}:{name}"
                found[key] = Site(key, "classic", backend, name)
        for backend in backends(elbv2_backends):
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
            site.server = serve(self, site)
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
            self.credits = {key: credit for key, credit in self.credits.items() if key in sites}
            expired = [k for k, end in self.draining.items() if drain_over(now, end, self.flights[k])]
            for drained in expired:
                del self.draining[drained]
                if drained not in self.probers:
                    self.health.pop(drained, None)
                for connection in self.connections.get(drained, set()) if self.flights[drained] else ():
                    # Draining is over: what is still in flight to it is cut, as AWS does.
                    with contextlib.suppress(OSError, AttributeError):
                        connection.sock.shutdown(socket.SHUT_RDWR)
        self.metrics.flush()

    def _registrations(self, site: Site) -> list[tuple[str, set[str], float]]:
        """(health key, registered instance ids, draining seconds) of what the load balancer routes to."""
        model = site.model()
        if model is None:
            return []
        if site.kind == "classic":
            return [(site.key, set(model.instance_ids), self.draining_seconds(site))]
        found = []
        for arn in self._target_groups(site):
            group = site.backend.target_groups.get(arn)
            if group is not None:
                delay = float(group.attributes.get("deregistration_delay.timeout_seconds", 300))
                found.append((f"tg:{arn}", set(group.targets), delay))
        return found

    def _target_groups(self, site: Site) -> list[str]:
        """The target groups an ALB's listener rules forward to, at any weight (port 80 first): those it checks."""
        model = site.model()
        arns: list[str] = []
        for listener in sorted(model.listeners.values(), key=lambda item: int(item.port) != 80):
            for rule in list(listener.rules.values()):
                for action in rule.actions:
                    arns += [arn for arn, _ in forward_weights(getattr(action, "data", {}) or {})]
        return list(dict.fromkeys(arns))

    def draining_seconds(self, site: Site) -> float:
        """The draining time of SITE's load balancer (AWS seconds; 0 when it drains nothing)."""
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
            site = self.site(health_key)
            return classic_check(site.model() if site else None)
        arn = health_key.removeprefix("tg:")
        for backend in backends(elbv2_backends):
            group = backend.target_groups.get(arn)
            if group is not None:
                return target_group_check(group)
        return None

    def _ensure_prober(self, health_key: str, instance_id: str) -> None:
        if self.runtime.app_of(instance_by_id(instance_id)) is None:
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
            passed, why = probe(self.runtime, instance_id, check)
            with self.lock:
                if stop.is_set():
                    return
                record = self.health.setdefault((health_key, instance_id), TargetHealth())
                record.record(passed, check.healthy_threshold, check.unhealthy_threshold, why)
            if stop.wait(timing.seconds(check.interval, MIN_INTERVAL_S)):
                return

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
        with self.lock:
            arn = weighted_pick(self.credits.setdefault(site.key, {}), forward_weights(data))
        group = site.backend.target_groups.get(arn) if arn else None
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
        for _ in range(len(candidates)):
            instance_id, _ = candidates[next(site.counter) % len(candidates)]
            with self.lock:  # in flight from here: its draining waits for it (see the module docstring)
                self.flights[(health_key, instance_id)] += 1
                self.in_flight_by[instance_id] += 1
            address = self.runtime.address_of(instance_id, port)  # asked again: its process may be stopping now
            if address is not None:
                return health_key, instance_id, address
            self._land(health_key, instance_id)
        return 503, {}

    def _land(self, health_key: str, instance_id: str) -> None:
        with self.lock:
            self.flights[(health_key, instance_id)] -= 1
            self.in_flight_by[instance_id] -= 1
            self.flights, self.in_flight_by = +self.flights, +self.in_flight_by  # drop what reached 0

    def served(self, site: Site, health_key: str, status: int | None, seconds: float | None) -> None:
        """A request SITE forwarded to a target of HEALTH_KEY ended (STATUS None: no answer): its metrics."""
        if site.kind != "application" or not health_key.startswith("tg:"):
            return  # the classic kind's AWS/ELB metrics are not modelled
        account_id, region = site.backend.account_id, site.backend.region_name
        self.metrics.record(Source(account_id, region, site.ident, health_key.removeprefix("tg:")), status, seconds)

    def enter(self, health_key: str, instance_id: str, connection: http.client.HTTPConnection) -> None:
        with self.lock:  # counted in flight since it was picked (_pick)
            self.connections.setdefault((health_key, instance_id), set()).add(connection)

    def leave(self, health_key: str, instance_id: str, connection: http.client.HTTPConnection) -> None:
        self._land(health_key, instance_id)
        with self.lock:
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
        self.metrics.flush(everything=True)
