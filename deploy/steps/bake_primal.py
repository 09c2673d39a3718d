"""`inv bake-primal`: the base ("primal") image, baked with Packer from SOURCE_AMI unless one is given or an
earlier run baked it from the same source and template."""

from __future__ import annotations

from deploy.appcontract import bake_inputs
from deploy.aws.images import PRIMAL, require_image, resolve_source_image
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.localcloud.seed import seed_base_image
from deploy.plans.bake import GIVEN, decide_bake
from deploy.plans.stages import Made, PrimalBake, Request
from deploy.steps.baking import bake, bake_group_to_create, packer_builder, recorded_image, template_digest


def primal_inputs(environment: Environment, source: str) -> dict[str, str]:
    """What a primal image is made from: a recorded image baked from other inputs is not reused."""
    return {"source": source, "template": template_digest(PRIMAL), **bake_inputs(environment.config, PRIMAL)}


def source_image(environment: Environment, known_missing: bool = False) -> str:
    """SOURCE_AMI as an image id. On the embedded cloud, a base image it names and no run made yet is made now (an
    AWS account has its distribution's images). KNOWN_MISSING: the decision's lookup found none already (not asked
    again). A dry run creates nothing: the error stands (the deploy's plan says what would be seeded)."""
    try:
        if known_missing:
            raise DeployError(f"No available image named {environment.config.source_ami!r}.")
        return resolve_source_image(environment)
    except DeployError:
        config = environment.config
        if not config.local_cloud or environment.aws.dry_run:
            raise
        seeded, _ = seed_base_image(config, environment.aws.ec2, environment.say)
        if seeded is None:
            raise
        return seeded


def decide_primal(environment: Environment, request: Request, made: Made) -> PrimalBake:
    """Given (--primal-id, PRIMAL_ID), else reused (baked from the same source and inputs, found in the account),
    else baked. On the embedded cloud, a base image SOURCE_AMI names and no run made yet is created first (an AWS
    account has its distribution's images): the decision says so, the action does it."""
    config = environment.config
    builder = packer_builder(environment)
    given = request.primal_id or config.primal_id
    if given:
        require_image(environment, given, "Primal image")
        return PrimalBake(decide_bake(given, None), builder)
    try:
        source = resolve_source_image(environment)
    except DeployError:
        seed = seed_base_image(config, environment.aws.ec2, dry_run=True)[1] if config.local_cloud else []
        if not seed:
            raise
        group = bake_group_to_create(environment, made)
        return PrimalBake(
            decide_bake(None, None), builder, seed=tuple(seed), source_name=str(config.source_ami), creates_group=group
        )
    recorded = recorded_image(environment, PRIMAL, primal_inputs(environment, source))
    bake = decide_bake(None, recorded, source)
    return PrimalBake(
        bake, builder, creates_group=bake_group_to_create(environment, made) if bake.image is None else ""
    )


def act_primal(environment: Environment, decision: PrimalBake, made: Made) -> Made:
    return made.with_(primal=carry_out_primal(environment, decision))


def carry_out_primal(environment: Environment, decision: PrimalBake) -> str:
    image, source = decision.bake.image, decision.bake.source
    if image is not None:
        if decision.bake.action == GIVEN:
            environment.say(f"  skipped: primal image {image} given")
        else:
            environment.say(f"  skipped: primal image {image} recorded by an earlier run from {source}")
        return image
    if decision.seed:
        source = source_image(environment, known_missing=True)
    return bake(environment, PRIMAL, {"source_ami": source}, primal_inputs(environment, source))


def bake_primal(environment: Environment, primal_id: str | None = None) -> str:
    """The stage alone: decide and carry out; the primal image's id."""
    return carry_out_primal(environment, decide_primal(environment, Request(primal_id=primal_id), Made()))
