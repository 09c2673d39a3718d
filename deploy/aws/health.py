"""A group's health as the three places that know it report it: the group, EC2 and the load balancer."""

from __future__ import annotations

from deploy.aws.groups import require_group
from deploy.aws.instances import instance_states
from deploy.environment import Environment
from deploy.plans.health import GroupHealth, assess


def group_health(environment: Environment, group_name: str) -> GroupHealth:
    raw = require_group(environment, group_name)
    ids = [i["InstanceId"] for i in raw.get("Instances", [])]
    return assess(raw, instance_states(environment, ids), environment.load_balancer.serving_states(ids))
