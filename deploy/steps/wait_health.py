"""`inv wait-health`: wait, bounded, until every instance of the new group is healthy, steadily (shift-traffic then
moves the requests to it and promotes it). If it is not healthy in time (or on Ctrl-C), remove it: the serving group
keeps serving, untouched."""

from __future__ import annotations

from deploy.aws.groups import environment_groups
from deploy.aws.health import HealthPoll
from deploy.aws.loadbalancers import HealthCheck
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import abort_new_group
from deploy.plans.health import steady_check
from deploy.plans.pending import Pending, pending_launch
from deploy.plans.stages import DEPLOY, HealthWait, Made, Request
from deploy.steps.shift_traffic import promote, shift_traffic

__all__ = ["promote"]  # it promoted before the traffic stage existed: callers still find it here


def decide_health(environment: Environment, request: Request, made: Made) -> HealthWait:
    """The group launch-asg left waiting (a dry run's: the one it would launch; a run's: found in the account,
    launched by this tool and not promoted), the bound of the wait, and what happens if it is not healthy."""
    config = environment.config
    if made.planned:
        group, template, image = made.group or "", made.launch_template or "", made.image
    else:
        pending = pending_launch(environment_groups(environment))
        if not pending:
            raise DeployError(f"No newly launched group is waiting in {environment.env}: run `inv launch-asg` first.")
        group, template, image = pending.group, pending.launch_template or "", pending.image_id
    return HealthWait(
        group=group,
        launch_template=template,
        image=image,
        timeout_s=request.timeout_s or config.health_timeout,
        desired=config.desired_capacity,
        keep_on_failure=request.keep_on_failure,
        action=request.action,
    )


def act_health(environment: Environment, decision: HealthWait, made: Made) -> Made:
    return made.with_(healthy=carry_out_health(environment, decision))


def carry_out_health(environment: Environment, decision: HealthWait) -> str:
    """Wait for the group; the group when healthy; remove it when not (or on Ctrl-C)."""
    group_name, timeout, action = decision.group, decision.timeout_s, decision.action
    pending = Pending(group_name, decision.launch_template or None, decision.image)
    environment.say(f"  waiting up to {timeout}s for {group_name}")
    # No instance is InService sooner than the load balancer's healthy threshold x interval after it registers:
    # the first poll waits that long (a poll before could only say "not yet").
    check = HealthCheck(path=environment.config.health_check_path)
    first_poll = environment.aws_seconds(check.healthy * check.interval)
    try:
        healthy, status = environment.waiter(timeout).until(
            steady_check(HealthPoll(environment, group_name)), environment.log.progress, first_after=first_poll
        )
        environment.log.end_progress()
    except BaseException:
        environment.log.end_progress()
        if not decision.keep_on_failure:
            abort_new_group(environment, pending, reason="interrupted", action=action)
        raise
    if not healthy:
        what = "detached and kept for debugging (--keep-on-failure)" if decision.keep_on_failure else "removed"
        if decision.keep_on_failure:
            # Its instances stay up to be inspected, but none of them may serve the failed release.
            environment.load_balancer.detach_group(group_name)
        else:
            abort_new_group(environment, pending, reason="unhealthy", action=action)
        raise DeployError(
            f"The new group {group_name} was not healthy within {timeout}s ({status.strip()}). It was {what};"
            " the previous group keeps serving, untouched."
        )
    environment.say(f"  {group_name} is healthy")
    return group_name


def wait_for_new_group(
    environment: Environment, timeout_s: int | None = None, keep_on_failure: bool = False, action: str = DEPLOY
) -> str:
    """The stage alone and the traffic stage after it: wait for the group launch-asg left waiting (found in the
    account), then move the requests to it (TRAFFIC_STEPS) and promote it; the promoted group."""
    request = Request(timeout_s=timeout_s, keep_on_failure=keep_on_failure, action=action)
    carry_out_health(environment, decide_health(environment, request, Made()))
    return shift_traffic(environment, action)
