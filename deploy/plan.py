"""`--dry-run`: what setup, deploy and cleanup would create, change and delete, in order, changing nothing.

Belt and braces: a dry run opens the environment with AWS clients that refuse every operation but a
read (deploy/aws.py), and the plans below only read. Each plan is computed from the same comparisons
and decisions the real step makes (setup's ensure_* functions with dry_run, cleanup's pure choices),
so what a plan says is what the run would do, as far as it can be known before building anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from deploy.app import staging_dir
from deploy.cleanup import images_to_delete, launch_configurations, launch_templates, template_image
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.groups import (
    PENDING,
    Group,
    describe_group,
    environment_groups,
    instance_security_group,
    next_stamp,
    outdated_groups,
    serving_group,
)
from deploy.health import group_health
from deploy.images import (
    CARNIVORE,
    PACKER_DIR,
    PRIMAL,
    _recorded,
    deployment_images,
    files_digest,
    given_image,
    given_primal,
    packer_builder,
    require_image,
    require_instance_type,
    resolve_source_image,
)
from deploy.localcloud.seed import seed
from deploy.setup import resolve_network, run_setup

HEADER = "plan (dry run: nothing is created, changed or deleted)"


@dataclass(frozen=True)
class Retirement:
    """What a cleanup would retire, in the order it would: groups, templates, configurations, images."""

    serving: str | None
    groups: tuple[str, ...]
    launch_templates: tuple[str, ...]
    launch_configurations: tuple[str, ...]
    images: tuple[str, ...]
    keep_images: bool

    def lines(self) -> list[str]:
        lines = [f"would retire group {name} (detach, drain, scale to 0, delete)" for name in self.groups]
        lines += [f"would delete launch template {name}" for name in self.launch_templates]
        lines += [f"would delete launch configuration {name}" for name in self.launch_configurations]
        if self.keep_images:
            lines.append("would keep every image (--no-cleanup / CLEANUP=no)")
        lines += [f"would deregister image {image} and delete its snapshots" for image in self.images]
        return lines or ["nothing to retire"]


def plan_retirement(
    groups: list[Group],
    serving: Group | None,
    templates: list[str],
    template_images: dict[str, str | None],
    configurations: list[dict[str, Any]],
    images: list[dict[str, Any]],
    protected: set[str],
    retain: int,
    keep_images: bool,
) -> Retirement:
    """Pure: cleanup's decisions (deploy/cleanup.retire_outdated) over described state.

    SERVING stays (it may be a group not launched yet, when a deploy is planned); every other group
    goes, then the templates and configurations no remaining group uses, then the images nothing
    remaining uses, minus protected ones and the RETAIN most recently deployed (cleanup.images_to_delete).
    """
    keep = {serving.name} if serving else set()
    outdated = outdated_groups(groups, keep)
    remaining = [serving] if serving else []
    used_templates = {g.launch_template for g in remaining if g.launch_template}
    used_configurations = {g.launch_configuration for g in remaining if g.launch_configuration}
    in_use = {image for name in used_templates if (image := template_images.get(name))}
    doomed_configurations = []
    for configuration in configurations:
        if configuration["LaunchConfigurationName"] in used_configurations:
            in_use.add(configuration["ImageId"])
        else:
            doomed_configurations.append(configuration["LaunchConfigurationName"])
    doomed_images: list[str] = []
    if not keep_images:
        in_use |= {g.image_id for g in remaining if g.image_id}
        doomed_images = [image["ImageId"] for image in images_to_delete(images, in_use, protected, retain)]
    return Retirement(
        serving=serving.name if serving else None,
        groups=tuple(g.name for g in outdated),
        launch_templates=tuple(name for name in templates if name not in used_templates),
        launch_configurations=tuple(doomed_configurations),
        images=tuple(doomed_images),
        keep_images=keep_images,
    )


def _keep_images(environment: Environment, keep_images: bool | None) -> bool:
    return (not environment.config.cleanup) if keep_images is None else keep_images


def _retirement(environment: Environment, serving: Group | None, keep_images: bool) -> Retirement:
    groups = environment_groups(environment)
    templates = launch_templates(environment)
    used = {serving.launch_template} if serving and serving.launch_template else set()
    return plan_retirement(
        groups=[g for g in groups if not serving or g.name != serving.name],
        serving=serving,
        templates=templates,
        template_images={name: template_image(environment, name) for name in used if name in templates},
        configurations=launch_configurations(environment),
        images=[] if keep_images else deployment_images(environment),
        protected=set(environment.state.data.get("protected_images", [])),
        retain=int(environment.config.retain_images),  # type: ignore[arg-type]
        keep_images=keep_images,
    )


def cleanup_plan(environment: Environment, keep_images: bool | None = None) -> list[str]:
    """`inv cleanup --dry-run`: what retire_outdated would do now."""
    groups = environment_groups(environment)
    serving = serving_group(groups)
    retirement = _retirement(environment, serving, _keep_images(environment, keep_images))
    environment.say(f"  serving: {serving.name if serving else 'no group'}")
    if retirement.groups and serving is not None:
        health = group_health(environment, serving.name)
        if not health.done:
            return [
                f"would retire nothing: the serving group {serving.name} is not fully healthy ({health.line().strip()})"
            ]
    return retirement.lines()


def seed_plan(environment: Environment) -> list[str]:
    """What the embedded cloud's seed would create (a real run seeds it when it starts)."""
    if not environment.config.local_cloud:
        return []
    aws = environment.aws
    return seed(environment.config, aws.ec2, aws.route53, dry_run=True)


