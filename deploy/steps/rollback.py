"""`inv rollback`: within the window of the group the serving one replaced, a weight change back to it (no launch,
no bake, no health wait); after it, which image it puts back (the deploy's own stages then run from launch-asg with
it: deploy/pipeline.py `rollback`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from deploy.aws.groups import cancel_retirement, environment_groups, scale_in, tag_rolled_back, utc_text
from deploy.aws.history import PROMOTED, entry, promoted_images, read_history, record
from deploy.aws.images import deployment_images, describe_image, require_image
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import RETIRE_TIMEOUT_S
from deploy.plans.groups import WeightRollback, rollback_target, serving_group, weight_rollback
from deploy.plans.hand import group_launched_by_hand
from deploy.plans.model import Image
from deploy.plans.stages import ROLLBACK
from deploy.views.traffic import service_url


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


def decide_weight_rollback(environment: Environment, to: str | None) -> WeightRollback | None:
    """The rollback by weight if the window allows it (one read: the environment's groups), else None (said why)."""
    decision, why = weight_rollback(environment_groups(environment), utc_text(datetime.now(UTC)), to)
    if decision is None:
        environment.say(f"  not a weight change ({why}): the earlier image is launched again")
    return decision


def roll_back_by_weight(environment: Environment, decision: WeightRollback) -> dict[str, Any]:
    """Carry out DECISION, in the order that keeps a killed run safe (the next run converges, see
    docs/operations.md): the kept group's scheduled retirement goes first (it is about to serve: it must never carry
    one); then the group serving now is marked rolled back (from then on the account says the kept group serves,
    and every later run gives it the traffic); then every request moves to it (one ModifyListener; classic: it is
    attached, and the other detached once it is in service); then the rolled-back group is sized 0 (AWS drains and
    terminates it); then the history."""
    serving, previous = decision.serving, decision.previous
    environment.say(f"  rolling back from {serving.name} ({serving.image_id}) to the kept {previous.name}")
    if not cancel_retirement(environment, previous.name):
        environment.say(f"  {previous.name} had no scheduled retirement left")
    tag_rolled_back(environment, serving.name)
    until = environment.waiter(RETIRE_TIMEOUT_S).until
    environment.load_balancer.restore(previous.raw, serving.raw, until)
    environment.say(f"  every request goes to {previous.name}")
    scale_in(environment, serving.name)
    environment.say(f"  sized {serving.name} 0: AWS drains and terminates its instances; the next run deletes it")
    seconds = environment.log.elapsed()
    by_hand = group_launched_by_hand(previous.tags)
    record(environment, entry(ROLLBACK, PROMOTED, previous.image_id, previous.name, seconds, by_hand))
    environment.say(f"rolled back to {previous.image_id} as {previous.name} in {seconds:.1f}s")
    return {
        "image": previous.image_id,
        "group": previous.name,
        "instances": len(previous.instance_ids),
        "retired": [serving.name],
        "url": service_url(environment),
        "logs": environment.log.relative_dir(),
        "seconds": round(seconds, 1),
    }
