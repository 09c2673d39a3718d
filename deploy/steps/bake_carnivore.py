"""`inv bake-carnivore`: the deployment ("carnivore") image, the primal image plus the staged app, unless an
image is given or an earlier run baked one from the same primal image, app and template."""

from __future__ import annotations

from deploy.appcontract import bake_inputs
from deploy.aws.images import CARNIVORE, image_from_inputs, require_image
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.bake import BAKE, GIVEN, BakeDecision, decide_bake
from deploy.plans.hand import given_image
from deploy.plans.stages import CarnivoreBake, Made, Request, Staged
from deploy.steps.baking import bake, bake_group_to_create, recorded_image, template_digest
from deploy.steps.copy_over import tree_digest


def carnivore_inputs(environment: Environment, primal: str, app_digest: str | None) -> dict[str, str]:
    """What a deployment image is made from: a recorded image baked from other inputs is not reused. APP_DIGEST
    None: every input but the app (a dry run's, which builds nothing)."""
    contract = bake_inputs(environment.config, CARNIVORE)
    app = {"app": app_digest} if app_digest is not None else {}
    return {"primal": primal, **app, "template": template_digest(CARNIVORE), **contract}


def decide_carnivore(environment: Environment, request: Request, made: Made) -> CarnivoreBake:
    """Given (--image-id, IMAGE_ID: by hand), else reused (the same primal image, app and template, found in the
    account), else baked from the primal image bake-primal handed on and the app copy-over staged."""
    given = given_image(request.image_id, environment.config.image_id)
    if given:
        require_image(environment, given, "Image")
        return CarnivoreBake(decide_bake(given, None), None)
    if made.planned:  # nothing is built yet: the app's digest is unknown
        primal = made.primal
        reusable = (
            image_from_inputs(environment, CARNIVORE, carnivore_inputs(environment, primal, None)) if primal else None
        )
        group = bake_group_to_create(environment, made)
        return CarnivoreBake(
            BakeDecision(BAKE, None, primal or ""), None, app_known=False, reusable=reusable, creates_group=group
        )
    staged = made.staged
    if staged is None or not staged.folder.is_dir():
        raise DeployError(f"Nothing is staged for {environment.env}: run `inv copy-over --env {environment.env}`.")
    if not made.primal:
        raise DeployError(f"No primal image for {environment.env}: run `inv bake-primal` or pass --primal-id.")
    primal = str(require_image(environment, made.primal, "Primal image")["ImageId"])
    recorded = recorded_image(environment, CARNIVORE, carnivore_inputs(environment, primal, staged.digest))
    return CarnivoreBake(decide_bake(None, recorded, primal), staged)


def act_carnivore(environment: Environment, decision: CarnivoreBake, made: Made) -> Made:
    image = carry_out_carnivore(environment, decision)
    return made.with_(image=image, by_hand=decision.bake.action == GIVEN)


def carry_out_carnivore(environment: Environment, decision: CarnivoreBake) -> str:
    image, staged = decision.bake.image, decision.staged
    if image is not None:
        if decision.bake.action == GIVEN:
            environment.say(f"  skipped: image {image} given; no build or bake needed (once promoted, never deleted)")
        else:
            environment.say(f"  skipped: image {image} was baked from the same primal image and app")
        return image
    assert staged is not None  # a run's decision to bake always names the staged app
    if tree_digest(staged.folder) != staged.digest:
        # This run's own folder (tmp/appserver/ENV/RUN): changed only if someone edited it by hand.
        raise DeployError(f"The staged app in {staged.folder} changed since copy-over: run the deploy again.")
    inputs = carnivore_inputs(environment, decision.bake.source, staged.digest)
    variables = {"primal_ami": decision.bake.source, "app_dir": str(staged.folder)}
    return bake(environment, CARNIVORE, variables, inputs)


def bake_carnivore(
    environment: Environment, image_id: str | None = None, staged: Staged | None = None, primal: str | None = None
) -> str:
    """The stage alone, from what copy-over staged and the primal image: decide and carry out; the image's id."""
    made = Made(staged=staged, primal=primal)
    return carry_out_carnivore(environment, decide_carnivore(environment, Request(image_id=image_id), made))
