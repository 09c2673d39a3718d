"""`inv bake-primal` and `inv bake-carnivore`: machine images baked with Packer, and image look-ups.

A bake is skipped, make-style, when its image is given (flag or env file) or was recorded by an
earlier run from the same inputs and still exists in AWS.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from deploy.app import tree_digest
from deploy.appcontract import bake_inputs, check_user_script, packer_variables
from deploy.aws.clients import collect, error_code
from deploy.config import ROOT
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.naming import MANAGED_BY, stamp, tags_of
from deploy.packer import render_var_file, run_packer

PACKER_DIR = ROOT / "packer"
PRIMAL = "primal"
CARNIVORE = "carnivore"


def describe_image(environment: Environment, image_id: str) -> dict[str, Any] | None:
    """The image, or None when it does not exist or was deregistered (AWS answers both ways)."""
    try:
        found = environment.aws.ec2.describe_images(ImageIds=[image_id])["Images"]
    except ClientError as error:
        if error_code(error) in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"):
            return None
        raise
    return found[0] if found else None


def require_image(environment: Environment, image_id: str, what: str) -> dict[str, Any]:
    """The image, available; moto launches any id, so the tool checks every id itself before use."""
    image = describe_image(environment, image_id)
    if image is None:
        raise DeployError(f"{what} {image_id} does not exist in {environment.config.region} (or was deregistered).")
    if image.get("State") != "available":
        raise DeployError(f"{what} {image_id} is {image.get('State')}, not available.")
    return image


def require_instance_type(environment: Environment) -> str:
    """INSTANCE_TYPE as AWS offers it in the region, checked before anything is baked or launched."""
    instance_type = str(environment.config.instance_type)
    try:
        environment.aws.ec2.describe_instance_types(InstanceTypes=[instance_type])
    except ClientError as error:
        if error_code(error) == "InvalidInstanceType":
            raise DeployError(
                f"INSTANCE_TYPE {instance_type} is not offered in {environment.config.region}:"
                f" fix it in {environment.config.source_of('INSTANCE_TYPE')}."
            ) from None
        raise
    return instance_type


def resolve_source_image(environment: Environment) -> str:
    """SOURCE_AMI as an id, or the newest image of SOURCE_AMI_OWNER whose name matches it."""
    source = str(environment.config.source_ami)
    if source.startswith("ami-"):
        return str(require_image(environment, source, "SOURCE_AMI")["ImageId"])
    owner = str(environment.config.source_ami_owner)
    found = environment.aws.ec2.describe_images(
        Owners=[owner],
        Filters=[{"Name": "name", "Values": [source]}, {"Name": "state", "Values": ["available"]}],
    )["Images"]
    if not found:
        raise DeployError(
            f"No available image named {source!r} owned by {owner}: fix SOURCE_AMI or SOURCE_AMI_OWNER"
            f" in env/{environment.env}.env."
        )
    return str(max(found, key=lambda image: image.get("CreationDate", ""))["ImageId"])


def files_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def packer_builder(environment: Environment) -> str:
    # No instance of an emulator can be reached over ssh: any endpoint gets the no-ssh builder.
    return "local" if environment.config.endpoint_url else "aws"


def packer_credentials(environment: Environment) -> dict[str, str]:
    """The run's own credentials, so Packer acts as the same identity as boto3 (profiles, SSO included)."""
    credentials = environment.aws.session.get_credentials()
    if credentials is None:
        return {}
    frozen = credentials.get_frozen_credentials()
    values = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        values["AWS_SESSION_TOKEN"] = frozen.token
    return values


def bake(environment: Environment, role: str, variables: dict[str, str]) -> str:
    """Run one Packer build of packer/ROLE.json and return the new image id."""
    config = environment.config
    require_instance_type(environment)
    check_user_script(config, role, say=environment.say)
    image_name = environment.names.image(role, stamp())
    context = {
        "region": config.region,
        "endpoint": config.endpoint_url or "",
        "instance_type": str(config.instance_type),
        "image_name": image_name,
        "app_name": config.app_name,
        "env": config.env,
        "health_check_path": str(config.health_check_path),
        "ssh_username": "admin",
        **packer_variables(config, role),
        **variables,
    }
    var_file = render_var_file(
        f"packer-{role}.vars.json.j2", context, environment.log.file_for(f"packer-{role}-vars", ".json")
    )
    log_path = environment.log.file_for(f"packer-{role}")
    builder = packer_builder(environment)
    environment.say(f"  packer build -only={builder} packer/{role}.json → {image_name}")
    image_id = run_packer(
        PACKER_DIR / f"{role}.json",
        var_file,
        builder,
        log_path,
        on_progress=lambda line: environment.say(f"    {line}"),
        timeout_s=int(config.packer_timeout),  # type: ignore[arg-type]
        env=packer_credentials(environment),
    )
    environment.say(f"  baked {role} image {image_id} (full Packer log: {log_path})")
    return image_id


