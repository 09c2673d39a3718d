"""Whether a group is healthy: at the group and at the load balancer.

EC2's own view adds nothing: Auto Scaling counts an instance InService only once it runs, and takes it out of
service as soon as it stops. Steadiness is the load balancer's healthy threshold (consecutive passed checks)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from deploy.plans.model import IN_SERVICE, Group

# All-healthy polls in a row before a new group is promoted. One: the load balancer counts an instance InService
# only after HealthyThreshold consecutive passed checks; a second poll would re-read what AWS already measured.
STEADY_POLLS = 1


@dataclass(frozen=True)
class GroupHealth:
    desired: int
    healthy_in_group: int
    in_service_at_lb: int

    @property
    def ready(self) -> int:
        return min(self.healthy_in_group, self.in_service_at_lb)

    @property
    def done(self) -> bool:
        return self.desired > 0 and self.ready >= self.desired

    def line(self) -> str:
        return (
            f"  {self.ready}/{self.desired} healthy"
            f" (group InService+Healthy {self.healthy_in_group}, InService at load balancer {self.in_service_at_lb})"
        )


def in_service_members(group: Group) -> list[str]:
    """The instances the group itself counts as InService and Healthy."""
    return [m.id for m in group.members if m.lifecycle == "InService" and m.health == "Healthy"]


def assess(group: Group, lb_states: dict[str, str]) -> GroupHealth:
    """How many of the group's instances are healthy at the group and at the load balancer."""
    ids = in_service_members(group)
    return GroupHealth(
        desired=group.desired,
        healthy_in_group=len(ids),
        in_service_at_lb=sum(1 for i in ids if lb_states.get(i) == IN_SERVICE),
    )


def steady_check(measure: Callable[[], GroupHealth], polls: int = STEADY_POLLS) -> Callable[[], tuple[bool, str]]:
    """Done only when every instance was healthy on POLLS consecutive polls, like a healthy threshold:
    a group that flaps right after launch is not promoted."""
    streak = 0

    def check() -> tuple[bool, str]:
        nonlocal streak
        health = measure()
        streak = streak + 1 if health.done else 0
        suffix = f" — steady {streak}/{polls}" if 0 < streak < polls else ""
        return streak >= polls, health.line() + suffix

    return check
