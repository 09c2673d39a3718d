"""What an AWS account would already have, created in a fresh embedded cloud: the hosted zone and a base image."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from deploy.config import Config


def seed(
    config: Config, ec2: Any, route53: Any, say: Callable[[str], None] = print, dry_run: bool = False
) -> list[str]:
    """Create what an AWS account would already have, unless present: the hosted zone and a base image.

    DRY_RUN: create nothing; return what would be created.
    """
    planned: list[str] = []
    domain = str(config.domain)
    zones = route53.list_hosted_zones_by_name(DNSName=domain).get("HostedZones", [])
    if not any(zone["Name"].rstrip(".") == domain and not zone["Config"].get("PrivateZone") for zone in zones):
        if dry_run:
            planned.append(f"embedded cloud: would create the public hosted zone {domain}")
        else:
            route53.create_hosted_zone(Name=domain, CallerReference=f"seed-{domain}-{time.time_ns()}")
            say(f"embedded cloud: created the public hosted zone {domain}")
    source = str(config.source_ami)
    if source.startswith("ami-"):
        return planned
    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [source]}])["Images"]
    if images:
        return planned
    if dry_run:
        return [*planned, f"embedded cloud: would create the base image {source}"]
    # moto only makes images from instances: start one from a built-in image, image it, end it.
    # Packer's amazon-ebs builder needs an EBS-backed source, as AWS's distribution images are.
    builtin = ec2.describe_images(
        Owners=["amazon"],
        Filters=[
            {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "root-device-type", "Values": ["ebs"]},
        ],
    )
    base = builtin["Images"][0]["ImageId"]
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]
    image = ec2.create_image(InstanceId=instance["InstanceId"], Name=source, Description="embedded cloud base image")
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    say(f"embedded cloud: created the base image {source} ({image['ImageId']})")
    return planned


def seed_plan(config: Config, ec2: Any, route53: Any) -> list[str]:
    """What the embedded cloud's seed would create (a real run seeds it when it starts); nothing on AWS."""
    if not config.local_cloud:
        return []
    return seed(config, ec2, route53, dry_run=True)
