"""`inv rollback`: which image it puts back (the deploy's own stages then run from launch-asg with it:
deploy/pipeline.py `rollback`)."""

from __future__ import annotations

from deploy.aws.groups import environment_groups
from deploy.aws.history import promoted_images, read_history
from deploy.aws.images import deployment_images, describe_image, require_image
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.groups import rollback_target, serving_group
from deploy.plans.model import Image


def from_history(environment: Environment, serving_image: str | None) -> str | None:
    """The most recently promoted image in the account's history (images given with --image-id included) other
    than the one serving now, still available."""
    for image_id in promoted_images(read_history(environment)):
        if image_id == serving_image:
            continue
        image = describe_image(environment, image_id)
        if image is not None and image.get("State") == "available":
            return image_id
    return None


def choose_target(environment: Environment, to: str | None) -> tuple[str, str | None]:
    """(the image to roll back to, the image serving now): --to, else the most recently deployed other one."""
    serving = serving_group(environment_groups(environment))
    serving_image = serving.image_id if serving else None
    target = to or from_history(environment, serving_image)
    target = target or rollback_target([Image.from_aws(i) for i in deployment_images(environment)], serving_image)
    if target is None:
        raise DeployError(
            f"Nothing to roll back to: no earlier deployed image of {environment.env} is retained"
            f" (RETAIN_IMAGES={environment.config.retain_images}), and none in `inv history` is still available."
            " Pass one with --to ami-…."
        )
    if target == serving_image:
        raise DeployError(f"{target} is the image serving now; nothing to roll back.")
    require_image(environment, target, "Rollback image")
    return target, serving_image
