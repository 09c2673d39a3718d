"""`inv setup`: once per environment, the load balancer, its security groups, the DNS record and the key pair.

Idempotent: each part compares what exists with what is wanted and changes only the difference,
so a second run changes nothing and says so. Each fact is read once (issue 13): a second setup that changes
nothing reads the hosted zone, the subnets, the load balancer (an ALB: with its target group, its attributes
and its listeners; a classic one: with its attributes), the host's records, both security groups at once and
the key pair, and nothing else.
"""

from __future__ import annotations

from deploy.aws.dns import (
    ensure_alias_record,
    find_hosted_zone,
    foreign_record,
    host_records,
    hosted_zone,
    remember_hosted_zone,
)
from deploy.aws.keys import ensure_key_pair
from deploy.aws.loadbalancers import HealthCheck
from deploy.aws.network import Rule, ensure_security_group
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.localcloud.seed import seed_zone
from deploy.steps.networking import checked_subnets
from deploy.views.plan import HEADER


def setup_zone(environment: Environment, dry_run: bool) -> tuple[str | None, list[str]]:
    """The hosted zone's id (None only in a dry run that would create it) and what a dry run would seed.

    The embedded cloud has no zone until a setup needs it: created here, from this lookup (no read of its own).
    """
    zone_id = hosted_zone(environment)
    if zone_id is not None or not environment.config.local_cloud:
        return find_hosted_zone(environment), []  # on AWS a missing zone is the user's to create: refused
    zone_id, planned = seed_zone(environment.config, environment.aws.route53, environment.say, dry_run)
    if zone_id is not None:
        remember_hosted_zone(environment, zone_id)
    return zone_id, planned


def run_setup(environment: Environment, dry_run: bool = False, take_over_dns: bool = False) -> list[str]:
    """Create or converge every resource of the environment; return the changes made.

    DRY_RUN: the same comparisons, no change: return what would change, each line starting with "would" (after
    what the embedded cloud's seed would create). TAKE_OVER_DNS: replace a record at the host that points
    somewhere else (refused otherwise).
    """
    names = environment.names
    # Everything that can be wrong with the input is checked before the first resource is created.
    zone_id, seeded = setup_zone(environment, dry_run)
    # No default VPC, subnets of another VPC, too few zones: refused. INSTANCE_TYPE is not read here: setup launches
    # no instance (launch-asg and the bakes check it before they start one).
    network = checked_subnets(environment)
    vpc_id, subnet_ids = network.vpc_id, network.subnet_ids
    balancer = environment.load_balancer
    balancer.preflight(vpc_id)  # refuses a switch of kind (or a certificate that cannot serve) before anything exists
    records = host_records(environment, zone_id) if zone_id else []
    existing = foreign_record(environment, records)
    if existing and not take_over_dns:
        raise DeployError(
            f"The host already has a record that is not this environment's: {existing}. Setup would repoint"
            " it at a load balancer with nothing deployed yet. Re-run with --take-over-dns to replace it."
        )
    lb_rules = {Rule(port, cidr="0.0.0.0/0") for port in balancer.ingress_ports()}  # 443 only with a certificate
    lb_group_id, changes = ensure_security_group(
        environment, vpc_id, names.lb_security_group, f"load balancer of {names.stack}", lb_rules, dry_run
    )
    # APP_PORT, from the load balancer only; and the ports of the target groups that serve now (an APP_PORT change
    # on the application kind: the serving group keeps its port reachable until a deploy replaced it).
    ports = {environment.config.app_port, *balancer.serving_ports()}
    instance_rules = {Rule(port, group_id=lb_group_id) for port in ports}
    if environment.config.ssh_cidr:
        instance_rules.add(Rule(22, cidr=str(environment.config.ssh_cidr)))
    _, instance_changes = ensure_security_group(
        environment, vpc_id, names.instance_security_group, f"web servers of {names.stack}", instance_rules, dry_run
    )
    changes += instance_changes
    health = HealthCheck(path=environment.config.health_check_path, port=environment.config.app_port)
    changes += balancer.ensure(subnet_ids, lb_group_id, health, dry_run=dry_run, vpc_id=vpc_id)
    changes += ensure_alias_record(environment, zone_id, records, dry_run)
    changes += ensure_key_pair(environment, dry_run)
    changes = seeded + changes
    for change in changes:
        environment.say(f"  {change}")
    if not changes:
        environment.say(f"  nothing {'would change' if dry_run else 'to change'}: {names.stack} is already set up")
    scheme = "https" if 443 in balancer.ingress_ports() else "http"
    environment.say(f"  {scheme}://{names.host}/ → {balancer.name} ({balancer.kind} load balancer)")
    return changes


def setup_plan(environment: Environment) -> list[str]:
    """`inv setup --dry-run`: setup's own comparisons with dry_run (the embedded cloud's seed first)."""
    environment.say(HEADER)
    return run_setup(environment, dry_run=True)
