"""The shapes decisions work on, and the tag names the tool writes: data only, no AWS calls.

deploy/aws builds these from AWS's answers; deploy/plans decides over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy.naming import tags_of

PROMOTED_TAG = "Promoted"  # on a group, once it was healthy and took over
DEPLOYED_TAG = "Deployed"  # on an image, each time a group of it was promoted
IN_SERVICE = "InService"  # an instance the load balancer sends traffic to, whatever its kind
DELETING = "Delete in progress"  # a group's status while AWS deletes it
# On the group a promotion replaced, written in the request that promotes its successor: when its window ends
# (UTC, this cloud's clock; KEEP_PREVIOUS_SECONDS after the promotion, scaled on an emulator). Until then it keeps
# its capacity out of service (weight 0; classic: detached) so that `inv rollback` is a weight change.
RETIRE_AT_TAG = "RetireAt"
ROLLED_BACK_TAG = "RolledBack"  # on a promoted group that `inv rollback` took the traffic from: it never serves again
RETIRE_ACTION = "retire"  # the scheduled action that scales a kept group in at its window's end (one per group)
SOURCE_TAG = "SourceImage"  # what a bake started from (set by the Packer templates and by the tool)
# A bake's inputs, as tags on the image it made: any machine finds the image made from the same inputs.
INPUT_TAGS = {
    "source": SOURCE_TAG,
    "primal": SOURCE_TAG,
    "app": "AppDigest",
    "template": "TemplateDigest",
    "contract": "ContractDigest",  # START_COMMAND, APP_PORT, packages and the user's scripts (deploy/appcontract.py)
}


@dataclass(frozen=True)
class Member:
    """One instance of a group, as the group reports it."""

    id: str
    lifecycle: str = ""  # InService, Pending, Terminating, ...
    health: str = ""  # Healthy or Unhealthy


@dataclass(frozen=True)
class Group:
    """What the decisions need to know of one Auto Scaling group."""

    name: str
    desired: int = 0
    instance_ids: tuple[str, ...] = ()
    launch_template: str | None = None
    launch_configuration: str | None = None
    image_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    status: str | None = None  # DELETING while AWS deletes it
    max_size: int | None = None  # None: not known (a group this run is about to create); 0: scaled in
    members: tuple[Member, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def scaled_in(self) -> bool:
        """Sized 0 (by a retirement): AWS drains and terminates what it still has."""
        return self.max_size == 0 or (self.max_size is None and self.desired == 0 and not self.instance_ids)

    @property
    def empty(self) -> bool:
        """Nothing left to drain or terminate: it may be deleted."""
        return self.desired == 0 and not self.instance_ids

    @classmethod
    def from_aws(cls, raw: dict[str, Any]) -> Group:
        template = raw.get("LaunchTemplate") or (raw.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get(
            "LaunchTemplateSpecification"
        )
        tags = tags_of(raw)
        return cls(
            name=raw["AutoScalingGroupName"],
            desired=int(raw.get("DesiredCapacity", 0)),
            instance_ids=tuple(i["InstanceId"] for i in raw.get("Instances", [])),
            launch_template=(template or {}).get("LaunchTemplateName"),
            launch_configuration=raw.get("LaunchConfigurationName"),
            image_id=tags.get("Image"),
            tags=tags,
            status=raw.get("Status"),
            max_size=int(raw["MaxSize"]) if "MaxSize" in raw else None,
            members=tuple(
                Member(i["InstanceId"], i.get("LifecycleState", ""), i.get("HealthStatus", ""))
                for i in raw.get("Instances", [])
            ),
            raw=raw,
        )


@dataclass(frozen=True)
class Image:
    """What the decisions need to know of one machine image."""

    id: str
    name: str = ""
    created: str = ""  # CreationDate, ISO 8601: orders as text
    tags: dict[str, str] = field(default_factory=dict)
    snapshots: tuple[str, ...] = ()  # behind its block device mappings

    @classmethod
    def from_aws(cls, raw: dict[str, Any]) -> Image:
        return cls(
            id=raw["ImageId"],
            name=raw.get("Name") or "",
            created=raw.get("CreationDate") or "",
            tags=tags_of(raw),
            snapshots=tuple(snapshot_ids(raw)),
        )

    def tag(self, key: str) -> str:
        return self.tags.get(key, "")


@dataclass(frozen=True)
class LaunchConfiguration:
    """One of the original scripts' launch configurations: its name, and its image (None: not known)."""

    name: str
    image_id: str | None = None

    @classmethod
    def from_aws(cls, raw: dict[str, Any]) -> LaunchConfiguration:
        return cls(name=raw["LaunchConfigurationName"], image_id=raw.get("ImageId"))


@dataclass(frozen=True)
class Record:
    """A DNS record set at the host: its name, type and ALIAS target. RAW: the whole record set as Route 53
    described it, for its deletion (Route 53 deletes only an exact match)."""

    name: str
    type: str
    alias: str = ""  # the ALIAS target's DNS name ("" when not an alias)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_aws(cls, raw: dict[str, Any]) -> Record:
        alias = str((raw.get("AliasTarget") or {}).get("DNSName") or "")
        return cls(name=raw["Name"], type=raw["Type"], alias=alias, raw=raw)


@dataclass(frozen=True)
class Subnet:
    """One subnet: its id, its availability zone, and whether it gives an instance a public IP."""

    id: str
    zone: str
    public_ip: bool = False  # MapPublicIpOnLaunch
    vpc_id: str = ""

    @classmethod
    def from_aws(cls, raw: dict[str, Any]) -> Subnet:
        return cls(
            id=raw["SubnetId"],
            zone=raw["AvailabilityZone"],
            public_ip=bool(raw.get("MapPublicIpOnLaunch", False)),
            vpc_id=raw.get("VpcId") or "",
        )


@dataclass(frozen=True)
class Owned:
    """A security group or key pair, by what decides whose it is: its name, its tags (and its id)."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)
    id: str = ""


@dataclass(frozen=True)
class Balancer:
    """The environment's load balancer as destroy needs it: whether it exists, its kind, name, DNS name and (an
    application one) whether it has its target group."""

    name: str
    kind: str
    exists: bool
    dns_name: str = ""
    has_target_group: bool = False  # an application one can lose its target group

    @classmethod
    def from_summary(cls, summary: dict[str, Any]) -> Balancer:
        return cls(
            name=summary["name"],
            kind=summary.get("kind") or "",
            exists=bool(summary.get("exists")),
            dns_name=summary.get("dns_name") or "",
            has_target_group=bool(summary.get("target_group")),
        )


@dataclass(frozen=True)
class PackerLeftover:
    """Packer's instance left by an interrupted bake, and the temporary key pair and security groups it names."""

    id: str
    state: str
    key_pair: str | None = None
    security_groups: tuple[tuple[str, str], ...] = ()  # (id, name)

    def as_json(self) -> dict[str, Any]:
        groups = [{"id": group_id, "name": name} for group_id, name in self.security_groups]
        return {"id": self.id, "state": self.state, "key_pair": self.key_pair, "security_groups": groups}


@dataclass(frozen=True)
class OrphanSnapshot:
    """A snapshot the tool tagged with its image, whose image is gone (a deregistration cut short)."""

    id: str
    image: str

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "image": self.image}


def snapshot_ids(image: dict[str, Any]) -> list[str]:
    """The snapshots behind an image (its block device mappings)."""
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]
