"""`inv bake-primal`: the base ("primal") image, baked with Packer from SOURCE_AMI unless one is given or an
earlier run baked it from the same source and template."""

from __future__ import annotations

from deploy.appcontract import bake_inputs
from deploy.aws.images import PRIMAL, require_image, resolve_source_image
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.localcloud.seed import seed_base_image
from deploy.plans.bake import GIVEN, BakeDecision, decide_bake
from deploy.steps.baking import bake, recorded_image, template_digest


def primal_inputs(environment: Environment, source: str) -> dict[str, str]:
    """What a primal image is made from: a recorded image baked from other inputs is not reused."""
    return {"source": source, "template": template_digest(PRIMAL), **bake_inputs(environment.config, PRIMAL)}


def source_image(environment: Environment) -> str:
    """SOURCE_AMI as an image id. On the embedded cloud, a base image it names and no run made yet is made now
    (an AWS account has its distribution's images): the seed shares this one lookup (DescribeImages) and runs
    only here, where it is needed. A dry run creates nothing: the error stands (the deploy's plan says it)."""
    try:
        return resolve_source_image(environment)
    except DeployError:
        config = environment.config
        if not config.local_cloud or environment.aws.dry_run:
            raise
        seeded, _ = seed_base_image(config, environment.aws.ec2, environment.say)
        if seeded is None:
            raise
        return seeded


def decide_primal(environment: Environment, primal_id: str | None) -> BakeDecision:
    """The decision of this step, from what it reads (for the step and the deploy's dry run alike)."""
    given = primal_id or environment.config.primal_id
    if given:
        require_image(environment, given, "Primal image")
        return decide_bake(given, None)
    source = source_image(environment)
    return decide_bake(None, recorded_image(environment, PRIMAL, primal_inputs(environment, source)), source)


def bake_primal(environment: Environment, primal_id: str | None = None) -> str:
    decision = decide_primal(environment, primal_id)
    if decision.image is not None:
        if decision.action == GIVEN:
            environment.state.put(PRIMAL, {"image_id": decision.image, "given": True})
            environment.say(f"  skipped: primal image {decision.image} given")
        else:
            # Found in the account by its inputs; noted for bake-carnivore, the next step of this run.
            environment.state.put(PRIMAL, {"image_id": decision.image, **primal_inputs(environment, decision.source)})
            environment.say(
                f"  skipped: primal image {decision.image} recorded by an earlier run from {decision.source}"
            )
        return decision.image
    inputs = primal_inputs(environment, decision.source)
    image_id = bake(environment, PRIMAL, {"source_ami": decision.source}, inputs)
    environment.state.put(PRIMAL, {"image_id": image_id, **inputs})
    return image_id
