"""The deploy as a whole: which steps a chain may skip, and the end of a deploy."""

from __future__ import annotations

from typing import Any

from deploy.cleanup import retire_outdated
from deploy.config import load_config
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.groups import DEPLOYED_TAG, SERVING, environment_groups, launch_group, serving_group
from deploy.health import group_health, wait_for_new_group
from deploy.images import deployment_images, require_image
from deploy.naming import tag_value
from deploy.views.traffic import service_url


def output_given(task_name: str, flags: dict[str, Any]) -> bool:
    """Whether a step's output is given up front, so that its prerequisites need not run.

    Only an image given by --image-id (or IMAGE_ID) qualifies: nothing needs building or baking then.
    A dry run (--dry-run) prunes the whole chain: the task prints the plan of every step instead.
    """
    if flags.get("dry_run"):
        return True
    if task_name != "bake_carnivore":
        return False
    if flags.get("image_id"):
        return True
    try:
        return bool(load_config(flags.get("env")).image_id)
    except DeployError:
        return False  # the task itself reports the configuration error


def require_setup(environment: Environment) -> Environment:
    """Before a bake: refuse an environment whose setup never ran (no load balancer), so that a deploy
    that could never launch leaves no image behind: every input is checked before the first write."""
    environment.load_balancer.require()
    return environment


def finish_deploy(environment: Environment, keep_images: bool | None = None) -> dict[str, Any]:
    """Retire what the new group replaced, then sum the deploy up (KEEP_IMAGES None: as CLEANUP says)."""
    retired = retire_outdated(environment, keep_images=keep_images)
    serving = environment.state.get(SERVING) or {}
    group = serving.get("group")
    if not group:
        raise DeployError("No serving group is recorded: the deploy did not complete.")
    health = group_health(environment, group)
    summary = {
        "image": serving.get("image_id"),
        "group": group,
        "instances": health.ready,
        "retired": retired,
        "url": service_url(environment),
        "logs": environment.log.relative_dir(),
        "seconds": round(environment.log.elapsed(), 1),
    }
    environment.say(
        f"deployed {summary['image']} as {group}: {health.ready}/{health.desired} instances healthy;"
        f" retired {len(retired)} group(s). {summary['url']}  Logs: {summary['logs']}"
    )
    environment.say(f"  total time {summary['seconds']:.1f}s")
    return summary


def rollback_target(images: list[dict[str, Any]], serving_image: str | None) -> str | None:
    """Pure: the most recently deployed image other than the one serving now."""
    deployed = [
        (tag_value(image, DEPLOYED_TAG), image["ImageId"])
        for image in images
        if tag_value(image, DEPLOYED_TAG) and image["ImageId"] != serving_image
    ]
    return max(deployed)[1] if deployed else None


def rollback(environment: Environment, to: str | None = None, timeout_s: int | None = None) -> dict[str, Any]:
    """Put an earlier image back through the same zero-downtime path, with no build and no bake."""
    serving = serving_group(environment_groups(environment))
    serving_image = serving.image_id if serving else None
    target = to or rollback_target(deployment_images(environment), serving_image)
    if target is None:
        retain = environment.config.retain_images
        raise DeployError(
            f"Nothing to roll back to: no earlier deployed image of {environment.env} is retained"
            f" (RETAIN_IMAGES={retain}). Pass one with --to ami-…."
        )
    if target == serving_image:
        raise DeployError(f"{target} is the image serving now; nothing to roll back.")
    require_image(environment, target, "Rollback image")
    environment.say(f"  rolling back from {serving_image or 'nothing'} to {target}")
    launch_group(environment, image_id=target)
    wait_for_new_group(environment, timeout_s)
    return finish_deploy(environment)


def unlock(environment: Environment) -> None:
    holder = environment.lock.force_unlock()
    if holder is None:
        environment.say(f"  no deploy lock is held on {environment.env}")
    else:
        environment.say(
            f"warning: removed the deploy lock of {environment.env} held by {holder.describe()}."
            " If that run is still going, it is no longer protected against a second deploy."
        )
