"""What a cleanup retires and deletes, in order, and what it keeps (and why): one decision for
`inv cleanup`, `inv cleanup --dry-run`, the end of a deploy and the deploy's dry run."""

from __future__ import annotations

from dataclasses import dataclass, field

from deploy.plans.actions import Action
from deploy.plans.groups import kept_group, outdated_groups
from deploy.plans.health import GroupHealth
from deploy.plans.leftovers import plan_leftovers
from deploy.plans.model import (
    DELETING,
    DEPLOYED_TAG,
    RETIRE_AT_TAG,
    SOURCE_TAG,
    Group,
    Image,
    LaunchConfiguration,
    OrphanSnapshot,
    PackerLeftover,
)

SCALE_IN_DETAIL = "sized 0: AWS deregisters, drains and terminates its instances; the next run deletes it"
EMPTY_DETAIL = "empty: with its target group"
KEEP_EVERY_IMAGE = "every image (--no-cleanup / CLEANUP=no)"


@dataclass(frozen=True)
class CleanupFacts:
    """What a cleanup decides from, read once (deploy/steps/cleanup.py reads it)."""

    groups: list[Group]  # every group of the environment, the serving one included
    serving: Group | None  # the group that stays (in a deploy's plan: the new group)
    serving_health: GroupHealth | None  # None: not read (nothing outdated, or the group does not exist yet)
    templates: list[str]  # the environment's launch templates
    template_images: dict[str, str | None]  # image of each template the serving group uses
    configurations: list[LaunchConfiguration]  # the original scripts' launch configurations
    images: list[Image]  # the environment's deployment images (none read when images are kept)
    used_elsewhere: set[str] = field(default_factory=set)  # of those, images another environment runs
    protected: set[str] = field(default_factory=set)  # images given by hand (--image-id): never deleted
    retain: int = 0  # RETAIN_IMAGES: earlier deployed images kept for rollback
    keep_images: bool = False  # --no-cleanup / CLEANUP=no
    pinned: str | None = None  # the group this run just promoted: never retired, whatever the order says
    now: str = ""  # UTC ISO 8601 ("2026-12-05T10:00:00Z"), this cloud's clock: which windows are over
    windows: dict[str, str] = field(default_factory=dict)  # a dry run's: the window the promotion to come opens
    target_groups: dict[str, str] = field(default_factory=dict)  # an ALB: each group's own target group, by group
    shared_target_group: str | None = None  # an ALB: the earlier layout's tg-NAME, when a listener still names it
    serving_has_own: bool = False  # the serving group has its own target group (then tg-NAME goes)
    primals: list[Image] = field(default_factory=list)  # the environment's primal images (none read: kept)
    primals_in_use: set[str] = field(default_factory=set)  # run by an instance (a bake) or used elsewhere
    primal_retain: int = 2  # PRIMAL_RETAIN: the newest primal images kept
    packer_leftovers: list[PackerLeftover] = field(default_factory=list)  # an interrupted bake's (aws/leftovers)
    orphan_snapshots: list[OrphanSnapshot] = field(default_factory=list)  # snapshots whose image is gone


def images_to_delete(images: list[Image], in_use: set[str], protected: set[str], retain: int = 0) -> list[Image]:
    """The deployment images that may go; never one in use or protected.

    The RETAIN most recently deployed of the others stay, so that a rollback can launch them again;
    an image that was never deployed (its deploy failed) is not worth retaining.
    """
    candidates = [image for image in images if image.id not in in_use | protected]
    deployed = sorted(
        (image for image in candidates if image.tag(DEPLOYED_TAG)),
        key=lambda image: image.tag(DEPLOYED_TAG),
        reverse=True,
    )
    kept = {image.id for image in deployed[:retain]}
    return [image for image in candidates if image.id not in kept]


