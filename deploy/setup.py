"""`inv setup`: once per environment, the load balancer, its security groups, the DNS record and the key pair.

Idempotent: each part compares what exists with what is wanted and changes only the difference,
so a second run changes nothing and says so.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from jinja2 import Environment as Jinja
from jinja2 import FileSystemLoader, StrictUndefined

from deploy.aws.clients import collect, error_code
from deploy.aws.loadbalancers import HealthCheck
from deploy.config import ROOT, work_dir
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.naming import tag_list

TEMPLATES = Jinja(loader=FileSystemLoader(ROOT / "templates"), undefined=StrictUndefined, autoescape=False)
TEMPLATES.filters["tojson"] = json.dumps


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
    key = lambda rule: (rule.port, rule.cidr or "", rule.group_id or "")  # noqa: E731
    return sorted(desired - current, key=key), sorted(current - desired, key=key)


def _describe(rule: Rule) -> str:
    return f"tcp {rule.port} from {rule.cidr or rule.group_id}"


def resolve_network(environment: Environment) -> tuple[str, list[str]]:
    """VPC_ID and SUBNET_IDS, or the default VPC and its default subnets."""
    ec2 = environment.aws.ec2
    config = environment.config
    vpc_id = config.vpc_id
    if vpc_id is None:
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise DeployError("This region has no default VPC: set VPC_ID and SUBNET_IDS in the env file.")
        vpc_id = vpcs[0]["VpcId"]
    subnet_ids = list(config.subnet_ids or [])  # type: ignore[arg-type]
    if subnet_ids:
        found = collect(ec2, "describe_subnets", "Subnets", SubnetIds=subnet_ids)
        wrong = [s["SubnetId"] for s in found if s["VpcId"] != vpc_id]
        if wrong:
            raise DeployError(f"SUBNET_IDS {', '.join(wrong)} are not in VPC {vpc_id}.")
    else:
        filters = [{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "default-for-az", "Values": ["true"]}]
        subnet_ids = sorted(s["SubnetId"] for s in collect(ec2, "describe_subnets", "Subnets", Filters=filters))
        if not subnet_ids:
            raise DeployError(f"VPC {vpc_id} has no default subnets: set SUBNET_IDS in the env file.")
    return str(vpc_id), subnet_ids


def find_security_group(environment: Environment, vpc_id: str, name: str) -> dict[str, Any] | None:
    filters = [{"Name": "vpc-id", "Values": [vpc_id]}, {"Name": "group-name", "Values": [name]}]
    groups = environment.aws.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
    return groups[0] if groups else None


def ensure_security_group(
    environment: Environment, vpc_id: str, name: str, description: str, desired: set[Rule], dry_run: bool = False
) -> tuple[str, list[str]]:
    """Create or converge the group; DRY_RUN only reports ("would …") and names a group to be made "(new NAME)"."""
    ec2 = environment.aws.ec2
    changes: list[str] = []
    group = find_security_group(environment, vpc_id, name)
    if group is None and dry_run:
        group = {"GroupId": f"(new {name})", "IpPermissions": []}
        changes.append(f"would create security group {name}")
    elif group is None:
        created = ec2.create_security_group(
            GroupName=name,
            Description=description,
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list(environment.names.tags(Name=name))}],
        )
        group = {"GroupId": created["GroupId"], "IpPermissions": []}
        changes.append(f"created security group {name} ({created['GroupId']})")
    group_id = group["GroupId"]
    to_add, to_remove = rule_changes(rules_of(group.get("IpPermissions", [])), desired)
    if to_add:
        if not dry_run:
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[r.as_permission() for r in to_add])
        changes.extend(f"{name}: {'would allow' if dry_run else 'allowed'} {_describe(r)}" for r in to_add)
    if to_remove:
        if not dry_run:
            ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=[r.as_permission() for r in to_remove])
        changes.extend(f"{name}: {'would revoke' if dry_run else 'revoked'} {_describe(r)}" for r in to_remove)
    return group_id, changes


def find_hosted_zone(environment: Environment) -> str:
    """HOSTED_ZONE_ID, or the public zone whose name is DOMAIN."""
    config = environment.config
    route53 = environment.aws.route53
    domain = str(config.domain)
    host = environment.names.host.lower()
    if config.hosted_zone_id:
        zone_id = str(config.hosted_zone_id)
        try:
            zone = route53.get_hosted_zone(Id=zone_id)["HostedZone"]
        except ClientError as error:
            if error_code(error) == "NoSuchHostedZone":
                raise DeployError(
                    f"HOSTED_ZONE_ID {zone_id} does not exist (DOMAIN {domain}): fix it in env/{config.env}.env,"
                    " or leave it empty to use the public zone named DOMAIN."
                ) from None
            raise
        zone_name = zone["Name"].rstrip(".").lower()
        # Route 53 only takes records inside the zone: catch a wrong zone before anything is created.
        if host != zone_name and not host.endswith(f".{zone_name}"):
            raise DeployError(
                f"HOSTED_ZONE_ID {zone_id} is the zone {zone_name}, which cannot hold {host} (DOMAIN {domain}):"
                f" fix it in env/{config.env}.env."
            )
        return zone_id
    zones = route53.list_hosted_zones_by_name(DNSName=domain, MaxItems="10")["HostedZones"]
    # Exact, public matches only: the listing starts at DOMAIN but may go on past it.
    public = [z for z in zones if z["Name"].rstrip(".") == domain and not z.get("Config", {}).get("PrivateZone")]
    if not public:
        raise DeployError(
            f"No public Route 53 hosted zone named {domain}. Create it, or set HOSTED_ZONE_ID in env/{config.env}.env."
        )
    return public[0]["Id"].split("/")[-1]


def render_alias_change(host: str, dns_name: str, zone_id: str) -> dict[str, Any]:
    text = TEMPLATES.get_template("route53-alias.json.j2").render(
        host=host, dns_name=dns_name, hosted_zone_id=zone_id, comment=f"immutable-deploy alias for {host}"
    )
    return json.loads(text)


def alias_matches(record: dict[str, Any] | None, host: str, dns_name: str, zone_id: str) -> bool:
    if record is None or record.get("Name", "").rstrip(".") != host or record.get("Type") != "A":
        return False
    alias = record.get("AliasTarget") or {}
    return (
        alias.get("DNSName", "").rstrip(".").lower() == dns_name.rstrip(".").lower()
        and alias.get("HostedZoneId") == zone_id
        and alias.get("EvaluateTargetHealth") is True
    )


def ensure_alias_record(environment: Environment, zone_id: str | None, dry_run: bool = False) -> list[str]:
    host = environment.names.host
    if dry_run and (zone_id is None or not environment.load_balancer.exists()):
        return [f"would point {host} (ALIAS A) at {environment.load_balancer.name}"]
    assert zone_id is not None
    dns_name, lb_zone_id = environment.load_balancer.dns_target()
    route53 = environment.aws.route53
    found = route53.list_resource_record_sets(
        HostedZoneId=zone_id, StartRecordName=host, StartRecordType="A", MaxItems="1"
    )["ResourceRecordSets"]
    if alias_matches(found[0] if found else None, host, dns_name, lb_zone_id):
        return []
    if dry_run:
        return [f"would point {host} (ALIAS A) at {dns_name}"]
    route53.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch=render_alias_change(host, dns_name, lb_zone_id)
    )
    return [f"pointed {host} (ALIAS A) at {dns_name}"]


def key_path(env: str) -> Path:
    return work_dir() / "deploy" / "keys" / env


def ensure_local_key(path: Path, dry_run: bool = False) -> list[str]:
    """An ed25519 key at PATH with mode 0600, generated with ssh-keygen unless present."""
    if path.is_file():
        if stat.S_IMODE(path.stat().st_mode) != 0o600:
            if dry_run:
                return [f"would set {path} to mode 0600"]
            path.chmod(0o600)
            return [f"set {path} to mode 0600"]
        return []
    if dry_run:
        return [f"would generate ssh key {path}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise DeployError("ssh-keygen is missing: install it with `apt-get install openssh-client`.") from None
    except subprocess.CalledProcessError as error:
        raise DeployError(f"ssh-keygen failed: {error.stderr.strip()}") from None
    os.chmod(path, 0o600)
    return [f"generated ssh key {path}"]


def public_key_of(path: Path) -> bytes:
    """The public half of the key at PATH: its .pub file, or derived from the private key when that is gone."""
    public = path.with_suffix(".pub")
    if public.is_file():
        return public.read_bytes()
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, timeout=30)
    if derived.returncode != 0:
        raise DeployError(f"Cannot read the ssh key {path}: {derived.stderr.decode(errors='replace').strip()}")
    public.write_bytes(derived.stdout)
    return derived.stdout


def ensure_key_pair(environment: Environment, dry_run: bool = False) -> list[str]:
    ec2 = environment.aws.ec2
    name = environment.names.key_pair
    path = key_path(environment.env)
    try:
        ec2.describe_key_pairs(KeyNames=[name])
        in_aws = True
    except ClientError as error:
        if error_code(error) != "InvalidKeyPair.NotFound":
            raise
        in_aws = False
    if in_aws and not path.is_file():
        # Never replace a key silently: instances launched with it would become unreachable.
        environment.say(
            f"warning: key pair {name} exists in AWS but its private key {path} is missing here;"
            f" ssh to the instances will not work from this machine. To replace it, delete the key pair"
            f" ({name}) in AWS and run setup again."
        )
        return []
    changes = ensure_local_key(path, dry_run)
    if not in_aws and dry_run:
        changes.append(f"would import key pair {name}")
    elif not in_aws:
        public_key = public_key_of(path)
        ec2.import_key_pair(
            KeyName=name,
            PublicKeyMaterial=public_key,
            TagSpecifications=[{"ResourceType": "key-pair", "Tags": tag_list(environment.names.tags())}],
        )
        changes.append(f"imported key pair {name}")
    return changes


def foreign_record(environment: Environment, zone_id: str) -> str | None:
    """A record at the host that is not this environment's alias: a live site must never be repointed silently.

    An alias to this environment's load balancer (elb-NAME-… / alb-NAME-…, as the original scripts made
    it too) is this tool's; anything else at the host (another alias, a plain A, a CNAME) is not.
    """
    host = environment.names.host
    found = environment.aws.route53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=host, MaxItems="5")[
        "ResourceRecordSets"
    ]
    # AWS names a load balancer's DNS NAME-<digits>.REGION.elb.amazonaws.com (moto leaves the digits out).
    ours = re.compile(
        rf"{re.escape(environment.load_balancer.name.lower())}(-\d+)?\.[a-z0-9-]+\.elb\.amazonaws\.com\.?"
    )
    for record in found:
        if record["Name"].rstrip(".").lower() != host or record["Type"] not in ("A", "AAAA", "CNAME"):
            continue
        target = (record.get("AliasTarget") or {}).get("DNSName", "").lower().removeprefix("dualstack.")
        if not ours.fullmatch(target):
            values = target or ", ".join(r["Value"] for r in record.get("ResourceRecords", []))
            return f"{record['Type']} {host} → {values}"
    return None


def run_setup(environment: Environment, dry_run: bool = False, take_over_dns: bool = False) -> list[str]:
    """Create or converge every resource of the environment; return the changes made.

    DRY_RUN: the same comparisons, no change: return what would change, each line starting with "would".
    TAKE_OVER_DNS: replace a record at the host that points somewhere else (refused otherwise).
    """
    names = environment.names
    # Everything that can be wrong with the input is checked before the first resource is created.
    try:
        zone_id: str | None = find_hosted_zone(environment)
    except DeployError:
        if not (dry_run and environment.config.local_cloud):
            raise
        zone_id = None  # not seeded yet: the embedded cloud creates the zone when a real run starts
    vpc_id, subnet_ids = resolve_network(environment)
    balancer = environment.load_balancer
    balancer.preflight(vpc_id)  # refuses a switch of kind (or a certificate that cannot serve) before anything exists
    existing = foreign_record(environment, zone_id) if zone_id else None
    if existing and not take_over_dns:
        raise DeployError(
            f"The host already has a record that is not this environment's: {existing}. Setup would repoint"
            " it at a load balancer with nothing deployed yet. Re-run with --take-over-dns to replace it."
        )
    lb_rules = {Rule(port, cidr="0.0.0.0/0") for port in balancer.ingress_ports()}  # 443 only with a certificate
    lb_group_id, changes = ensure_security_group(
        environment, vpc_id, names.lb_security_group, f"load balancer of {names.stack}", lb_rules, dry_run
    )
    instance_rules = {Rule(int(environment.config.app_port), group_id=lb_group_id)}  # APP_PORT, from the LB only
    if environment.config.ssh_cidr:
        instance_rules.add(Rule(22, cidr=str(environment.config.ssh_cidr)))
    _, instance_changes = ensure_security_group(
        environment, vpc_id, names.instance_security_group, f"web servers of {names.stack}", instance_rules, dry_run
    )
    changes += instance_changes
    health = HealthCheck(path=str(environment.config.health_check_path), port=int(environment.config.app_port))
    changes += balancer.ensure(subnet_ids, lb_group_id, health, dry_run=dry_run, vpc_id=vpc_id)
    changes += ensure_alias_record(environment, zone_id, dry_run)
    changes += ensure_key_pair(environment, dry_run)
    for change in changes:
        environment.say(f"  {change}")
    if not changes:
        environment.say(f"  nothing {'would change' if dry_run else 'to change'}: {names.stack} is already set up")
    scheme = "https" if 443 in balancer.ingress_ports() else "http"
    environment.say(f"  {scheme}://{names.host}/ → {balancer.name} ({balancer.kind} load balancer)")
    return changes
