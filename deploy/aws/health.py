"""A group's health as the two places that know it report it: the group and the load balancer.

A poll sends at most two requests: the group (which instances it counts InService), then the load balancer (whether
those serve). Once the group counts all its desired instances InService, later polls ask the load balancer alone,
until it no longer knows one of them (the group replaced it): then the group is read again.
"""

from __future__ import annotations

from deploy.aws.context import AwsContext
from deploy.aws.groups import require_group
from deploy.facts import GROUP_HEALTH
from deploy.plans.health import GroupHealth, assess, in_service_members
from deploy.plans.model import IN_SERVICE, Group

UNKNOWN_THERE = ("Unknown", "unused", "draining")  # not (or no longer) a target there: the group may have replaced it


def group_health(environment: AwsContext, group_name: str) -> GroupHealth:
    """The group's health now: the group, then the load balancer for the instances it counts InService."""
    return HealthPoll(environment, group_name)()


def last_health(environment: AwsContext, group_name: str) -> GroupHealth:
    """The group's health as this run's last poll of it measured it, else measured now."""
    known: dict[str, GroupHealth] = environment.facts.get(GROUP_HEALTH) or {}
    return known.get(group_name) or group_health(environment, group_name)


class HealthPoll:
    """One group's health, measured at each call (a poll) with at most two requests."""

    def __init__(self, environment: AwsContext, group_name: str) -> None:
        self.environment = environment
        self.group_name = group_name
        self.group: Group | None = None  # the group as last read, while it counts every instance InService

    def __call__(self) -> GroupHealth:
        balancer = self.environment.load_balancer
        group = self.group or Group.from_aws(require_group(self.environment, self.group_name))
        members = in_service_members(group)
        states = balancer.serving_states(members) if members else {}
        health = assess(group, states)
        # Every desired instance InService at the group: next time the load balancer alone, while it knows them all.
        known_there = all(states.get(member) not in (None, *UNKNOWN_THERE) for member in members)
        self.group = group if health.healthy_in_group >= health.desired and known_there else None
        known: dict[str, GroupHealth] = dict(self.environment.facts.get(GROUP_HEALTH) or {})
        self.environment.facts.put(GROUP_HEALTH, {**known, self.group_name: health})
        return health


def has_served(environment: AwsContext, group: Group | None) -> bool:
    """Whether any instance of the group is InService at the load balancer: it takes live requests."""
    if group is None or not environment.load_balancer.exists():
        return False
    instance_ids = list(group.instance_ids)
    return IN_SERVICE in environment.load_balancer.serving_states(instance_ids).values()
