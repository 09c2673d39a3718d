"""The environment's network: its VPC and subnets, and its security groups with their rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploy import facts
from deploy.aws.clients import after_create, collect, refusal
from deploy.aws.context import AwsContext
from deploy.aws.converge import Changes
from deploy.errors import DeployError
from deploy.naming import tag_list
from deploy.plans.model import Subnet


@dataclass(frozen=True)
class Rule:
    """One inbound TCP rule: from a CIDR or from another security group."""

    port: int
    cidr: str | None = None
    group_id: str | None = None

    def as_permission(self) -> dict[str, Any]:
        permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": self.port, "ToPort": self.port}
        if self.cidr and ":" in self.cidr:  # SSH_CIDR may be IPv6: AWS takes those only as Ipv6Ranges
            permission["Ipv6Ranges"] = [{"CidrIpv6": self.cidr}]
        elif self.cidr:
            permission["IpRanges"] = [{"CidrIp": self.cidr}]
        else:
            permission["UserIdGroupPairs"] = [{"GroupId": self.group_id}]
        return permission


def rules_of(permissions: list[dict[str, Any]]) -> set[Rule]:
    """The TCP rules of a security group description, one per source."""
    rules: set[Rule] = set()
    for permission in permissions:
        if permission.get("IpProtocol") != "tcp" or permission.get("FromPort") != permission.get("ToPort"):
            continue
        port = int(permission["FromPort"])
        rules.update(Rule(port, cidr=r["CidrIp"]) for r in permission.get("IpRanges", []))
        rules.update(Rule(port, cidr=r["CidrIpv6"]) for r in permission.get("Ipv6Ranges", []))
        rules.update(Rule(port, group_id=p["GroupId"]) for p in permission.get("UserIdGroupPairs", []))
    return rules


def rule_changes(current: set[Rule], desired: set[Rule]) -> tuple[list[Rule], list[Rule]]:
    """(to add, to remove): the group is this tool's, so rules nobody wants any more are revoked."""
    return sorted(desired - current, key=_key), sorted(current - desired, key=_key)


def _key(rule: Rule) -> tuple[int, str, str]:
    return rule.port, rule.cidr or "", rule.group_id or ""


def _describe(rule: Rule) -> str:
    return f"tcp {rule.port} from {rule.cidr or rule.group_id}"


def resolve_network(environment: AwsContext) -> tuple[str, list[str]]:
    """VPC_ID and SUBNET_IDS, or the default VPC and its default subnets."""
    vpc_id, subnets = read_subnets(environment)
    return vpc_id, [subnet.id for subnet in subnets]


@dataclass(frozen=True)
class SubnetsRead:
    """The environment's VPC and its subnets as described."""

    vpc_id: str
    instances: list[Subnet]  # SUBNET_IDS, else LB_SUBNET_IDS, else the VPC's default subnets
    balancer: list[Subnet]  # LB_SUBNET_IDS, else the instances'
    bake: Subnet | None  # BAKE_SUBNET_ID


def read_subnets(environment: AwsContext) -> tuple[str, list[Subnet]]:
    """The environment's VPC and the instances' subnets: SUBNET_IDS (else LB_SUBNET_IDS) in the order given,
    else the VPC's default subnets sorted by id."""
    found = read_network(environment)
    return found.vpc_id, found.instances


def read_network(environment: AwsContext) -> SubnetsRead:
    """Every subnet the environment names, read at once, once per run (facts.SUBNETS)."""
    return environment.facts.once(facts.SUBNETS, lambda: _read_network(environment))


def _read_network(environment: AwsContext) -> SubnetsRead:
    ec2 = environment.aws.ec2
    config = environment.config
    instance_ids = list(config.subnet_ids or config.lb_subnet_ids or ())
    balancer_ids = list(config.lb_subnet_ids or config.subnet_ids or ())
    bake_ids = [config.bake_subnet_id] if config.bake_subnet_id else []
    if instance_ids:
        vpc_id = config.vpc_id or _default_vpc(environment)  # subnets alone: they must be in the default VPC
        wanted = list(dict.fromkeys(instance_ids + balancer_ids + bake_ids))
        found = _subnets_in(environment, vpc_id, collect(ec2, "describe_subnets", "Subnets", SubnetIds=wanted))
        instances = [found[i] for i in instance_ids if i in found]
        return SubnetsRead(
            vpc_id,
            instances,
            [found[i] for i in balancer_ids if i in found],
            found.get(bake_ids[0]) if bake_ids else None,
        )
    # Only a default VPC has default subnets: one read gives the subnets and their VPC (no DescribeVpcs).
    filters = [{"Name": "default-for-az", "Values": ["true"]}]
    if config.vpc_id:
        filters.append({"Name": "vpc-id", "Values": [config.vpc_id]})
    subnets = sorted(
        (Subnet.from_aws(raw) for raw in collect(ec2, "describe_subnets", "Subnets", Filters=filters)),
        key=lambda subnet: subnet.id,
    )
    if not subnets:
        vpc_id = config.vpc_id or _default_vpc(environment)  # read only to say which is missing
        raise DeployError(f"VPC {vpc_id} has no default subnets: set SUBNET_IDS in the env file.")
    vpcs = sorted({subnet.vpc_id for subnet in subnets})
    if len(vpcs) > 1:  # AWS has one default VPC per region: never seen, but never guessed either
        raise DeployError(f"The default subnets are in several VPCs ({', '.join(vpcs)}): set VPC_ID in the env file.")
    bake = None
    if bake_ids:  # BAKE_SUBNET_ID beside the default subnets: its own read
        bake = _subnets_in(environment, vpcs[0], collect(ec2, "describe_subnets", "Subnets", SubnetIds=bake_ids))[
            bake_ids[0]
        ]
    return SubnetsRead(vpcs[0], subnets, subnets, bake)


