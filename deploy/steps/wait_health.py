"""`inv wait-health`: wait, bounded, until every instance of the new group is healthy, steadily; then promote
it. If it is not healthy in time (or on Ctrl-C), remove it: the serving group keeps serving, untouched."""

from __future__ import annotations

from deploy.aws.groups import describe_group, tag_promoted
from deploy.aws.health import group_health
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import abort_new_group
from deploy.plans.health import steady_check
from deploy.state import PENDING, SERVING


def promote(environment: Environment, group_name: str, image_id: str) -> None:
    """Mark the group as the one that serves and its image as deployed, in AWS itself; then locally."""
    tag_promoted(environment, group_name, image_id)
    environment.state.put(SERVING, {"group": group_name, "image_id": image_id})
    environment.state.put(PENDING, None)


def wait_for_new_group(environment: Environment, timeout_s: int | None = None, keep_on_failure: bool = False) -> str:
    """Wait for the group launch-asg recorded; promote it when healthy, remove it when not (or on Ctrl-C)."""
    pending = environment.state.get(PENDING)
    if not pending:
        raise DeployError(f"No newly launched group is waiting in {environment.env}: run `inv launch-asg` first.")
    group_name = pending["group"]
    if describe_group(environment, group_name) is None:
        environment.state.put(PENDING, None)
        raise DeployError(
            f"The recorded new group {group_name} no longer exists; launch another with `inv launch-asg`."
        )
    timeout = timeout_s or environment.config.health_timeout
    environment.say(f"  waiting up to {timeout}s for {group_name}")
    try:
        healthy, status = environment.waiter(timeout).until(
            steady_check(lambda: group_health(environment, group_name)), environment.log.progress
        )
        environment.log.end_progress()
    except BaseException:
        environment.log.end_progress()
        if not keep_on_failure:
            abort_new_group(environment, pending, reason="interrupted")
        raise
    if not healthy:
        what = "detached and kept for debugging (--keep-on-failure)" if keep_on_failure else "removed"
        if keep_on_failure:
            # Its instances stay up to be inspected, but none of them may serve the failed release.
            environment.load_balancer.detach_group(group_name)
        else:
            abort_new_group(environment, pending, reason="unhealthy")
        raise DeployError(
            f"The new group {group_name} was not healthy within {timeout}s ({status.strip()}). It was {what};"
            " the previous group keeps serving, untouched."
        )
    promote(environment, group_name, pending["image_id"])
    environment.say(f"  {group_name} is healthy and serving")
    return group_name
