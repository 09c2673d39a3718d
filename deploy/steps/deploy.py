"""`inv deploy`: the whole chain (build-app, copy-over, bake-primal, bake-carnivore, launch-asg, wait-health)
runs as pre-tasks (deploy/chain.py); this module holds what belongs to the deploy as a whole: its end (retire
what the new group replaced, sum up), and its dry run, which asks every step's own decision function what
it would do now."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from deploy.aws.groups import environment_groups
from deploy.aws.health import last_health
from deploy.aws.images import CARNIVORE, require_image
from deploy.aws.instances import require_instance_type
from deploy.aws.network import find_security_group, resolve_network
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.localcloud.seed import seed_base_image
from deploy.plans.bake import BAKE, GIVEN
from deploy.plans.cleanup import plan_cleanup
from deploy.plans.groups import serving_group
from deploy.plans.model import Group
from deploy.steps.bake_carnivore import given_image
from deploy.steps.bake_primal import decide_primal
from deploy.steps.baking import packer_builder
from deploy.steps.cleanup import cleanup, plan_lines, read_cleanup_facts, sweeps_leftovers
from deploy.steps.launch_asg import instance_security_group, read_launch_plan
from deploy.steps.staging import staging_root
from deploy.views.traffic import service_url


def require_setup(environment: Environment) -> Environment:
    """Before a bake: refuse an environment whose setup never ran (no load balancer), so that a deploy
    that could never launch leaves no image behind: every input is checked before the first write."""
    environment.load_balancer.require()
    return environment


def finish_deploy(
    environment: Environment, keep_images: bool | None = None, sweep: bool | None = None
) -> dict[str, Any]:
    """Retire what the new group replaced, then sum the deploy up (KEEP_IMAGES None: as CLEANUP says). SWEEP: look
    for crashed runs' leftovers too (None: when this run baked, i.e. was given no image)."""
    # The group this run promoted (wait-health keeps it in memory); a finish run alone: the one that serves.
    groups = environment_groups(environment)
    promoted = environment.promoted
    serving = next((g for g in groups if g.name == promoted), None) if promoted else serving_group(groups)
    if serving is None:
        raise DeployError("No group serves: the deploy did not complete.")
    group = serving.name
    # Never the group just promoted; crashed runs' leftovers too when this run baked (sweeps_leftovers).
    sweep = sweeps_leftovers(environment.given_image) if sweep is None else sweep
    retired = cleanup(environment, keep_images=keep_images, pinned=group, sweep=sweep)
    health = last_health(environment, group)  # as wait-health's last poll found it (measured now if this run did not)
    summary = {
        "image": serving.image_id,
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


def _bake_lines(environment: Environment, primal_id: str | None) -> list[str]:
    """bake-primal's decision, then build-app, copy-over and bake-carnivore as far as they can be known."""
    config = environment.config
    try:
        primal = decide_primal(environment, primal_id)
    except DeployError:
        if primal_id or config.primal_id or not config.local_cloud:
            raise  # a bad given image fails the plan as it fails the run
        primal = None  # SOURCE_AMI is missing: bake-primal seeds it into the embedded cloud
    builder = packer_builder(environment)
    if primal is None:
        lines = seed_base_image(config, environment.aws.ec2, dry_run=True)[1]
        lines.append(f"bake-primal: would bake a primal image with Packer from {config.source_ami}")
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
    recorded = (environment.state.get(CARNIVORE) or {}).get("image_id")
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
    timeout_s: int | None = None,
    keep_on_failure: bool = False,
) -> list[str]:
    """`inv deploy --dry-run` (and `inv rollback --dry-run`): every step of the chain, in order, as it would run
    now, each from the decision function the step itself uses."""
    config = environment.config
    lines: list[str] = []
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
    bakes = [index for index, line in enumerate(lines) if ": would bake " in line]
    bake_group = environment.names.bake_security_group
    if bakes and find_security_group(environment, vpc_id, bake_group) is None:  # read with the others: no request
        step = lines[bakes[0]].split(":", 1)[0]  # made by the first bake that runs
        lines.insert(bakes[0], f"{step}: would create security group {bake_group} (Packer's build instances)")
    launch = read_launch_plan(environment, image)
    new_group = Group(name=launch.group, launch_template=launch.launch_template, image_id=image)
    if launch.reused:
        lines.append(f"launch-asg: skip, {launch.group} with {image} was launched earlier: it is the new group")
    else:
        leftover = " (left over by an earlier unfinished run)"
        lines += [f"launch-asg: would {action.line()}{leftover}" for action in launch.remove_first]
        lines.append(
            f"launch-asg: would create launch template {launch.launch_template} ({image or 'the new image'},"
            f" IMDSv2 required, encrypted) and group {launch.group}: {config.desired_capacity}"
            f" x {config.instance_type} behind {environment.load_balancer.name}"
        )
    otherwise = "detach it and keep it for debugging" if keep_on_failure else "remove it"
    lines.append(
        f"wait-health: would wait up to {timeout_s or config.health_timeout}s for {config.desired_capacity}/"
        f"{config.desired_capacity} healthy, then promote {launch.group}; if not healthy in time, {otherwise}"
    )
    facts = read_cleanup_facts(environment, keep_images, new_group=new_group, sweep=sweeps_leftovers(image))
    # launch-asg removes the leftover before the cleanup runs: the cleanup will not find it.
    removed = {action.target for action in launch.remove_first}
    facts = replace(
        facts,
        groups=[group for group in facts.groups if group.name not in removed],
        templates=[name for name in facts.templates if name not in removed],
    )
    lines += [f"cleanup: {line}" for line in plan_lines(plan_cleanup(facts))]
    return lines
