"""A group's health as the three places that know it report it: the group, EC2 and the load balancer."""

from __future__ import annotations

from typing import Any

from deploy.aws.groups import require_group
from deploy.aws.instances import instance_states
from deploy.environment import Environment
from deploy.plans.health import GroupHealth, assess
from deploy.plans.model import IN_SERVICE, Group


def group_health(environment: Environment, group_name: str) -> GroupHealth:
    raw = require_group(environment, group_name)
    ids = [i["InstanceId"] for i in raw.get("Instances", [])]
    return assess(raw, instance_states(environment, ids), environment.load_balancer.serving_states(ids))


def has_served(environment: Environment, raw_group: dict[str, Any] | None) -> bool:
    """Whether any instance of the group is InService at the load balancer: it takes live requests."""
    if raw_group is None or not environment.load_balancer.exists():
        return False
    instance_ids = list(Group.from_aws(raw_group).instance_ids)
    return IN_SERVICE in environment.load_balancer.serving_states(instance_ids).values()
