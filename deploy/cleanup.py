"""`inv cleanup`: retire every outdated group of the environment, then templates, configurations and images.

A group is retired gracefully: detached from the load balancer (which drains its connections),
scaled to 0, its instances awaited until terminated, then deleted. Nothing is touched unless the
serving group is fully healthy, and no image that a remaining group or template uses is deleted.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from botocore.exceptions import ClientError

from deploy.aws.clients import collect, error_code
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.groups import (
    DEPLOYED_TAG,
    PENDING,
    Group,
    delete_launch_template,
    describe_group,
    environment_groups,
    outdated_groups,
    serving_group,
)
from deploy.health import Waiter, group_health
from deploy.images import delete_image, deployment_images, images_used_elsewhere
from deploy.naming import MANAGED_BY, tag_value

RETIRE_TIMEOUT_S = 900  # connection draining is 300 s; termination takes a few minutes more
MAX_PARALLEL_RETIREMENTS = 4
SAFE_POINT_TIMEOUT_S = 60  # an interrupted retirement waits at most this long for its threads


def images_to_delete(
    images: list[dict[str, Any]], in_use: set[str], protected: set[str], retain: int = 0
) -> list[dict[str, Any]]:
    """Pure: the deployment images that may go; never one in use or protected.

    The RETAIN most recently deployed of the others stay, so that a rollback can launch them again;
    an image that was never deployed (its deploy failed) is not worth retaining.
    """
    candidates = [image for image in images if image["ImageId"] not in in_use | protected]
    deployed = sorted(
        (image for image in candidates if tag_value(image, DEPLOYED_TAG)),
        key=lambda image: tag_value(image, DEPLOYED_TAG),
        reverse=True,
    )
    kept = {image["ImageId"] for image in deployed[:retain]}
    return [image for image in candidates if image["ImageId"] not in kept]


class RetirementStopped(DeployError):
    """An interrupted retirement, stopped at a safe point: `inv cleanup` finishes it."""


def _checkpoint(stop: threading.Event | None, group: Group, done: str) -> None:
    if stop is not None and stop.is_set():
        raise RetirementStopped(f"{group.name}: stopped after {done}; re-run `inv cleanup` to finish.")


def retire_group(
    environment: Environment, group: Group, timeout_s: float = RETIRE_TIMEOUT_S, stop: threading.Event | None = None
) -> None:
    """Detach (the load balancer drains), scale to 0, wait until the instances are gone, delete.

    Every phase is safe to repeat, so a group half-retired by an interrupted or crashed run is
    finished by the next one. STOP, when set, ends the retirement at the next safe point.
    """
    autoscaling = environment.aws.autoscaling
    balancer = environment.load_balancer
    poll = float(environment.config.poll_seconds)  # type: ignore[arg-type]
    say = environment.say
    if not balancer.group_detached(group.name):
        say(f"  retiring {group.name}: detaching from {balancer.name} (connections drain)")
        balancer.detach_group(group.name)
    detached, _ = Waiter(timeout_s, poll, stop=stop).until(
        lambda: (balancer.group_detached(group.name), ""), lambda _: None
    )
    _checkpoint(stop, group, "detaching (it no longer serves)")
    if not detached:
        raise DeployError(
            f"{group.name} was still draining from {balancer.name} after {timeout_s:.0f}s; re-run cleanup."
        )
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=group.name, MinSize=0, MaxSize=0, DesiredCapacity=0)

    def instances_gone() -> tuple[bool, str]:
        raw = describe_group(environment, group.name, include_deleting=True)
        left = len(raw.get("Instances", [])) if raw else 0
        return left == 0, f"  {group.name}: {left} instances left"

    gone, status = Waiter(timeout_s, poll, stop=stop).until(instances_gone, lambda _: None)
    _checkpoint(stop, group, "scaling to 0")
    if not gone:
        raise DeployError(f"{status.strip()} after {timeout_s:.0f}s of scaling down; re-run cleanup.")
    _delete_when_idle(environment, group, timeout_s, poll, stop)
    say(f"  retired {group.name}")


def _delete_when_idle(
    environment: Environment, group: Group, timeout_s: float, poll: float, stop: threading.Event | None
) -> None:
    """Delete the emptied group; AWS refuses while its last scaling activity runs, so retry, bounded."""

    def deleted() -> tuple[bool, str]:
        try:
            environment.aws.autoscaling.delete_auto_scaling_group(AutoScalingGroupName=group.name)
            return True, ""
        except ClientError as error:
            if error_code(error) in ("ScalingActivityInProgress", "ResourceInUse"):
                return False, f"  {group.name}: {error_code(error)}"
            raise

    done, status = Waiter(timeout_s, poll, stop=stop).until(deleted, lambda _: None)
    if not done:
        _checkpoint(stop, group, "scaling to 0")
        raise DeployError(f"{status.strip()} for {timeout_s:.0f}s; re-run cleanup.")


def retire_all(environment: Environment, groups: list[Group]) -> None:
    """Retire several groups at once; on Ctrl-C/SIGTERM each stops at its next safe point, then re-raise."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL_RETIREMENTS)
    futures = [pool.submit(retire_group, environment, group, stop=stop) for group in groups]
    try:
        errors = [str(error) for error in (future.exception() for future in futures) if error is not None]
    except KeyboardInterrupt:
        stop.set()
        environment.say("  interrupted: each retirement stops at its next safe point; `inv cleanup` finishes them")
        wait(futures, timeout=SAFE_POINT_TIMEOUT_S)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if errors:
        raise DeployError("Retirement incomplete: " + "; ".join(errors))