def _subnets_in(environment: AwsContext, vpc_id: str, described: list[dict[str, Any]]) -> dict[str, Subnet]:
    """The subnets DESCRIBED by id; DeployError naming the keys to fix when one is of another VPC than VPC_ID."""
    listed = [Subnet.from_aws(raw) for raw in described]
    wrong = [subnet.id for subnet in listed if subnet.vpc_id != vpc_id]
    if wrong:
        config = environment.config
        keys = [
            key
            for key, ids in (
                ("SUBNET_IDS", config.subnet_ids),
                ("LB_SUBNET_IDS", config.lb_subnet_ids),
                ("BAKE_SUBNET_ID", (config.bake_subnet_id,)),
            )
            if set(wrong) & set(ids or ())
        ]
        raise DeployError(f"{' and '.join(keys)} {', '.join(wrong)} are not in VPC {vpc_id}.")
    return {subnet.id: subnet for subnet in listed}


def _default_vpc(environment: AwsContext) -> str:
    config = environment.config
    vpcs = environment.aws.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise DeployError(
            f"{config.region} has no default VPC (accounts made since 2013 may have deleted it): set VPC_ID and"
            f" SUBNET_IDS in {config.source_of('VPC_ID')}."
        )
    return str(vpcs[0]["VpcId"])


def security_groups(environment: AwsContext, vpc_id: str) -> dict[str, dict[str, Any]]:
    """The environment's security groups (NAME-lb, NAME-web, NAME-bake) in VPC_ID by name: one read for both, once per
    run (facts.SECURITY_GROUPS); whoever changes one tells the memo (`remember_security_group`)."""
    names = environment.names
    wanted = [names.lb_security_group, names.instance_security_group, names.bake_security_group]

    def read() -> tuple[str, dict[str, dict[str, Any]]]:
        filters = [{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": wanted}]
        found = collect(environment.aws.ec2, "describe_security_groups", "SecurityGroups", Filters=filters)
        return vpc_id, {group["GroupName"]: group for group in found if group["GroupName"] in wanted}

    known_vpc, groups = environment.facts.once(facts.SECURITY_GROUPS, read)
    if known_vpc != vpc_id:  # another VPC than the one read (VPC_ID changed between two reads of one process)
        known_vpc, groups = read()
        environment.facts.put(facts.SECURITY_GROUPS, (known_vpc, groups))
    return groups


def remember_security_group(environment: AwsContext, vpc_id: str, group: dict[str, Any]) -> None:
    """GROUP is now what this run made it (created, rules changed): later readers of the run use it."""
    known = environment.facts.get(facts.SECURITY_GROUPS)
    if known is not None and known[0] == vpc_id:
        environment.facts.put(facts.SECURITY_GROUPS, (vpc_id, {**known[1], group["GroupName"]: group}))


def find_security_group(environment: AwsContext, vpc_id: str, name: str) -> dict[str, Any] | None:
    names = environment.names
    if name in (names.lb_security_group, names.instance_security_group, names.bake_security_group):
        return security_groups(environment, vpc_id).get(name)
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}]
    groups = environment.aws.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    return groups[0] if groups else None


def ensure_security_group(
    environment: AwsContext, vpc_id: str, name: str, description: str, desired: set[Rule], dry_run: bool = False
) -> tuple[str, list[str]]:
    """Create or converge the group; return its id and what changed. A dry run names a group it would create
    "(new NAME)"."""
    ec2 = environment.aws.ec2
    changes = Changes(dry_run)
    group = find_security_group(environment, vpc_id, name)
    if group is None:
        created = changes.make(
            f"created security group {name}",
            lambda: ec2.create_security_group(
                GroupName=name,
                Description=description,
                VpcId=vpc_id,
                TagSpecifications=[
                    {"ResourceType": "security-group", "Tags": tag_list(environment.names.tags(Name=name))}
                ],
            ),
        )
        group = {"GroupId": created["GroupId"] if created else f"(new {name})", "IpPermissions": []}
    group_id = str(group["GroupId"])
    to_add, to_remove = rule_changes(rules_of(group.get("IpPermissions", [])), desired)
    if to_add:
        permissions = [rule.as_permission() for rule in to_add]
        changes.make(
            [f"allowed {_describe(rule)}" for rule in to_add],
            # A group created a moment ago may not be found yet (eventual consistency): retried, bounded.
            lambda: after_create(
                lambda: ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=permissions),
                environment.sleep,
            ),
            subject=name,
        )
    if to_remove:
        changes.make(
            [f"revoked {_describe(rule)}" for rule in to_remove],
            lambda: ec2.revoke_security_group_ingress(
                GroupId=group_id, IpPermissions=[rule.as_permission() for rule in to_remove]
            ),
            subject=name,
        )
    if changes and not dry_run:
        permissions = [rule.as_permission() for rule in sorted(desired, key=_key)]
        remember_security_group(
            environment, vpc_id, {**group, "GroupName": name, "VpcId": vpc_id, "IpPermissions": permissions}
        )
    return group_id, list(changes)


def delete_security_group(environment: AwsContext, group_id: str) -> str | None:
    """Delete it; None once deleted (or gone), "DependencyViolation" while something still uses it."""
    return refusal(lambda: environment.aws.ec2.delete_security_group(GroupId=group_id), "DependencyViolation")


def security_groups_named(environment: AwsContext, names: list[str]) -> list[dict[str, Any]]:
    """The security groups with these names, in any VPC."""
    found = collect(
        environment.aws.ec2,
        "describe_security_groups",
        "SecurityGroups",
        Filters=[{"Name": "group-name", "Values": names}],
    )
    return [group for group in found if group["GroupName"] in names]
