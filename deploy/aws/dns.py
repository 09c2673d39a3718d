"""Route 53: the environment's hosted zone and the ALIAS record at its host."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment as Jinja
from jinja2 import FileSystemLoader, StrictUndefined

from deploy import facts
from deploy.aws.clients import or_none
from deploy.aws.context import AwsContext
from deploy.aws.converge import Changes
from deploy.errors import DeployError
from deploy.settings import ROOT

TEMPLATES = Jinja(loader=FileSystemLoader(ROOT / "templates"), undefined=StrictUndefined, autoescape=False)
TEMPLATES.filters["tojson"] = json.dumps


def find_hosted_zone(environment: AwsContext) -> str:
    """HOSTED_ZONE_ID, or the public zone whose name is DOMAIN; DeployError saying what to do when there is none."""
    zone_id = hosted_zone(environment)
    if zone_id is None:
        config = environment.config
        raise DeployError(
            f"No public Route 53 hosted zone named {config.domain}. Create it, or set HOSTED_ZONE_ID in"
            f" env/{config.env}.env."
        )
    return zone_id


def hosted_zone(environment: AwsContext) -> str | None:
    """HOSTED_ZONE_ID, or the public zone whose name is DOMAIN (None: there is none), read once per run
    (facts.HOSTED_ZONE). A HOSTED_ZONE_ID that does not exist, or cannot hold the host, is a DeployError."""
    return environment.facts.once(facts.HOSTED_ZONE, lambda: _read_hosted_zone(environment))


def remember_hosted_zone(environment: AwsContext, zone_id: str) -> None:
    """The zone this run just created (the embedded cloud's seed): later lookups of the run use it."""
    environment.facts.put(facts.HOSTED_ZONE, zone_id)


def _read_hosted_zone(environment: AwsContext) -> str | None:
    config = environment.config
    route53 = environment.aws.route53
    domain = str(config.domain)
    host = environment.names.host.lower()
    if config.hosted_zone_id:
        zone_id = str(config.hosted_zone_id)
        found = or_none(lambda: route53.get_hosted_zone(Id=zone_id))
        if found is None:
            raise DeployError(
                f"HOSTED_ZONE_ID {zone_id} does not exist (DOMAIN {domain}): fix it in"
                f" {config.source_of('HOSTED_ZONE_ID')}, or leave it empty to use the public zone named DOMAIN."
            )
        zone = found["HostedZone"]
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
    return str(public[0]["Id"]).split("/")[-1] if public else None


def render_alias_change(host: str, dns_name: str, zone_id: str) -> dict[str, Any]:
    text = TEMPLATES.get_template("route53-alias.json.j2").render(
        host=host, dns_name=dns_name, hosted_zone_id=zone_id, comment=f"immutable-deploy alias for {host}"
    )
    change: dict[str, Any] = json.loads(text)
    return change


def alias_matches(record: dict[str, Any] | None, host: str, dns_name: str, zone_id: str) -> bool:
    if record is None or record.get("Name", "").rstrip(".") != host or record.get("Type") != "A":
        return False
    alias = record.get("AliasTarget") or {}
    return (
        alias.get("DNSName", "").rstrip(".").lower() == dns_name.rstrip(".").lower()
        and alias.get("HostedZoneId") == zone_id
        and alias.get("EvaluateTargetHealth") is True
    )


def host_records(environment: AwsContext, zone_id: str) -> list[dict[str, Any]]:
    """Every record at the environment's host (A, AAAA, CNAME, ...): the one read of it per run."""
    host = environment.names.host.lower()
    found = environment.aws.route53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=host, MaxItems="5")[
        "ResourceRecordSets"
    ]
    return [record for record in found if record["Name"].rstrip(".").lower() == host]


def a_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((record for record in records if record["Type"] == "A"), None)


def ensure_alias_record(
    environment: AwsContext, zone_id: str | None, records: list[dict[str, Any]], dry_run: bool = False
) -> list[str]:
    """Point the host at the load balancer (ALIAS A), unless RECORDS (read before) show it does already."""
    host = environment.names.host
    changes = Changes(dry_run)
    if zone_id is None or not environment.load_balancer.exists():
        # Only in a dry run (a real one has created both by now): the load balancer's DNS name is not known yet.
        changes.make(f"pointed {host} (ALIAS A) at {environment.load_balancer.name}")
        return list(changes)
    dns_name, lb_zone_id = environment.load_balancer.dns_target()
    if not alias_matches(a_record(records), host, dns_name, lb_zone_id):
        changes.make(
            f"pointed {host} (ALIAS A) at {dns_name}",
            lambda: environment.aws.route53.change_resource_record_sets(
                HostedZoneId=zone_id, ChangeBatch=render_alias_change(host, dns_name, lb_zone_id)
            ),
        )
    return list(changes)


def delete_record(environment: AwsContext, zone_id: str, record: dict[str, Any]) -> None:
    """Delete exactly the record read before (Route 53 refuses if it changed since: InvalidChangeBatch)."""
    environment.aws.route53.change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": record}]}
    )


def foreign_record(environment: AwsContext, records: list[dict[str, Any]]) -> str | None:
    """A record at the host that is not this environment's alias: a live site must never be repointed silently.

    Ours is exactly an alias to this environment's load balancer in this region: its DNS name as AWS
    describes it (NAME-<digits>.REGION.elb.amazonaws.com), never a name pattern, so a record of the same
    environment in another region is foreign. Anything else at the host (another alias, a plain A, a
    CNAME) is not ours either; while the load balancer does not exist, no record is.
    """
    host = environment.names.host
    found = environment.load_balancer.describe()  # the description setup converges from: no read of its own
    ours = str(found["DNSName"]).lower().rstrip(".") if found else None
    for record in records:
        if record["Type"] not in ("A", "AAAA", "CNAME"):
            continue
        target = (record.get("AliasTarget") or {}).get("DNSName", "").lower().rstrip(".").removeprefix("dualstack.")
        if ours is None or target != ours:
            values = target or ", ".join(r["Value"] for r in record.get("ResourceRecords", []))
            return f"{record['Type']} {host} → {values}"
    return None
