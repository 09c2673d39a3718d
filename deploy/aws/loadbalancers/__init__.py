"""Everything specific to the kind of load balancer, behind one interface (`LoadBalancer`).

Two kinds, chosen per environment by LOAD_BALANCER:

- `classic` (classic.py): the original scripts' classic load balancer `elb-NAME` (AWS's previous generation);
  groups attach by name and the load balancer reports instances InService/OutOfService.
- `application` (application.py): an Application Load Balancer `alb-NAME` with one target group `tg-NAME`;
  groups attach to the target group and targets report healthy/unhealthy/draining. Its listeners' pure
  helpers are in listeners.py.

base.py holds what both share. The steps (setup, launch, wait, retire, status, destroy) get their load balancer
from `load_balancer_for`, call the methods of `LoadBalancer` only and never branch on the kind. A load balancer
is handed what it needs of the configuration (`LoadBalancerSettings`) and where to say things; it reaches AWS
through the clients alone. An environment's kind never changes in place: a switch is refused with instructions
(`refuse_kind_switch`).
"""

from __future__ import annotations

from collections.abc import Callable

from deploy.aws.clients import Aws
from deploy.aws.converge import Changes
from deploy.aws.loadbalancers.application import ApplicationLoadBalancer
from deploy.aws.loadbalancers.base import (
    DRAINING_TIMEOUT_S,
    HealthCheck,
    LoadBalancer,
    LoadBalancerSettings,
)
from deploy.aws.loadbalancers.classic import ClassicLoadBalancer
from deploy.aws.loadbalancers.listeners import TLS_POLICY, actions_match, describe_actions, listener_matches
from deploy.config import Config
from deploy.naming import Names
from deploy.plans.model import IN_SERVICE

__all__ = [
    "DRAINING_TIMEOUT_S",
    "IN_SERVICE",
    "KINDS",
    "TLS_POLICY",
    "ApplicationLoadBalancer",
    "Changes",
    "ClassicLoadBalancer",
    "HealthCheck",
    "LoadBalancer",
    "LoadBalancerSettings",
    "actions_match",
    "describe_actions",
    "listener_matches",
    "load_balancer_for",
    "settings_for",
]

KINDS: dict[str, type[ClassicLoadBalancer] | type[ApplicationLoadBalancer]] = {
    ClassicLoadBalancer.kind: ClassicLoadBalancer,
    ApplicationLoadBalancer.kind: ApplicationLoadBalancer,
}


def settings_for(config: Config) -> LoadBalancerSettings:
    """What a load balancer needs of an environment's configuration."""
    return LoadBalancerSettings(
        kind=config.load_balancer,
        region=config.region,
        poll_seconds=config.poll_seconds,
        certificate_arn=config.certificate_arn,
        health=HealthCheck(path=config.health_check_path, port=config.app_port),
        kind_source=config.source_of("LOAD_BALANCER"),
        certificate_source=config.source_of("CERTIFICATE_ARN"),
    )


def load_balancer_for(aws: Aws, names: Names, config: Config, say: Callable[[str], None]) -> LoadBalancer:
    """The load balancer of the kind LOAD_BALANCER names (application unless an env file says classic).

    AWS: the run's clients. SAY: where its messages go (a warning about a certificate). The load balancers
    of the other kinds are built too, only to refuse a switch of kind.
    """
    settings = settings_for(config)
    others = [kind(aws, names, settings, say) for name, kind in KINDS.items() if name != settings.kind]
    return KINDS[settings.kind](aws, names, settings, say, others)