def setup_plan(environment: Environment) -> list[str]:
    """`inv setup --dry-run`: the seed of the embedded cloud, then setup's own comparisons with dry_run."""
    environment.say(HEADER)
    seeded = seed_plan(environment)
    for line in seeded:
        environment.say(f"  {line}")
    return seeded + run_setup(environment, dry_run=True)


def _primal_line(environment: Environment, primal_id: str | None) -> tuple[str, str | None]:
    """bake-primal's decision (deploy/images.bake_primal) and the primal image id, when known."""
    given = given_primal(environment, primal_id)
    if given:
        require_image(environment, given, "Primal image")
        return f"bake-primal: skip, primal image {given} is given", given
    try:
        source = resolve_source_image(environment)
    except DeployError:
        if not environment.config.local_cloud:
            raise
        name = environment.config.source_ami
        return f"bake-primal: would bake a primal image with Packer from {name} (seeded at start)", None
    inputs = {"source": source, "template": files_digest(sorted(PACKER_DIR.glob("**/primal*")))}
    recorded = _recorded(environment, PRIMAL, inputs)
    if recorded:
        return f"bake-primal: skip, primal image {recorded} was baked from {source} by an earlier run", recorded
    builder = packer_builder(environment)
    return f"bake-primal: would bake a primal image with Packer (-only={builder}) from {source}", None


def deploy_plan(
    environment: Environment,
    image_id: str | None = None,
    primal_id: str | None = None,
    keep_images: bool | None = None,
) -> list[str]:
    """`inv deploy --dry-run`: every step of the chain, in order, as it would run now."""
    config = environment.config
    names = environment.names
    lines = seed_plan(environment)
    require_instance_type(environment)  # the run checks it before its first bake: fail the plan the same way
    given = given_image(environment, image_id)
    image: str | None
    if given:
        require_image(environment, given, "Image")
        image = given
        lines.append(f"build-app, copy-over, bake-primal, bake-carnivore: skip, image {given} is given")
    else:
        primal_line, primal = _primal_line(environment, primal_id)
        lines.append(primal_line)
        command = str(config.build_command).replace("{env}", environment.env)
        lines.append(f"build-app: would run `{command}` in {config.app_dir}")
        patterns = ", ".join(config.app_files)  # type: ignore[arg-type]
        lines.append(f"copy-over: would stage {patterns} and app.env into {staging_dir()}")
        recorded = (environment.state.get(CARNIVORE) or {}).get("image_id")
        unless = f"; skipped if the app is unchanged since {recorded} was baked" if recorded and primal else ""
        lines.append(
            f"bake-carnivore: would bake the deployment image from {primal or 'the new primal image'}"
            f" plus the staged app{unless}"
        )
        image = None

    if not environment.load_balancer.exists():
        raise DeployError(
            f"The deploy would fail at launch-asg: load balancer {environment.load_balancer.name} does not exist;"
            f" run `inv setup --env {environment.env}` first."
        )
    vpc_id, _ = resolve_network(environment)
    instance_security_group(environment, vpc_id)
    existing = environment_groups(environment)
    when = next_stamp(datetime.now(UTC), [group.name for group in existing], names)
    new_group = Group(name=names.group(when), launch_template=names.launch_template(when), image_id=image)
    leftover = environment.state.get(PENDING)
    if leftover and describe_group(environment, leftover["group"]) is None:
        leftover = None
    if leftover and image and leftover.get("image_id") == image:
        new_group = Group(name=leftover["group"], launch_template=leftover.get("launch_template"), image_id=image)
        lines.append(f"launch-asg: skip, {new_group.name} with {image} was launched earlier: it is the new group")
    else:
        if leftover:
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
    retirement = _retirement(environment, new_group, _keep_images(environment, keep_images))
    lines += [f"cleanup: {line}" for line in retirement.lines()]
    return lines


def show(environment: Environment, lines: list[str]) -> list[str]:
    """Print a plan as numbered lines, in the order the run would act."""
    environment.say(HEADER)
    for number, line in enumerate(lines, start=1):
        environment.say(f"  {number:2d}. {line}")
    return lines