def launch_templates(environment: Environment) -> list[str]:
    names = environment.names
    filters = [
        {"Name": "tag:ManagedBy", "Values": [MANAGED_BY]},
        {"Name": "tag:App", "Values": [names.app]},
        {"Name": "tag:Env", "Values": [names.env]},
    ]
    found = collect(environment.aws.ec2, "describe_launch_templates", "LaunchTemplates", Filters=filters)
    return sorted(
        t["LaunchTemplateName"] for t in found if names.owns(t["LaunchTemplateName"], names.launch_template_prefix)
    )


def launch_configurations(environment: Environment) -> list[dict[str, Any]]:
    """The original scripts' lc-NAME-* configurations (AWS offers no server-side filter by name prefix)."""
    names = environment.names
    found = collect(environment.aws.autoscaling, "describe_launch_configurations", "LaunchConfigurations")
    return [lc for lc in found if names.owns(lc["LaunchConfigurationName"], names.launch_configuration_prefix)]


def template_image(environment: Environment, name: str) -> str | None:
    versions = environment.aws.ec2.describe_launch_template_versions(LaunchTemplateName=name, Versions=["$Latest"])
    data = (
        versions["LaunchTemplateVersions"][0].get("LaunchTemplateData", {})
        if versions["LaunchTemplateVersions"]
        else {}
    )
    return data.get("ImageId")


def retire_outdated(environment: Environment, keep_images: bool | None = None) -> list[str]:
    """Retire every group but the serving (and a pending) one; return the names of retired groups.

    KEEP_IMAGES None follows CLEANUP from the env file.
    """
    if keep_images is None:
        keep_images = not environment.config.cleanup
    state = environment.state
    groups = environment_groups(environment)
    # Holding the deploy lock, no other run is under way: a group never promoted is a leftover.
    serving = serving_group(groups)
    keep = {serving.name} if serving else set()
    outdated = outdated_groups(groups, keep)
    if outdated and serving is not None:
        health = group_health(environment, serving.name)
        if not health.done:
            raise DeployError(
                f"Not retiring anything: the serving group {serving.name} is not fully healthy"
                f" ({health.line().strip()})."
            )
    if outdated:
        environment.say(
            f"  outdated: {', '.join(g.name for g in outdated)}; serving: {serving.name if serving else 'none'}"
        )
        retire_all(environment, outdated)
    else:
        environment.say("  no outdated groups")

    remaining = [g for g in groups if g.name in keep]
    used_templates = {g.launch_template for g in remaining if g.launch_template}
    used_configurations = {g.launch_configuration for g in remaining if g.launch_configuration}
    state.put(PENDING, None)
    for name in launch_templates(environment):
        if name not in used_templates:
            delete_launch_template(environment, name)
            environment.say(f"  deleted launch template {name}")
    in_use = {image for image in (template_image(environment, name) for name in used_templates) if image}
    for configuration in launch_configurations(environment):
        if configuration["LaunchConfigurationName"] in used_configurations:
            in_use.add(configuration["ImageId"])
            continue
        environment.aws.autoscaling.delete_launch_configuration(
            LaunchConfigurationName=configuration["LaunchConfigurationName"]
        )
        environment.say(f"  deleted launch configuration {configuration['LaunchConfigurationName']}")

    if keep_images:
        environment.say("  kept every image (--no-cleanup / CLEANUP=no)")
    else:
        in_use |= {group.image_id for group in remaining if group.image_id}
        protected = set(state.data.get("protected_images", []))
        retain = int(environment.config.retain_images)  # type: ignore[arg-type]
        doomed = images_to_delete(deployment_images(environment), in_use, protected, retain)
        # An image promoted elsewhere (`--image-id` in another environment) stays while anything runs it.
        elsewhere = images_used_elsewhere(environment, [image["ImageId"] for image in doomed])
        for image in doomed:
            if image["ImageId"] in elsewhere:
                environment.say(f"  kept image {image['ImageId']}: another environment still uses it")
                continue
            delete_image(environment, image)
            environment.say(f"  deregistered outdated image {image['ImageId']} and deleted its snapshots")
    return [group.name for group in outdated]