def plan_cleanup(facts: CleanupFacts) -> list[Action]:
    """What happens to every group but the serving one, then the templates and configurations no remaining group
    uses, then the images nothing uses (minus protected ones, those another environment runs, and the RETAIN most
    recently deployed). Nothing at all while the serving group is not fully healthy. The PINNED group (the one
    this run promoted) is never touched.

    The groups are handed to AWS, never waited for: the one the serving group replaced keeps its capacity until
    its window ends (a scheduled action sizes it 0 then); every other one is sized 0 at once (AWS deregisters,
    drains and terminates its instances); one AWS is still emptying is left to it; an empty one is deleted."""
    serving = facts.serving
    keep = {name for name in (serving.name if serving else None, facts.pinned) if name}
    # A group AWS is deleting (a retirement force-deleted it and went on) is gone for every decision.
    outdated = [group for group in outdated_groups(facts.groups, keep) if group.status != DELETING]
    health = facts.serving_health
    if outdated and serving is not None and health is not None and not health.done:
        return [Action("refuse", f"the serving group {serving.name} is not fully healthy ({health.line().strip()})")]
    kept = kept_group(outdated, None, facts.now, facts.windows)
    actions: list[Action] = []
    remaining: list[Group] = [serving] if serving else []
    for group in outdated:
        if kept is not None and group.name == kept.name:
            end = facts.windows.get(group.name) or group.tags.get(RETIRE_AT_TAG, "")
            detail = f"out of service with its capacity until {end}; then AWS sizes it 0 (scheduled action)"
            actions.append(Action("keep-group", group.name, detail, (("retire_at", end),)))
        elif group.empty:
            actions.append(Action("delete-group", group.name, EMPTY_DETAIL, (("force", False), ("detach", False))))
            continue
        elif group.scaled_in:
            count = len(group.instance_ids)
            actions.append(Action("keep", f"group {group.name}", f"AWS drains and terminates its {count} instance(s)"))
        else:
            actions.append(Action("scale-in", group.name, SCALE_IN_DETAIL))
        remaining.append(group)
    # Deletions after what only changes a size: a group sized 0 stops serving before anything of it goes.
    actions.sort(key=lambda action: action.op == "delete-group")
    # What only the deleted groups used at the load balancer goes after them (out of the listeners first).
    gone = [action.target for action in actions if action.op == "delete-group"]
    doomed = [facts.target_groups[name] for name in gone if name in facts.target_groups]
    if facts.shared_target_group and facts.serving_has_own:
        doomed.append(facts.shared_target_group)
    actions += [Action("delete-target-group", name, "out of the listeners first") for name in doomed]

    used_templates = {group.launch_template for group in remaining if group.launch_template}
    actions += [Action("delete-launch-template", name) for name in facts.templates if name not in used_templates]
    used_template = serving.launch_template if serving else None
    in_use = {image for image in [facts.template_images.get(used_template or "")] if image}
    in_use |= {group.image_id for group in remaining if group.image_id}
    used_configurations = {group.launch_configuration for group in remaining if group.launch_configuration}
    for configuration in facts.configurations:
        if configuration.name in used_configurations:
            in_use.add(configuration.image_id or "")
        else:
            actions.append(Action("delete-launch-configuration", configuration.name))

    leftovers = plan_leftovers(facts.packer_leftovers, facts.orphan_snapshots)
    if facts.keep_images:
        return [*actions, *leftovers, Action("keep", KEEP_EVERY_IMAGE)]
    if serving is not None and serving.image_id:
        in_use.add(serving.image_id)
    for image in images_to_delete(facts.images, in_use, facts.protected, facts.retain):
        if image.id in facts.used_elsewhere:
            actions.append(Action("keep", f"image {image.id}", "another environment still uses it"))
            continue
        actions.append(Action("delete-image", image.id, data=(("snapshots", image.snapshots),)))
    deleted = {action.target for action in actions if action.op == "delete-image"}
    images_left = [image for image in facts.images if image.id not in deleted]
    primals = primals_to_delete(facts.primals, images_left, facts.primals_in_use, facts.primal_retain)
    return actions + primals + leftovers


def primals_to_delete(
    primals: list[Image], deployment_images: list[Image], in_use: set[str], retain: int
) -> list[Action]:
    """The primal images that go, with their snapshots: all but the RETAIN newest, those a remaining deployment
    image was baked from (its SourceImage tag), and those IN_USE (a bake running from it, another environment)."""
    sources = {image.tag(SOURCE_TAG) for image in deployment_images}
    newest = sorted(primals, key=lambda image: (image.created, image.name), reverse=True)
    actions = []
    for image in newest[retain:]:
        if image.id in sources | in_use:
            continue
        detail = f"primal image beyond the newest {retain}"
        actions.append(Action("delete-image", image.id, detail, (("snapshots", image.snapshots),)))
    return actions
