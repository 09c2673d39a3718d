"""`inv cleanup`: retire every outdated group of the environment, then templates, configurations and images.

A group is retired gracefully: detached from the load balancer (which drains its connections), checked drained
once the draining time is over, then deleted with its instances. Nothing is touched unless the serving group is fully
healthy, and no image that a remaining group or template uses, or another environment runs, is deleted.
The dry run prints exactly the plan (deploy/plans/cleanup.py) that the real run carries out.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from deploy.aws.groups import (
    describe_groups,
    environment_groups,
    forget_group,
    launch_configurations,
    launch_templates,
    remember_group,
    template_image,
    utc_text,
    utc_time,
)
from deploy.aws.health import last_health
from deploy.aws.images import (
    PRIMAL,
    deployment_images,
    environment_images,
    images_run_by_instances,
    images_used_elsewhere,
)
from deploy.aws.leftovers import orphan_snapshots, packer_leftovers
from deploy.aws.loadbalancers.group_targets import target_group_name
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import RETIRE_TIMEOUT_S, carry_out
from deploy.naming import MANAGED_BY
from deploy.plans.actions import Action
from deploy.plans.cleanup import CleanupFacts, plan_cleanup
from deploy.plans.groups import outdated_groups, serving_group, window_end
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
    moment = datetime.now(UTC)
    windows = {}
    if new_group is not None:  # a dry run: the promotion to come opens the window of the group serving now
        previous = serving_group([group for group in groups if group.name != new_group.name])
        window = environment.aws_seconds(environment.config.keep_previous_seconds)
        if previous is not None and window > 0 and previous.tags.get("ManagedBy") == MANAGED_BY:
            windows[previous.name] = utc_text(moment + timedelta(seconds=window))
    health = None
    if new_group is None and serving is not None and outdated_groups(groups, {serving.name}):
        health = last_health(environment, serving.name)
    used = serving.launch_template if serving else None
    images = [] if keep else [Image.from_aws(image) for image in deployment_images(environment)]
    primals = [] if keep else [Image.from_aws(image) for image in environment_images(environment, PRIMAL)]
    templates = launch_templates(environment) if sweep else sorted({g.launch_template or "" for g in groups} - {""})
    forwarded = environment.load_balancer.forwarded_target_groups()
    own = {group.name: name for group in groups for name in own_target_groups(environment, group, forwarded)}
    serving_has_own = serving is not None and (
        serving.name in own or (new_group is not None and environment.load_balancer.kind == "application")
    )
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
        now=utc_text(moment),
        windows=windows,
        target_groups=own,
        shared_target_group=environment.names.target_group if environment.names.target_group in forwarded else None,
        serving_has_own=serving_has_own,
        primals=primals,
        primal_retain=environment.config.primal_retain,
        packer_leftovers=packer_leftovers(environment) if sweep else [],
        orphan_snapshots=orphan_snapshots(environment) if sweep else [],
    )
    return _with_uses(environment, facts)


def own_target_groups(environment: Environment, group: Group, forwarded: set[str]) -> list[str]:
    """GROUP's own target group (an ALB: named in its description, or by the listeners, where it stays at weight 0
    until it is deleted, detached or not; none for a group of the earlier layout)."""
    names = environment.names
    listed = {target_group_name(arn) for arn in group.raw.get("TargetGroupARNs", [])}
    own = names.group_target_group(group.name)
    return [own] if own in listed | forwarded else []


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
    wait: bool = False,
) -> list[str]:
    """Plan the cleanup; print it (DRY_RUN) or carry it out. Return the names of the groups it retires (sizes 0, or
    keeps for their window). PINNED: the group this run just promoted (a deploy's or rollback's end), kept as the
    serving one. SWEEP: look for what crashed runs left too (`inv cleanup`; see read_cleanup_facts). WAIT: then
    block until AWS has emptied every outdated group, and delete them (`inv cleanup --wait`)."""
    if not dry_run and pinned is None:
        # A rollback killed before the group it made serving was attached again (classic): attached first, so that
        # it serves (and is healthy at the load balancer) before anything else is decided.
        current = serving_group(environment_groups(environment))
        if current is not None:
            serve(environment, current.name)
    facts = read_cleanup_facts(environment, keep_images, pinned=pinned, sweep=sweep)
    environment.say(f"  serving: {facts.serving.name if facts.serving else 'no group'}")
    actions = plan_cleanup(facts)
    if dry_run:
        show(environment, plan_lines(actions))
        if wait and retiring(actions):
            environment.say("  then would wait until AWS has emptied them, and delete them")
        return retiring(actions)
    serving = facts.serving.name if facts.serving else None
    retired = carry_out_cleanup(environment, actions, serving)
    if wait and not any(action.op == "refuse" for action in actions):
        wait_retirement(environment, keep_images, serving, sweep)
    return retired


def retiring(actions: list[Action]) -> list[str]:
    """The groups a cleanup hands to AWS: sized 0 now, or kept until their window ends."""
    return [action.target for action in actions if action.op in ("scale-in", "keep-group")]


def carry_out_cleanup(environment: Environment, actions: list[Action], serving: str | None = None) -> list[str]:
    """Carry out a cleanup's plan (refused before anything is done while the serving group is not healthy); the
    names of the groups it retired. SERVING (healthy: nothing is refused) takes every request first, and what only
    the deleted groups used at the load balancer goes after them (an ALB: their target groups)."""
    retired = retiring(actions)
    deleted = [action.target for action in actions if action.op == "delete-group"]
    refused = any(action.op == "refuse" for action in actions)
    if retired:
        environment.say(f"  outdated: {', '.join(retired)}")
    elif not refused and not deleted:
        environment.say("  no outdated groups")
    balancer = environment.load_balancer
    leaving = [action.target for action in actions if action.op == "delete-target-group"]
    if serving is not None and not refused and (retired or deleted or leaving):
        serve(environment, serving, leaving)  # before anything is sized 0; what leaves the listeners, in one request
    carry_out(environment, actions)  # refuses before doing anything while the serving group is not healthy
    if not refused:
        for line in balancer.release(serving, deleted):
            environment.say(f"  {line}")
    for action in actions:
        if action.op == "keep":
            environment.say(f"  {action.done()}" + (f" ({action.detail})" if action.detail else ""))
    return retired


def serve(environment: Environment, serving: str, leaving: list[str] | None = None) -> None:
    """Every request to SERVING, at the load balancer: an ALB's weights; classic: attached again if a run was killed
    in the middle of a rollback (it waits until its instances are in service before anything else stops)."""
    balancer = environment.load_balancer
    known = next((group for group in environment_groups(environment) if group.name == serving), None)
    if known is not None and known.raw and not balancer.attached_to(known.raw):
        until = environment.waiter(RETIRE_TIMEOUT_S).until
        balancer.restore(known.raw, {}, until)
    balancer.serve(serving, leaving or [])


def wait_retirement(
    environment: Environment, keep_images: bool | None = None, serving: str | None = None, sweep: bool = True
) -> list[str]:
    """Block until AWS has emptied every outdated group (drained and terminated; a kept one: once its window is
    over), polling every POLL_SECONDS, bounded by the longest window left plus RETIRE_TIMEOUT_S; then delete them
    with the next cleanup's own plan. The groups deleted."""
    groups = environment_groups(environment)
    waiting = [group.name for group in groups if group.name != serving and group.status is None]
    if not waiting:
        return []
    windows = [window_end(group) for group in groups if group.name in waiting and window_end(group)]
    left = max([(utc_time(end) - datetime.now(UTC)).total_seconds() for end in windows], default=0.0)
    timeout = max(left, 0.0) + RETIRE_TIMEOUT_S
    environment.say(f"  waiting up to {timeout:.0f}s until AWS has emptied {', '.join(waiting)}")

    def emptied() -> tuple[bool, str]:
        raws = describe_groups(environment, waiting)
        for raw in raws:
            remember_group(environment, raw)  # the cleanup after the wait decides from what the last poll saw
        for gone in set(waiting) - {raw["AutoScalingGroupName"] for raw in raws}:
            forget_group(environment, gone)
        found = [Group.from_aws(raw) for raw in raws]
        busy = [group for group in found if not group.empty]
        instances = sum(len(group.instance_ids) for group in busy)
        return not busy, f"{len(busy)} group(s) still emptying, {instances} instance(s) left"

    done, status = environment.waiter(timeout).until(emptied, environment.log.progress)
    environment.log.end_progress()
    if not done:
        raise DeployError(
            f"The outdated groups were not emptied within {timeout:.0f}s ({status});"
            " `inv cleanup` deletes them once they are."
        )
    facts = read_cleanup_facts(environment, keep_images, pinned=serving, sweep=sweep)
    actions = plan_cleanup(facts)
    carry_out_cleanup(environment, actions, serving)
    return [action.target for action in actions if action.op == "delete-group"]


NEXT_RUN_OPS = ("scale-in", "delete-group", "delete-target-group", "delete-launch-template", "delete-image")


def next_run(environment: Environment) -> list[str]:
    """What the next run (a deploy's end, `inv cleanup`) would size 0 or delete, as its plan says it (`inv status`);
    a group kept for its window is not in it until its window is over."""
    try:
        actions = plan_cleanup(read_cleanup_facts(environment, sweep=False))
    except DeployError as error:
        return [f"(not known: {error})"]
    return [action.line() for action in actions if action.op in NEXT_RUN_OPS]
