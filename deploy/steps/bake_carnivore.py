"""`inv bake-carnivore`: the deployment ("carnivore") image, the primal image plus the staged app, unless an
image is given or an earlier run baked one from the same primal image, app and template."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deploy.appcontract import bake_inputs
from deploy.aws.images import CARNIVORE, HAND_TAG, PRIMAL, require_image
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.bake import GIVEN, BakeDecision, decide_bake
from deploy.state import PROTECTED, STAGED
from deploy.steps.baking import bake, recorded_image, template_digest
from deploy.steps.copy_over import tree_digest


def hand_tags(environment: Environment, image: dict[str, Any]) -> dict[str, str]:
    """The tag that marks an image given by hand as never to be deleted, in the account: it names the environments
    it was given to (cleanup and destroy read it from any machine; the history records it too). Written when a
    group of it is promoted, with its Deployed tag, in one request (wait-health)."""
    tags = {tag["Key"]: tag["Value"] for tag in image.get("Tags") or []}
    given_to = set(tags.get(HAND_TAG, "").split()) | {environment.env}
    return {HAND_TAG: " ".join(sorted(given_to))}


def given_image(environment: Environment, image_id: str | None) -> str | None:
    return image_id or environment.config.image_id


def current_primal(environment: Environment) -> str:
    recorded = environment.state.get(PRIMAL)
    if not recorded:
        raise DeployError(f"No primal image recorded for {environment.env}: run `inv bake-primal` or pass --primal-id.")
    return str(require_image(environment, str(recorded["image_id"]), "Primal image")["ImageId"])


def carnivore_inputs(environment: Environment, primal: str, app_digest: str) -> dict[str, str]:
    """What a deployment image is made from: a recorded image baked from other inputs is not reused."""
    contract = bake_inputs(environment.config, CARNIVORE)
    return {"primal": primal, "app": app_digest, "template": template_digest(CARNIVORE), **contract}


def decide_carnivore(environment: Environment, image_id: str | None) -> tuple[BakeDecision, dict[str, str]]:
    """The decision of this step and the staged app it would bake (empty when an image is given)."""
    given = given_image(environment, image_id)
    if given:
        require_image(environment, given, "Image")
        return decide_bake(given, None), {}
    staged = environment.state.get(STAGED)
    if not staged or not Path(staged["dir"]).is_dir():
        raise DeployError(f"Nothing is staged for {environment.env}: run `inv copy-over --env {environment.env}`.")
    primal = current_primal(environment)
    recorded = recorded_image(environment, CARNIVORE, carnivore_inputs(environment, primal, staged["digest"]))
    return decide_bake(None, recorded, primal), staged


def bake_carnivore(environment: Environment, image_id: str | None = None) -> str:
    decision, staged = decide_carnivore(environment, image_id)
    if decision.image is not None:
        if decision.action == GIVEN:
            environment.given_image = decision.image
            protected = set(environment.state.data.get(PROTECTED, [])) | {decision.image}
            environment.state.data[PROTECTED] = sorted(protected)
            environment.state.put(CARNIVORE, {"image_id": decision.image, "given": True})
            environment.say(
                f"  skipped: image {decision.image} given; no build or bake needed (once promoted, never deleted)"
            )
        else:
            # Found in the account by its inputs; noted for launch-asg, the next step of this run.
            inputs = carnivore_inputs(environment, decision.source, staged["digest"])
            environment.state.put(CARNIVORE, {"image_id": decision.image, **inputs})
            environment.say(f"  skipped: image {decision.image} was baked from the same primal image and app")
        return decision.image
    if tree_digest(Path(staged["dir"])) != staged["digest"]:
        # This run's own folder (tmp/appserver/ENV/RUN): changed only if someone edited it by hand.
        raise DeployError(f"The staged app in {staged['dir']} changed since copy-over: run the deploy again.")
    inputs = carnivore_inputs(environment, decision.source, staged["digest"])
    image_id = bake(environment, CARNIVORE, {"primal_ami": decision.source, "app_dir": staged["dir"]}, inputs)
    environment.state.put(CARNIVORE, {"image_id": image_id, **inputs})
    return image_id
