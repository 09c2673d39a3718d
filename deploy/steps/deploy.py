"""The end of `inv deploy` (and `inv rollback`), its stage "finish": retire what the new group replaced, then sum the
deploy up. The stages before it run as pre-tasks, all defined once in deploy/pipeline.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from deploy.aws.groups import environment_groups
from deploy.aws.health import last_health
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.actions import Action
from deploy.plans.cleanup import plan_cleanup
from deploy.plans.groups import serving_group
from deploy.plans.hand import given_image, sweeps_leftovers
from deploy.plans.model import Group
from deploy.plans.stages import ROLLBACK, Made, Request, Retirement
from deploy.steps.cleanup import carry_out_cleanup, read_cleanup_facts, wait_retirement
from deploy.views.traffic import service_url


def swept(environment: Environment, request: Request) -> bool:
    """Whether this deploy's end also looks for crashed runs' leftovers: when it baked (no image was given; a
    rollback's image is given), as its dry run and its end alike decide."""
    given = (
        request.image_id if request.action == ROLLBACK else given_image(request.image_id, environment.config.image_id)
    )
    return sweeps_leftovers(given)


def decide_retirement(environment: Environment, request: Request, made: Made) -> Retirement:
    """What the deploy's end retires and deletes: every group but the one this run promoted (a run alone: the one
    that serves), their templates, and the images the cleanup's rules let go (deploy/plans/cleanup.py)."""
    sweep = swept(environment, request)
    if made.planned:
        actions = _planned_cleanup(environment, request, made, made.image, sweep)
        if made.reusable is None:
            return Retirement(actions, wait=request.wait_retirement)
        # The run launches the reusable image instead of baking if the app is unchanged: say what differs then.
        instead = _planned_cleanup(environment, request, made, made.reusable, sweep)
        spared = tuple(action for action in actions if action.changes and action not in instead)
        extra = tuple(action for action in instead if action.changes and action not in actions)
        return Retirement(actions, reusable=made.reusable, spared=spared, extra=extra, wait=request.wait_retirement)
    groups = environment_groups(environment)
    promoted = made.promoted
    serving = next((g for g in groups if g.name == promoted), None) if promoted else serving_group(groups)
    if serving is None:
        raise DeployError("No group serves: the deploy did not complete.")
    facts = read_cleanup_facts(environment, request.keep_images, pinned=serving.name, sweep=sweep)
    actions = tuple(plan_cleanup(facts))
    return Retirement(actions, serving=serving.name, image=serving.image_id, wait=request.wait_retirement, sweep=sweep)


def _planned_cleanup(
    environment: Environment, request: Request, made: Made, image: str | None, sweep: bool
) -> tuple[Action, ...]:
    """A dry run's cleanup: the group that will serve (with IMAGE) does not exist yet, launch-asg will have removed
    an earlier leftover, and a deployment image still to be baked will be baked from the primal image handed on."""
    new_group = Group(name=made.group or "", launch_template=made.launch_template, image_id=image)
    facts = read_cleanup_facts(environment, request.keep_images, new_group=new_group, sweep=sweep)
    source = {made.primal} if made.primal else set()
    facts = replace(
        facts,
        groups=[group for group in facts.groups if group.name not in made.removed],
        templates=[name for name in facts.templates if name not in made.removed],
        primals_in_use=facts.primals_in_use | source,
    )
    return tuple(plan_cleanup(facts))


def act_retirement(environment: Environment, decision: Retirement, made: Made) -> Made:
    return made.with_(summary=carry_out_retirement(environment, decision))


def carry_out_retirement(environment: Environment, decision: Retirement) -> dict[str, Any]:
    """Hand what the decision names to AWS (the group just promoted never: it is pinned), then sum the deploy up.
    Nothing waits for AWS (its draining, its terminations) unless --wait-retirement asks."""
    group = decision.serving
    environment.say(f"  serving: {group}")
    retired = carry_out_cleanup(environment, list(decision.actions), group)
    health = last_health(environment, group)  # as wait-health's last poll found it (measured now if this run did not)
    kept = [action for action in decision.actions if action.op == "keep-group"]
    deleted = [action.target for action in decision.actions if action.op == "delete-group"]
    if decision.wait:
        deleted += wait_retirement(environment, None, group, decision.sweep)
    summary = {
        "image": decision.image,
        "group": group,
        "instances": health.ready,
        "retired": retired,
        "kept": {action.target: action.get("retire_at") for action in kept},
        "deleted": deleted,
        "url": service_url(environment),
        "logs": environment.log.relative_dir(),
        "seconds": round(environment.log.elapsed(), 1),
    }
    until = "".join(f"; {action.target} kept until {action.get('retire_at')}" for action in kept)
    environment.say(
        f"deployed {summary['image']} as {group}: {health.ready}/{health.desired} instances healthy;"
        f" {len(retired)} outdated group(s) handed to AWS{until}. {summary['url']}  Logs: {summary['logs']}"
    )
    environment.say(f"  total time {summary['seconds']:.1f}s")
    return summary


def finish_deploy(
    environment: Environment, keep_images: bool | None = None, promoted: str | None = None, image_id: str | None = None
) -> dict[str, Any]:
    """The stage alone: retire what the group PROMOTED (None: the one that serves) replaced, then sum the deploy up.
    IMAGE_ID: the image this run was given (no sweep for crashed runs' leftovers then)."""
    request = Request(image_id=image_id, keep_images=keep_images)
    return carry_out_retirement(environment, decide_retirement(environment, request, Made(promoted=promoted)))
