"""`inv cleanup`: retire every outdated group of the environment, then templates, configurations and images.

A group is retired gracefully: detached from the load balancer (which drains its connections), checked drained
once the draining time is over, then deleted with its instances. Nothing is touched unless the serving group is fully
healthy, and no image that a remaining group or template uses, or another environment runs, is deleted.
The dry run prints exactly the plan (deploy/plans/cleanup.py) that the real run carries out.
"""

from __future__ import annotations

from dataclasses import replace

from deploy.aws.groups import environment_groups, launch_configurations, launch_templates, template_image
from deploy.aws.health import last_health
from deploy.aws.images import (
    PRIMAL,
    deployment_images,
    environment_images,
    images_run_by_instances,
    images_used_elsewhere,
)
from deploy.aws.leftovers import orphan_snapshots, packer_leftovers
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import carry_out
from deploy.plans.actions import Action
from deploy.plans.cleanup import CleanupFacts, plan_cleanup
from deploy.plans.groups import outdated_groups, serving_group
from deploy.plans.hand import protected
from deploy.plans.model import Group, Image, LaunchConfiguration
from deploy.plans.stages import plan_lines
from deploy.views.plan import show


def keeps_images(environment: Environment, keep_images: bool | None) -> bool:
    """--no-cleanup / --keep-images, else CLEANUP from the env file."""
    return (not environment.config.cleanup) if keep_images is None else keep_images


def protected_images(images: list[Image]) -> set[str]:
    """The images never to delete, read from the account: those tagged as given by hand (--image-id) to any
    environment. (The tag is written when a group of such an image is promoted, in the request that marks it
    deployed, before the history entry that says "by hand": every such entry has its tagged image.)"""
    return {image.id for image in images if protected(image.tags)}


def read_cleanup_facts(
    environment: Environment,
    keep_images: bool | None = None,
    new_group: Group | None = None,
    pinned: str | None = None,
    sweep: bool = True,
) -> CleanupFacts:
    """Read what the cleanup decides from. NEW_GROUP: a deploy's plan, where the group that will serve does not
    exist yet (it is promoted only once healthy, so its health is not asked). PINNED: the group this run just
    promoted, which serves whatever the order of the groups says. SWEEP (`inv cleanup`, the end of a deploy that
    baked): also look for what crashed runs left behind with no group to lead to it: launch templates and
    configurations no group uses, a bake's instance and key pair, snapshots of deleted images. Without it (a deploy
    of an image given by hand) only the groups it replaced go, with their templates, configurations and images."""
    groups = environment_groups(environment)
    serving = new_group or _pinned(groups, pinned) or serving_group(groups)
    keep = keeps_images(environment, keep_images)
    health = None
    if new_group is None and serving is not None and outdated_groups(groups, {serving.name}):
        health = last_health(environment, serving.name)
    used = serving.launch_template if serving else None
    images = [] if keep else [Image.from_aws(image) for image in deployment_images(environment)]
    primals = [] if keep else [Image.from_aws(image) for image in environment_images(environment, PRIMAL)]
    templates = launch_templates(environment) if sweep else sorted({g.launch_template or "" for g in groups} - {""})
    facts = CleanupFacts(
        groups=[group for group in groups if new_group is None or group.name != new_group.name],
        serving=serving,
        serving_health=health,
        templates=templates,
        # A group of this tool names its image in its tags; only one of the original scripts' needs its template read.
        template_images={used: template_image(environment, used)}
        if used and used in templates and serving is not None and not serving.image_id
        else {},
        configurations=[LaunchConfiguration.from_aws(raw) for raw in launch_configurations(environment)]
        if sweep
        else _configurations_of(groups),
        images=images,
        protected=protected_images(images),
        retain=environment.config.retain_images,
        keep_images=keep,
        pinned=pinned,
        primals=primals,
        primal_retain=environment.config.primal_retain,
        packer_leftovers=packer_leftovers(environment) if sweep else [],
        orphan_snapshots=orphan_snapshots(environment) if sweep else [],
    )
    return _with_uses(environment, facts)


def _configurations_of(groups: list[Group]) -> list[LaunchConfiguration]:
    """The launch configurations the groups name (their images unknown: none of them serves after a deploy)."""
    names = sorted({group.launch_configuration for group in groups if group.launch_configuration})
    return [LaunchConfiguration(name) for name in names]


def _with_uses(environment: Environment, facts: CleanupFacts) -> CleanupFacts:
    """FACTS with what uses the images the plan would delete: asked of AWS for those images only (a plan without
    uses deletes a superset of what the plan with them deletes), so a cleanup that deletes no image asks nothing."""
    candidates = {action.target for action in plan_cleanup(facts) if action.op == "delete-image"}
    if not candidates:
        return facts
    deployment = [image.id for image in facts.images if image.id in candidates]
    primal = [image.id for image in facts.primals if image.id in candidates]
    return replace(
        facts,
        used_elsewhere=images_used_elsewhere(environment, deployment),
        primals_in_use=images_run_by_instances(environment, primal) | images_used_elsewhere(environment, primal),
    )


def _pinned(groups: list[Group], pinned: str | None) -> Group | None:
    if pinned is None:
        return None
    found = next((group for group in groups if group.name == pinned), None)
    if found is None:
        raise DeployError(f"The group this run promoted, {pinned}, no longer exists: cleanup refused.")
    return found


def cleanup_plan(
    environment: Environment, keep_images: bool | None = None, pinned: str | None = None, sweep: bool = True
) -> list[Action]:
    facts = read_cleanup_facts(environment, keep_images, pinned=pinned, sweep=sweep)
    environment.say(f"  serving: {facts.serving.name if facts.serving else 'no group'}")
    return plan_cleanup(facts)


def cleanup(
    environment: Environment,
    keep_images: bool | None = None,
    dry_run: bool = False,
    pinned: str | None = None,
    sweep: bool = True,
) -> list[str]:
    """Plan the cleanup; print it (DRY_RUN) or carry it out. Return the names of the groups it retires.
    PINNED: the group this run just promoted (a deploy's or rollback's end), kept as the serving one. SWEEP: look
    for what crashed runs left too (`inv cleanup`; see read_cleanup_facts)."""
    actions = cleanup_plan(environment, keep_images, pinned, sweep)
    if dry_run:
        show(environment, plan_lines(actions))
        return [action.target for action in actions if action.op == "retire-group"]
    return carry_out_cleanup(environment, actions)


def carry_out_cleanup(environment: Environment, actions: list[Action]) -> list[str]:
    """Carry out a cleanup's plan (refused before anything is done while the serving group is not healthy); the
    names of the groups it retired."""
    retired = [action.target for action in actions if action.op == "retire-group"]
    if retired:
        environment.say(f"  outdated: {', '.join(retired)}")
    elif not any(action.op == "refuse" for action in actions):
        environment.say("  no outdated groups")
    carry_out(environment, actions)  # refuses before doing anything while the serving group is not healthy
    for action in actions:
        if action.op == "keep":
            environment.say(f"  {action.done()}" + (f" ({action.detail})" if action.detail else ""))
    return retired
