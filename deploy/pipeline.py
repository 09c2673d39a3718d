"""The deploy as a whole: which steps a chain may skip, and the end of a deploy."""

from __future__ import annotations

from typing import Any

from deploy.cleanup import retire_outdated
from deploy.config import load_config
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.groups import SERVING
from deploy.health import group_health


def output_given(task_name: str, flags: dict[str, Any]) -> bool:
    """Whether a step's output is given up front, so that its prerequisites need not run.

    Only an image given by --image-id (or IMAGE_ID) qualifies: nothing needs building or baking then.
    """
    if task_name != "bake_carnivore":
        return False
    if flags.get("image_id"):
        return True
    try:
        return bool(load_config(flags.get("env"))["IMAGE_ID"])
    except DeployError:
        return False  # the task itself reports the configuration error


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
        "url": f"http://{environment.names.host}/",
        "logs": environment.log.relative_dir(),
    }
    environment.say(
        f"deployed {summary['image']} as {group}: {health.ready}/{health.desired} instances healthy;"
        f" retired {len(retired)} group(s). {summary['url']}  Logs: {summary['logs']}"
    )
    return summary
