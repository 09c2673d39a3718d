"""What an AWS account would already have, created in the embedded cloud when a run needs it: the public hosted
zone of DOMAIN and a base image named SOURCE_AMI.

Seeding is lazy and shares its read with the step that needs the resource (issue 13: every request counts):
setup looks the zone up anyway and calls `seed_zone` only when it found none; bake-primal resolves SOURCE_AMI
anyway and calls `seed_base_image` only when no image matched. Every other command seeds nothing (a deploy with
--image-id sends no seeding request at all). `seed` checks and creates both: `inv local-cloud` and the tests.
A dry run creates nothing: each function then returns what it would create.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from deploy.config import Config


def seed_zone(
    config: Config, route53: Any, say: Callable[[str], None] = print, dry_run: bool = False
) -> tuple[str | None, list[str]]:
    """Create the public hosted zone DOMAIN, which the caller's own lookup found missing: (its id, []).

    DRY_RUN: create nothing: (None, [what would be created]).
    """
    domain = str(config.domain)
    if dry_run:
        return None, [f"embedded cloud: would create the public hosted zone {domain}"]
    created = route53.create_hosted_zone(Name=domain, CallerReference=f"seed-{domain}-{time.time_ns()}")
    say(f"embedded cloud: created the public hosted zone {domain}")
    return str(created["HostedZone"]["Id"]).split("/")[-1], []


def seed_base_image(
    config: Config, ec2: Any, say: Callable[[str], None] = print, dry_run: bool = False
) -> tuple[str | None, list[str]]:
    """Create the base image SOURCE_AMI names, which the caller's own lookup found missing: (its id, []).

    Nothing to seed when SOURCE_AMI is an image id (a missing id is the user's to fix) or the images searched
    are not this account's own (SOURCE_AMI_OWNER other than self): (None, []).
    DRY_RUN: create nothing: (None, [what would be created]).
    """
    source = str(config.source_ami)
    if source.startswith("ami-") or config.source_ami_owner != "self":
        return None, []
    if dry_run:
        return None, [f"embedded cloud: would create the base image {source}"]
    image_id = create_base_image(ec2, source)
    say(f"embedded cloud: created the base image {source} ({image_id})")
    return image_id, []


def create_base_image(ec2: Any, name: str) -> str:
    """An image named NAME, EBS-backed as AWS's distribution images are (Packer's amazon-ebs builder needs that
    of its source); its id. moto only makes images from instances: start one from a built-in image, image it,
    end it."""
    builtin = ec2.describe_images(
        Owners=["amazon"],
        Filters=[
            {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "root-device-type", "Values": ["ebs"]},
        ],
    )
    base = builtin["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
    image = ec2.create_image(InstanceId=instance["InstanceId"], Name=name, Description="embedded cloud base image")
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    return str(image["ImageId"])


def seed(
    config: Config, ec2: Any, route53: Any, say: Callable[[str], None] = print, dry_run: bool = False
) -> list[str]:
    """Create both, unless present: `inv local-cloud` (start and seed) and the tests.

    DRY_RUN: create nothing; return what would be created.
    """
    planned: list[str] = []
    domain = str(config.domain)
    zones = route53.list_hosted_zones_by_name(DNSName=domain).get("HostedZones", [])
    if not any(zone["Name"].rstrip(".") == domain and not zone["Config"].get("PrivateZone") for zone in zones):
        planned += seed_zone(config, route53, say, dry_run)[1]
    source = str(config.source_ami)
    if source.startswith("ami-"):
        return planned
    if not ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [source]}])["Images"]:
        planned += seed_base_image(config, ec2, say, dry_run)[1]
    return planned
