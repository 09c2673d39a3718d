"""The HTTP endpoint of one load balancer of the embedded cloud: a server on 127.0.0.1 (a free port) that stands
for its port 80 listener, and forwards each request where its load balancer (balancers.py) routes it.

A classic load balancer holds a request in its surge queue (up to a second) while no instance can take it; an
ALB answers 503 at once. A request cut by the end of draining, or one the instance fails, gets 502.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from deploy.localcloud.backends import Host

UPSTREAM_TIMEOUT_S = 60.0  # the load balancer's idle timeout (scaled, at least MIN_UPSTREAM_TIMEOUT_S)
MIN_UPSTREAM_TIMEOUT_S = 5.0
SURGE_WAIT_S = 1.0  # how long a classic load balancer's surge queue holds a request (real seconds)
SURGE_POLL_S = 0.01
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
class Site:
    """One load balancer: how to find it in moto, what it routes to, and its endpoint."""

    key: str  # "elb:ACCOUNT:REGION:NAME" or "alb:ARN"
    kind: str  # classic or application
    backend: Any  # moto's elb or elbv2 backend
    ident: str  # the classic name, or the ALB's ARN
    server: ThreadingHTTPServer | None = None
    counter: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def model(self) -> Any:
        if self.kind == "classic":
            return self.backend.load_balancers.get(self.ident)
        return self.backend.load_balancers.get(self.ident)


class Router(Protocol):
    """What an endpoint asks of its load balancers: where a request goes, and who is in flight where."""

    runtime: Host

    def route(self, site: Site) -> tuple[str, str, int] | tuple[int, dict[str, str]]:
        """(health key, instance id, loopback port), or (status, headers) when the load balancer answers itself."""

    def enter(self, health_key: str, instance_id: str, connection: http.client.HTTPConnection) -> None:
        """A request to INSTANCE_ID is in flight on CONNECTION."""

    def served(self, site: Site, health_key: str, status: int | None, seconds: float | None) -> None:
        """A request forwarded to a target of HEALTH_KEY ended: its status (None: no answer) and response time."""

    def leave(self, health_key: str, instance_id: str, connection: http.client.HTTPConnection) -> None:
        """The request on CONNECTION is over."""


def serve(balancers: Router, site: Site) -> ThreadingHTTPServer:
    """Start the endpoint of SITE (a thread of its own until its server is shut down)."""

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
            answered: int | None = None  # the target's status (None: no answer)
            seconds: float | None = None
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers.update(
                    {"X-Forwarded-For": self.client_address[0], "X-Forwarded-Proto": "http", "X-Forwarded-Port": "80"}
                )
                sent = time.monotonic()
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                # AWS's TargetResponseTime: from the request sent to the target until its answer's headers.
                answered, seconds = response.status, time.monotonic() - sent
                data = response.read()
                reply = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP | {"content-length"}]
            except (OSError, http.client.HTTPException):
                answered = None  # cut or failed: no answer of the target counts (the load balancer's own 502)
                self.answer(502, {}, b"502 Bad Gateway from the load balancer\n")
                return
            finally:
                connection.close()
                balancers.leave(health_key, instance_id, connection)
                balancers.served(site, health_key, answered, seconds if answered is not None else None)
            self.send_response_only(response.status, response.reason)  # the instance's own status line, as sent
            self.send_rest(reply, data)

        def answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            self.send_rest(list(headers.items()), body)

        def send_rest(self, headers: list[tuple[str, str]], body: bytes) -> None:
            """The headers, the body's length, and the body (not for HEAD); one request per connection."""
            for key, value in headers:
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
