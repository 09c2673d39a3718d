"""`inv wait-health`: wait, bounded, until every instance of the new group is healthy, steadily; then promote
it. If it is not healthy in time (or on Ctrl-C), remove it: the serving group keeps serving, untouched."""

from __future__ import annotations

from deploy.aws.groups import describe_group, environment_groups, tag_promoted
from deploy.aws.health import group_health
from deploy.aws.history import PROMOTED, entry, record
from deploy.aws.images import HAND_TAG, describe_image
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import abort_new_group
from deploy.naming import made_by_tool, tags_of
from deploy.plans.health import steady_check
from deploy.plans.pending import pending_launch


def given_by_hand(environment: Environment, image_id: str) -> bool:
    """Whether the image was given by hand: tagged so when it was given (--image-id), or not a deployment image
    this tool baked for this environment at all."""
    image = describe_image(environment, image_id)
    tags = tags_of(image) if image else {}
    names = environment.names
    baked_here = made_by_tool(tags, names.app, names.env) and tags.get("Role") == "carnivore"
    return environment.env in tags.get(HAND_TAG, "").split() or not baked_here


def promote(environment: Environment, group_name: str, image_id: str, action: str = "deploy") -> None:
    """Mark the group as the one that serves and its image as deployed, in AWS itself; record it in the
    account's history (an image given by hand is marked so there: never deleted, from any machine)."""
    tag_promoted(environment, group_name, image_id)
    environment.promoted = group_name  # this run's cleanup never retires it
    by_hand = given_by_hand(environment, image_id)
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
    if describe_group(environment, group_name) is None:
        raise DeployError(f"The new group {group_name} no longer exists; launch another with `inv launch-asg`.")
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
