"""Machine images: look-ups, this environment's images, and deleting an image with its snapshots."""

from __future__ import annotations

from functools import partial
from typing import Any

from deploy.aws.clients import collect, or_none
from deploy.aws.context import AwsContext
from deploy.errors import DeployError
from deploy.facts import IMAGES
from deploy.naming import MANAGED_BY, Names, tags_of
from deploy.plans.hand import HAND_TAG as HAND_TAG  # the rule: deploy/plans/hand.py
from deploy.plans.model import INPUT_TAGS

PRIMAL = "primal"
CARNIVORE = "carnivore"


def describe_image(environment: AwsContext, image_id: str) -> dict[str, Any] | None:
    """The image, or None when it does not exist or was deregistered (AWS answers both ways).

    One of this environment's own images comes from the run's one listing of them (`environment_images`, which
    the cleanup needs anyway); any other image is read by id, once per run."""
    own = next((image for image in environment_images(environment) if image["ImageId"] == image_id), None)
    if own is not None:
        return own

    def read() -> dict[str, Any] | None:
        found = or_none(lambda: environment.aws.ec2.describe_images(ImageIds=[image_id])["Images"])
        return found[0] if found else None

    return environment.facts.once(f"image:{image_id}", read)


def require_image(environment: AwsContext, image_id: str, what: str) -> dict[str, Any]:
    """The image, available: every id from a flag or a record is checked before it is used."""
    image = describe_image(environment, image_id)
    if image is None:
        raise DeployError(f"{what} {image_id} does not exist in {environment.config.region} (or was deregistered).")
    if image.get("State") != "available":
        raise DeployError(f"{what} {image_id} is {image.get('State')}, not available.")
    return image


def resolve_source_image(environment: AwsContext) -> str:
    """SOURCE_AMI as an id, or the newest image of SOURCE_AMI_OWNER whose name matches it."""
    source = environment.config.source_ami
    if source.startswith("ami-"):
        return str(require_image(environment, source, "SOURCE_AMI")["ImageId"])
    owner = environment.config.source_ami_owner
    found = environment.aws.ec2.describe_images(
        Owners=[owner],
        Filters=[{"Name": "name", "Values": [source]}, {"Name": "state", "Values": ["available"]}],
    )["Images"]
    if not found:
        raise DeployError(
            f"No available image named {source!r} owned by {owner}: fix SOURCE_AMI or SOURCE_AMI_OWNER"
            f" in {environment.config.source_of('SOURCE_AMI')}."
        )
    return str(max(found, key=lambda image: image.get("CreationDate", ""))["ImageId"])


def environment_images(environment: AwsContext, role: str | None = None) -> list[dict[str, Any]]:
    """The images this tool baked for this environment (of ROLE, or every role), filtered by AWS, owner self.

    One listing per run, every role at once (deploy/facts.py); a bake, a tag or a deletion of this run updates it."""
    filters = [
        {"Name": "tag:ManagedBy", "Values": [MANAGED_BY]},
        {"Name": "tag:App", "Values": [environment.config.app_name]},
        {"Name": "tag:Env", "Values": [environment.env]},
    ]
    every_role: list[dict[str, Any]] = environment.facts.once(
        IMAGES, lambda: collect(environment.aws.ec2, "describe_images", "Images", Owners=["self"], Filters=filters)
    )
    return [image for image in every_role if role is None or tags_of(image).get("Role") == role]


def _remember_image(environment: AwsContext, image_id: str, change: Any) -> None:
    """This run changed the image: CHANGE(description) is what it is now (None: gone), in every memo of it."""

    def in_listing(known: list[dict[str, Any]]) -> list[dict[str, Any]]:
        changed = [change(image) if image["ImageId"] == image_id else image for image in known]
        return [image for image in changed if image is not None]

    environment.facts.update(IMAGES, in_listing)
    environment.facts.update(f"image:{image_id}", lambda image: change(image) if image is not None else None)


def forget_images(environment: AwsContext) -> None:
    """This run made an image (a bake): the listing is read again when next needed."""
    environment.facts.forget(IMAGES)


def deployment_images(environment: AwsContext) -> list[dict[str, Any]]:
    return environment_images(environment, CARNIVORE)