def _recorded(environment: Environment, key: str, inputs: dict[str, str]) -> str | None:
    """The image recorded under KEY if it was made from these INPUTS and is still available."""
    recorded = environment.state.get(key)
    if not recorded or any(recorded.get(name) != value for name, value in inputs.items()):
        return None
    image = describe_image(environment, str(recorded.get("image_id")))
    return image["ImageId"] if image and image.get("State") == "available" else None


def given_primal(environment: Environment, primal_id: str | None) -> str | None:
    return primal_id or environment.config.primal_id  # type: ignore[return-value]


def bake_primal(environment: Environment, primal_id: str | None = None) -> str:
    given = given_primal(environment, primal_id)
    if given:
        require_image(environment, given, "Primal image")
        environment.state.put(PRIMAL, {"image_id": given, "given": True})
        environment.say(f"  skipped: primal image {given} given")
        return given
    source = resolve_source_image(environment)
    inputs = {
        "source": source,
        "template": files_digest(sorted(PACKER_DIR.glob("**/primal*"))),
        **bake_inputs(environment.config, PRIMAL),
    }
    recorded = _recorded(environment, PRIMAL, inputs)
    if recorded:
        environment.say(f"  skipped: primal image {recorded} recorded by an earlier run from {source}")
        return recorded
    image_id = bake(environment, PRIMAL, {"source_ami": source})
    environment.state.put(PRIMAL, {"image_id": image_id, **inputs})
    return image_id


def given_image(environment: Environment, image_id: str | None) -> str | None:
    return image_id or environment.config.image_id  # type: ignore[return-value]


def current_primal(environment: Environment) -> str:
    recorded = environment.state.get(PRIMAL)
    if not recorded:
        raise DeployError(f"No primal image recorded for {environment.env}: run `inv bake-primal` or pass --primal-id.")
    return str(require_image(environment, str(recorded["image_id"]), "Primal image")["ImageId"])


def bake_carnivore(environment: Environment, image_id: str | None = None) -> str:
    given = given_image(environment, image_id)
    if given:
        require_image(environment, given, "Image")
        protected = set(environment.state.data.get("protected_images", [])) | {given}
        environment.state.data["protected_images"] = sorted(protected)
        environment.state.put(CARNIVORE, {"image_id": given, "given": True})
        environment.say(f"  skipped: image {given} given; no build or bake needed (it will never be deleted)")
        return given
    staged = environment.state.get("staged")
    if not staged or not Path(staged["dir"]).is_dir():
        raise DeployError(f"Nothing is staged for {environment.env}: run `inv copy-over --env {environment.env}`.")
    primal = current_primal(environment)
    inputs = {
        "primal": primal,
        "app": staged["digest"],
        "template": files_digest(sorted(PACKER_DIR.glob("**/carnivore*"))),
        **bake_inputs(environment.config, CARNIVORE),
    }
    recorded = _recorded(environment, CARNIVORE, inputs)
    if recorded:
        environment.say(f"  skipped: image {recorded} was baked from the same primal image and app")
        return recorded
    if tree_digest(Path(staged["dir"])) != staged["digest"]:
        # tmp/appserver is one folder for every environment: another run may have restaged it.
        raise DeployError(f"The staged app in {staged['dir']} changed since copy-over: run the deploy again.")
    image_id = bake(environment, CARNIVORE, {"primal_ami": primal, "app_dir": staged["dir"]})
    environment.state.put(CARNIVORE, {"image_id": image_id, **inputs})
    return image_id


def deployment_images(environment: Environment) -> list[dict[str, Any]]:
    """The deployment images this tool baked for this environment (filtered by AWS, owner self)."""
    filters = [
        {"Name": "tag:ManagedBy", "Values": [MANAGED_BY]},
        {"Name": "tag:App", "Values": [environment.config.app_name]},
        {"Name": "tag:Env", "Values": [environment.env]},
        {"Name": "tag:Role", "Values": [CARNIVORE]},
    ]
    return collect(environment.aws.ec2, "describe_images", "Images", Owners=["self"], Filters=filters)


def snapshot_ids(image: dict[str, Any]) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]


def delete_image(environment: Environment, image: dict[str, Any]) -> None:
    """Deregister first: AWS refuses to delete the snapshot of a registered image."""
    ec2 = environment.aws.ec2
    ec2.deregister_image(ImageId=image["ImageId"])
    for snapshot_id in snapshot_ids(image):
        ec2.delete_snapshot(SnapshotId=snapshot_id)


def images_used_elsewhere(environment: Environment, image_ids: list[str]) -> set[str]:
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
        if (tags.get("App"), tags.get("Env")) != (names.app, names.env) and tags.get("Image") in image_ids:
            used.add(tags["Image"])
    reservations = collect(
        environment.aws.ec2,
        "describe_instances",
        "Reservations",
        Filters=[
            {"Name": "image-id", "Values": image_ids},
            {"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]},
        ],
    )
    for reservation in reservations:
        for instance in reservation["Instances"]:
            tags = tags_of(instance)
            if (tags.get("App"), tags.get("Env")) != (names.app, names.env):
                used.add(instance["ImageId"])
    return used
