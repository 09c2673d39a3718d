"""`inv wait-health`: wait, bounded, until every instance of the new group is healthy, steadily; then promote
it. If it is not healthy in time (or on Ctrl-C), remove it: the serving group keeps serving, untouched."""

from __future__ import annotations

from typing import Any

from deploy.aws.groups import GROUP_HAND_TAG, environment_groups, tag_promoted
from deploy.aws.health import HealthPoll
from deploy.aws.history import PROMOTED, entry, record
from deploy.aws.images import HAND_TAG, describe_image
from deploy.aws.loadbalancers import HealthCheck
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import abort_new_group
from deploy.naming import made_by_tool, tags_of
from deploy.plans.health import steady_check
from deploy.plans.pending import pending_launch
from deploy.steps.bake_carnivore import hand_tags


def launched_by_hand(environment: Environment, group_name: str, image_id: str) -> bool:
    """Whether the group was launched with an image given by hand (--image-id, IMAGE_ID): this run's, or its tag."""
    group = next((g for g in environment_groups(environment) if g.name == group_name), None)
    return environment.given_image == image_id or (group is not None and bool(group.tags.get(GROUP_HAND_TAG)))


def given_by_hand(environment: Environment, image: dict[str, Any] | None) -> bool:
    """Whether the image counts as given by hand in the history: tagged so when it was given (--image-id), or not a
    deployment image this tool baked for this environment at all."""
    tags = tags_of(image) if image else {}
    names = environment.names
    baked_here = made_by_tool(tags, names.app, names.env) and tags.get("Role") == "carnivore"
    return environment.env in tags.get(HAND_TAG, "").split() or not baked_here


def promote(environment: Environment, group_name: str, image_id: str, action: str = "deploy") -> None:
    """Mark the group as the one that serves and its image as deployed, in AWS itself (an image given by hand also
    as never to be deleted, in the same request); record it in the account's history."""
    image = describe_image(environment, image_id)
    by_hand = launched_by_hand(environment, group_name, image_id)
    tag_promoted(environment, group_name, image_id, hand_tags(environment, image) if by_hand and image else None)
    environment.promoted = group_name  # this run's cleanup never retires it
    by_hand = by_hand or given_by_hand(environment, image)
    record(environment, entry(action, PROMOTED, image_id, group_name, environment.log.elapsed(), by_hand))


def wait_for_new_group(
    environment: Environment, timeout_s: int | None = None, keep_on_failure: bool = False, action: str = "deploy"
) -> str:
    """Wait for the group launch-asg left waiting (found in the account: launched by this tool, not promoted);
    promote it when healthy, remove it when not (or on Ctrl-C). ACTION: deploy or rollback, for the history."""
    pending = pending_launch(environment_groups(environment))
    if not pending:
        raise DeployError(f"No newly launched group is waiting in {environment.env}: run `inv launch-asg` first.")
    group_name = pending["group"]
    timeout = timeout_s or environment.config.health_timeout
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
        if not keep_on_failure:
            abort_new_group(environment, pending, reason="interrupted", action=action)
        raise
    if not healthy:
        what = "detached and kept for debugging (--keep-on-failure)" if keep_on_failure else "removed"
        if keep_on_failure:
            # Its instances stay up to be inspected, but none of them may serve the failed release.
            environment.load_balancer.detach_group(group_name)
        else:
            abort_new_group(environment, pending, reason="unhealthy", action=action)
        raise DeployError(
            f"The new group {group_name} was not healthy within {timeout}s ({status.strip()}). It was {what};"
            " the previous group keeps serving, untouched."
        )
    promote(environment, group_name, pending["image_id"], action)
    environment.say(f"  {group_name} is healthy and serving")
    return group_name
