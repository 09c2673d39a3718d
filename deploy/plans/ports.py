"""Whether the new group can be served on APP_PORT behind the load balancer as it is set up: the port the load
balancer sends requests to on the instances is its own (a classic listener's instance port, a target group's port),
shared by the serving group and the new one. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PortCheck:
    balancer: str  # the load balancer's name (what carries the port)
    serving_port: int | None  # the port it sends requests to on the instances (None: not known yet)
    app_port: int  # APP_PORT, as configured
    source: str  # where APP_PORT was set, for the message
    env: str


def port_refusal(check: PortCheck) -> str | None:
    """Why a deploy with APP_PORT cannot be served (None: it can): said before anything is baked or launched,
    instead of a health wait that fails after HEALTH_TIMEOUT."""
    if check.serving_port is None or check.serving_port == check.app_port:
        return None
    old, new, env = check.serving_port, check.app_port, check.env
    start = (
        f"APP_PORT={new} ({check.source}), but {check.balancer} sends requests to port {old} of the instances, and"
        f" the serving group listens there: the new group would fail its health wait."
    )
    # Only the classic kind has such a shared port: an application load balancer's groups each have their own target
    # group, with its own port (LoadBalancer.instance_port is None there).
    return (
        f"{start} A classic load balancer has one instance port per listener, shared by both groups, so the port"
        f" cannot change under traffic. Nothing was launched. Keep APP_PORT={old} for {env}; or accept an outage:"
        f" `inv setup --env {env}` moves the listener to port {new} (the serving group then stops serving), then"
        f" `inv deploy --env {env}`; or rebuild the environment with LOAD_BALANCER=application, where each group's"
        " target group carries its own port."
    )
