"""`inv destroy`: remove everything an environment owns, and nothing else.

Three parts: `describe_for_destroy` reads what exists; `plan_destroy` (deploy/plans/destroy.py, pure)
decides from names and tags what is this environment's and in which order it goes; deploy/execute.py
carries the plan out, through the same code as cleanup and an aborted deploy. A dry run prints the plan.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from invoke.exceptions import Exit

from deploy.aws.dns import a_record, find_hosted_zone, host_records
from deploy.aws.groups import environment_groups, launch_configurations, launch_templates
from deploy.aws.history import read_history
from deploy.aws.images import environment_images, images_used_elsewhere
from deploy.aws.keys import describe_key_pair, key_path
from deploy.aws.leftovers import orphan_snapshots, packer_leftovers
from deploy.aws.network import security_groups_named
from deploy.config import command_config, work_dir
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import carry_out
from deploy.naming import tags_of
from deploy.plans.actions import numbered
from deploy.plans.destroy import Described, plan_destroy, refusal
from deploy.plans.hand import promoted_by_hand, protected
from deploy.plans.model import Balancer, Image, Owned, Record
from deploy.views.status import load_balancer_summary


def legacy_state_file(env: str) -> Path:
    """The note file earlier versions kept between the steps of a run (deploy/state/ENV.json): removed with the
    environment if an old checkout left one (nothing reads it: the account is the source of truth)."""
    return work_dir() / "deploy" / "state" / f"{env}.json"


def describe_for_destroy(environment: Environment) -> Described:
    """Read everything destroy decides about (reads only; a dry run runs exactly this)."""
    names = environment.names
    # A load balancer of the other kind would keep the security groups in use: say how to proceed.
    environment.load_balancer.refuse_kind_switch()
    try:
        zone_id: str | None = find_hosted_zone(environment)
    except DeployError:
        zone_id = None  # no zone: no record to delete
    raw_record = a_record(host_records(environment, zone_id)) if zone_id else None
    images = tuple(Image.from_aws(image) for image in environment_images(environment))
    # Any VPC: the environment's groups stay its own even if VPC_ID changed since setup.
    security_groups = tuple(
        Owned(group["GroupName"], tags_of(group), group["GroupId"])
        for group in security_groups_named(
            environment, [names.instance_security_group, names.lb_security_group, names.bake_security_group]
        )
    )
    pair = describe_key_pair(environment)
    key_file = key_path(environment.env)
    files = [key_file, key_file.with_suffix(".pub"), legacy_state_file(environment.env)]
    return Described(
        app=names.app,
        env=environment.env,
        host=names.host,
        zone_id=zone_id,
        record=Record.from_aws(raw_record) if raw_record else None,
        load_balancer=Balancer.from_summary(load_balancer_summary(environment)),
        groups=tuple(environment_groups(environment)),
        launch_templates=tuple(launch_templates(environment)),
        launch_configurations=tuple(c["LaunchConfigurationName"] for c in launch_configurations(environment)),
        images=images,
        images_used_elsewhere=frozenset(images_used_elsewhere(environment, [image.id for image in images])),
        # Given by hand (--image-id), as the account records it: a tag on the image or the history.
        images_given_by_hand=frozenset(
            promoted_by_hand(read_history(environment)) | {image.id for image in images if protected(image.tags)}
        ),
        security_groups=security_groups,
        packer_leftovers=tuple(packer_leftovers(environment)),
        orphan_snapshots=tuple(orphan_snapshots(environment)),
        key_pair=Owned(pair["KeyName"], tags_of(pair)) if pair else None,
        files=tuple(str(path) for path in files if path.exists()),
    )


def run_destroy(
    environment: Environment,
    yes: bool = False,
    dry_run: bool = False,
    confirm: Callable[[str], str] = input,
) -> list[str]:
    """Describe, plan, show the plan; unless a dry run, confirm (or --yes) and carry it out."""
    actions = plan_destroy(describe_for_destroy(environment))
    heading = "plan (dry run: nothing is deleted)" if dry_run else f"destroying {environment.names.stack}:"
    environment.say(heading)
    for line in numbered(actions) or ["nothing to destroy"]:
        environment.say(f"  {line}")
    if dry_run or not any(a.changes for a in actions):
        return []
    if not yes:
        try:
            answer = confirm(f"Type {environment.env} to delete all of this, anything else to cancel: ")
        except EOFError:
            answer = ""
        if answer.strip() != environment.env:
            raise DeployError("Not confirmed: nothing was deleted. (Type the environment name, or pass --yes.)")
    done = carry_out(environment, actions, progress=True, again="inv destroy")
    environment.say(f"  destroyed {environment.names.stack}: {len(done)} deletions")
    return done


def refuse_unconfirmed(env: str | None, yes: bool, dry_run: bool) -> None:
    """An unconfirmed production is refused before anything is opened (no AWS call, no lock)."""
    try:
        config = command_config(env)
    except DeployError as error:
        raise Exit(f"error: {error}", code=1) from None
    why = refusal(env, config.env, yes, dry_run)
    if why:
        raise Exit(f"error: {why}", code=1)
