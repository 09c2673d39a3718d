"""`inv deploy`: the whole chain (build-app, copy-over, bake-primal, bake-carnivore, launch-asg, wait-health)
runs as pre-tasks; this module holds what belongs to the deploy as a whole: which steps a chain may skip,
its end (retire what the new group replaced, sum up), and its dry run, which asks every step's own
decision function what it would do now."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from deploy.aws.groups import Group, environment_groups
from deploy.aws.health import group_health
from deploy.aws.images import require_image
from deploy.aws.instances import require_instance_type
from deploy.aws.network import resolve_network
from deploy.config import load_config
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.localcloud.seed import seed_plan
from deploy.plans.bake import BAKE, GIVEN
from deploy.plans.cleanup import plan_cleanup
from deploy.plans.groups import next_stamp, serving_group
from deploy.steps.bake_carnivore import given_image
from deploy.steps.bake_primal import decide_primal
from deploy.steps.baking import packer_builder
from deploy.steps.cleanup import cleanup, plan_lines, read_cleanup_facts
from deploy.steps.launch_asg import instance_security_group, leftover_launch, reuses_leftover
from deploy.steps.staging import staging_root


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
    retired = cleanup(environment, keep_images=keep_images)
    serving = serving_group(environment_groups(environment))
    if serving is None:
        raise DeployError("No group serves: the deploy did not complete.")
    group = serving.name
    health = group_health(environment, group)
    summary = {
        "image": serving.image_id,
        "group": group,
        "instances": health.ready,
        "retired": retired,
        "url": f"http://{environment.names.host}/",
        "logs": environment.log.relative_dir(),
        "seconds": round(environment.log.elapsed(), 1),
    }
    environment.say(
        f"deployed {summary['image']} as {group}: {health.ready}/{health.desired} instances healthy;"
        f" retired {len(retired)} group(s). {summary['url']}  Logs: {summary['logs']}"
    )
    environment.say(f"  total time {summary['seconds']:.1f}s")
    return summary


def _bake_lines(environment: Environment, primal_id: str | None) -> list[str]:
    """bake-primal's decision, then build-app, copy-over and bake-carnivore as far as they can be known."""
    config = environment.config
    try:
        primal = decide_primal(environment, primal_id)
    except DeployError:
        if not config.local_cloud:
            raise
        # The embedded cloud seeds SOURCE_AMI when a real run starts.
        primal = None
    builder = packer_builder(environment)
    if primal is None:
        lines = [f"bake-primal: would bake a primal image with Packer from {config.source_ami} (seeded at start)"]
    elif primal.action == GIVEN:
        lines = [f"bake-primal: skip, primal image {primal.image} is given"]
    elif primal.action == BAKE:
        lines = [f"bake-primal: would bake a primal image with Packer (-only={builder}) from {primal.source}"]
    else:
        lines = [f"bake-primal: skip, primal image {primal.image} was baked from {primal.source} by an earlier run"]
    command = config.build_command.replace("{env}", environment.env)
    lines.append(f"build-app: would run `{command}` in {config.app_dir}")
    folder = f"{staging_root(environment.env)}/RUN"
    lines.append(f"copy-over: would stage {', '.join(config.app_files)} and app.env into {folder}, this run's own")
    recorded = (environment.state.get("carnivore") or {}).get("image_id")
    known = primal is not None and primal.image is not None
    unless = f"; skipped if the app is unchanged since {recorded} was baked" if recorded and known else ""
    source = primal.image if primal is not None and primal.image else "the new primal image"
    lines.append(f"bake-carnivore: would bake the deployment image from {source} plus the staged app{unless}")
    return lines


def deploy_plan(
    environment: Environment,
    image_id: str | None = None,
    primal_id: str | None = None,
    keep_images: bool | None = None,
) -> list[str]:
    """`inv deploy --dry-run` (and `inv rollback --dry-run`): every step of the chain, in order, as it would run
    now, each from the decision function the step itself uses."""
    config = environment.config
    names = environment.names
    lines = seed_plan(environment.config, environment.aws.ec2, environment.aws.route53)
    require_instance_type(environment)  # the run checks it before its first bake: fail the plan the same way
    image = given_image(environment, image_id)
    if image:
        require_image(environment, image, "Image")
        lines.append(f"build-app, copy-over, bake-primal, bake-carnivore: skip, image {image} is given")
    else:
        lines += _bake_lines(environment, primal_id)
    if not environment.load_balancer.exists():
        raise DeployError(
            f"The deploy would fail at launch-asg: load balancer {environment.load_balancer.name} does not exist;"
            f" run `inv setup --env {environment.env}` first."
        )
    vpc_id, _ = resolve_network(environment)
    instance_security_group(environment, vpc_id)
    when = next_stamp(datetime.now(UTC), [group.name for group in environment_groups(environment)], names)
    new_group = Group(name=names.group(when), launch_template=names.launch_template(when), image_id=image)
    leftover = leftover_launch(environment)
    if leftover is not None and reuses_leftover(leftover, image):
        new_group = Group(name=leftover["group"], launch_template=leftover.get("launch_template"), image_id=image)
        lines.append(f"launch-asg: skip, {new_group.name} with {image} was launched earlier: it is the new group")
    else:
        if leftover is not None:
            lines.append(f"launch-asg: would remove {leftover['group']}, left over by an earlier unfinished run")
        lines.append(
            f"launch-asg: would create launch template {new_group.launch_template} ({image or 'the new image'},"
            f" IMDSv2 required, encrypted) and group {new_group.name}: {config.desired_capacity}"
            f" x {config.instance_type} behind {environment.load_balancer.name}"
        )
    lines.append(
        f"wait-health: would wait up to {config.health_timeout}s for {config.desired_capacity}/"
        f"{config.desired_capacity} healthy, then promote {new_group.name}; if not healthy in time, remove it"
    )
    facts = read_cleanup_facts(environment, keep_images, new_group=new_group)
    if leftover is not None and not reuses_leftover(leftover, image):
        # launch-asg removes the leftover before the cleanup runs: the cleanup will not find it.
        facts = replace(
            facts,
            groups=[group for group in facts.groups if group.name != leftover["group"]],
            templates=[name for name in facts.templates if name != leftover.get("launch_template")],
        )
    lines += [f"cleanup: {line}" for line in plan_lines(plan_cleanup(facts))]
    return lines