def tag_image(environment: AwsContext, image_id: str, tags: dict[str, str]) -> bool:
    """Tag the image (and say whether it could be: only its owner may tag an image shared with this account)."""
    done = or_none(
        lambda: environment.aws.ec2.create_tags(
            Resources=[image_id], Tags=[{"Key": key, "Value": value} for key, value in tags.items()]
        ),
        "AuthFailure",
        "UnauthorizedOperation",
    )
    if done is not None:

        def tagged(image: dict[str, Any]) -> dict[str, Any]:
            kept = [tag for tag in image.get("Tags") or [] if tag["Key"] not in tags]
            return {**image, "Tags": kept + [{"Key": key, "Value": value} for key, value in tags.items()]}

        _remember_image(environment, image_id, tagged)
    return done is not None


def input_tags(inputs: dict[str, str]) -> dict[str, str]:
    return {INPUT_TAGS[key]: value for key, value in inputs.items()}


def image_from_inputs(environment: AwsContext, role: str, inputs: dict[str, str]) -> str | None:
    """The newest available image of ROLE this environment baked from INPUTS (found by its tags), or None."""
    filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in input_tags(inputs).items()]
    filters.append({"Name": "state", "Values": ["available"]})
    names = environment.names
    found = collect(
        environment.aws.ec2,
        "describe_images",
        "Images",
        Owners=["self"],
        Filters=[
            {"Name": "tag:ManagedBy", "Values": [MANAGED_BY]},
            {"Name": "tag:App", "Values": [names.app]},
            {"Name": "tag:Env", "Values": [names.env]},
            {"Name": "tag:Role", "Values": [role]},
            *filters,
        ],
    )
    newest = max(found, key=lambda image: image.get("CreationDate", ""), default=None)
    return str(newest["ImageId"]) if newest else None


def delete_image(environment: AwsContext, image_id: str, snapshots: list[str] | tuple[str, ...]) -> None:
    """Deregister first: AWS refuses to delete the snapshot of a registered image. Either may be gone already."""
    ec2 = environment.aws.ec2
    or_none(lambda: ec2.deregister_image(ImageId=image_id))
    _remember_image(environment, image_id, lambda image: None)
    for snapshot_id in snapshots:
        or_none(partial(ec2.delete_snapshot, SnapshotId=snapshot_id))


def same_environment(tags: dict[str, str], names: Names) -> bool:
    """Tagged by this tool as this environment's (another environment's template or instance is not)."""
    return (tags.get("App"), tags.get("Env")) == (names.app, names.env)


def _instances_of(environment: AwsContext, image_ids: list[str], states: list[str]) -> list[dict[str, Any]]:
    """The instances in STATES that run one of IMAGE_IDS (filtered by AWS)."""
    reservations = collect(
        environment.aws.ec2,
        "describe_instances",
        "Reservations",
        Filters=[{"Name": "image-id", "Values": image_ids}, {"Name": "instance-state-name", "Values": states}],
    )
    return [instance for reservation in reservations for instance in reservation["Instances"]]


def images_run_by_instances(environment: AwsContext, image_ids: list[str]) -> set[str]:
    """Of IMAGE_IDS, those a pending or running instance runs (a bake under way: Packer's instance)."""
    if not image_ids:
        return set()
    return {instance["ImageId"] for instance in _instances_of(environment, image_ids, ["pending", "running"])}


def images_used_elsewhere(environment: AwsContext, image_ids: list[str]) -> set[str]:
    """Of IMAGE_IDS, those another environment uses: in its launch templates or by its instances."""
    if not image_ids:
        return set()
    names = environment.names
    used: set[str] = set()
    templates = collect(
        environment.aws.ec2,
        "describe_launch_templates",
        "LaunchTemplates",
        Filters=[{"Name": "tag:ManagedBy", "Values": [MANAGED_BY]}],
    )
    for template in templates:
        tags = tags_of(template)
        if not same_environment(tags, names) and tags.get("Image") in image_ids:
            used.add(tags["Image"])
    for instance in _instances_of(environment, image_ids, ["pending", "running", "stopping", "stopped"]):
        if not same_environment(tags_of(instance), names):
            used.add(instance["ImageId"])
    return used
