"""EC2 instances and instance types."""

from __future__ import annotations

from typing import Any

from deploy.aws.clients import collect
from deploy.aws.context import AwsContext
from deploy.errors import DeployError
from deploy.facts import OFFERED_ZONES


def require_instance_type(environment: AwsContext) -> str:
    """INSTANCE_TYPE as AWS offers it in the region, checked before anything is baked or launched: offered in no
    zone of the region (an unknown type is offered nowhere). The same read tells launch-asg which zones to use."""
    instance_type = environment.config.instance_type
    if not zones_offering(environment):
        raise DeployError(
            f"INSTANCE_TYPE {instance_type} is not offered in {environment.config.region}:"
            f" fix it in {environment.config.source_of('INSTANCE_TYPE')}."
        )
    return instance_type


def zones_offering(environment: AwsContext) -> set[str]:
    """The availability zones of the region where INSTANCE_TYPE is offered (DescribeInstanceTypeOfferings), read
    once per run."""

    def read() -> set[str]:
        offerings = collect(
            environment.aws.ec2,
            "describe_instance_type_offerings",
            "InstanceTypeOfferings",
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [environment.config.instance_type]}],
        )
        return {offering["Location"] for offering in offerings}

    return set(environment.facts.once(OFFERED_ZONES, read))


def describe_instances(environment: AwsContext, instance_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The instances by id (those AWS knows of)."""
    if not instance_ids:
        return {}
    # A filter, not InstanceIds: an instance launched a moment ago may not be describable by id yet.
    reservations = environment.aws.ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": instance_ids}])[
        "Reservations"
    ]
    return {i["InstanceId"]: i for r in reservations for i in r["Instances"]}
