"""`inv setup` in-process against moto's mock_aws: every resource, every attribute, idempotence."""

from __future__ import annotations

import dataclasses
import io
import re
import stat
from pathlib import Path

import boto3
import pytest
from conftest import REGION, write_env_folder

from deploy.aws.clients import Aws
from deploy.config import load_config
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.logs import RunLog
from deploy.steps.setup import run_setup


def client(service: str):
    return boto3.client(service, region_name=REGION)


def make_environment(tmp_path: Path, env: str = "staging", extra: str = "") -> Environment:
    """An Environment on real AWS settings (no endpoint, LOCAL_CLOUD=false), built without open_environment.

    These tests keep the original scripts' classic load balancer; tests/test_alb.py covers the application kind.
    """
    folder = write_env_folder(tmp_path / "env", {f"{env}.env": f"DOMAIN=example.com\nLOAD_BALANCER=classic\n{extra}"})
    config = load_config(env, folder=folder, environ={})
    assert config.endpoint_url is None and not config.local_cloud
    log = RunLog(env, root=tmp_path / "log", out=io.StringIO())
    return Environment(config=config, log=log, aws=Aws(config, log))


def output(environment: Environment) -> str:
    return environment.log.out.getvalue()  # type: ignore[attr-defined]


def create_zone(name: str = "example.com") -> str:
    return client("route53").create_hosted_zone(Name=name, CallerReference=f"test-{name}")["HostedZone"]["Id"]


def security_group(name: str) -> dict | None:
    found = client("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])
    return found["SecurityGroups"][0] if found["SecurityGroups"] else None


def inbound(group: dict) -> set[tuple]:
    """(protocol, from, to, source) of every inbound rule."""
    rules = set()
    for permission in group["IpPermissions"]:
        ports = (permission["IpProtocol"], permission.get("FromPort"), permission.get("ToPort"))
        rules.update((*ports, r["CidrIp"]) for r in permission.get("IpRanges", []))
        rules.update((*ports, r["CidrIpv6"]) for r in permission.get("Ipv6Ranges", []))
        rules.update((*ports, p["GroupId"]) for p in permission.get("UserIdGroupPairs", []))
    return rules


def alias_record(zone_id: str, host: str) -> dict | None:
    records = client("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    matches = [r for r in records if r["Name"].rstrip(".") == host and r["Type"] == "A"]
    assert len(matches) <= 1
    return matches[0] if matches else None


def load_balancers() -> list[dict]:
    return client("elb").describe_load_balancers()["LoadBalancerDescriptions"]


def key_pairs() -> list[dict]:
    return client("ec2").describe_key_pairs()["KeyPairs"]


def test_setup_creates_every_resource_with_its_attributes(cloud, tmp_path, work_dir):
    zone_id = create_zone()
    environment = make_environment(tmp_path)

    changes = run_setup(environment)

    assert changes
    ec2 = client("ec2")
    vpc_id = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    default_subnets = sorted(
        s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    )

    lb_group = security_group("webapp-staging-lb")
    web_group = security_group("webapp-staging-web")
    assert lb_group is not None and web_group is not None
    assert lb_group["VpcId"] == web_group["VpcId"] == vpc_id
    assert inbound(lb_group) == {("tcp", 80, 80, "0.0.0.0/0")}
    assert inbound(web_group) == {("tcp", 80, 80, lb_group["GroupId"])}  # no ssh without SSH_CIDR
    assert {"Key": "ManagedBy", "Value": "immutable-deploy"} in lb_group["Tags"]

    [lb] = load_balancers()
    assert lb["LoadBalancerName"] == "elb-webapp-staging"
    [listener] = [d["Listener"] for d in lb["ListenerDescriptions"]]
    assert (listener["Protocol"], listener["LoadBalancerPort"]) == ("HTTP", 80)
    assert (listener["InstanceProtocol"], listener["InstancePort"]) == ("HTTP", 80)
    assert sorted(lb["Subnets"]) == default_subnets
    assert lb["SecurityGroups"] == [lb_group["GroupId"]]
    assert lb["HealthCheck"] == {
        "Target": "HTTP:80/api/status/health",
        "Interval": 30,
        "Timeout": 4,
        "UnhealthyThreshold": 2,
        "HealthyThreshold": 2,
    }
    attributes = client("elb").describe_load_balancer_attributes(LoadBalancerName="elb-webapp-staging")
    assert attributes["LoadBalancerAttributes"]["ConnectionDraining"] == {"Enabled": True, "Timeout": 300}

    record = alias_record(zone_id, "staging.example.com")
    assert record is not None
    assert record["AliasTarget"]["DNSName"].rstrip(".").lower() == lb["DNSName"].lower()
    assert record["AliasTarget"]["EvaluateTargetHealth"] is True
    assert record["AliasTarget"]["HostedZoneId"] == "Z35SXDOTRQ7X7K"  # ELB's zone in us-east-1

    key_file = work_dir / "deploy" / "keys" / "staging"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [k["KeyName"] for k in key_pairs()] == ["webapp-staging"]
    public_key = key_file.with_suffix(".pub").read_text().split()[1]
    described = ec2.describe_key_pairs(KeyNames=["webapp-staging"], IncludePublicKey=True)["KeyPairs"][0]
    assert public_key in described["PublicKey"]  # the imported key is the local one

    assert "http://staging.example.com/ → elb-webapp-staging" in output(environment)


def test_a_second_run_changes_nothing_and_says_so(cloud, tmp_path):
    create_zone()
    first = run_setup(make_environment(tmp_path / "first"))
    assert any("created load balancer" in change for change in first)

    again = make_environment(tmp_path / "again")
    assert run_setup(again) == []
    assert "nothing to change: webapp-staging is already set up" in output(again)
    assert len(load_balancers()) == 1
    assert len(key_pairs()) == 1


def test_production_points_the_apex_at_the_load_balancer(cloud, tmp_path):
    zone_id = create_zone()
    run_setup(make_environment(tmp_path, env="production"))
    [lb] = load_balancers()
    assert lb["LoadBalancerName"] == "elb-webapp-production"
    record = alias_record(zone_id, "example.com")
    assert record is not None
    assert record["AliasTarget"]["DNSName"].rstrip(".").lower() == lb["DNSName"].lower()
    assert alias_record(zone_id, "production.example.com") is None


def test_ssh_is_opened_from_ssh_cidr_and_revoked_when_it_is_removed(cloud, tmp_path):
    create_zone()
    with_ssh = make_environment(tmp_path / "ssh", extra="SSH_CIDR=203.0.113.7/32\n")
    run_setup(with_ssh)
    lb_id = security_group("webapp-staging-lb")["GroupId"]
    assert inbound(security_group("webapp-staging-web")) == {
        ("tcp", 80, 80, lb_id),
        ("tcp", 22, 22, "203.0.113.7/32"),
    }
    assert inbound(security_group("webapp-staging-lb")) == {("tcp", 80, 80, "0.0.0.0/0")}  # no ssh to the LB

    without_ssh = make_environment(tmp_path / "nossh")
    changes = run_setup(without_ssh)
    assert changes == ["webapp-staging-web: revoked tcp 22 from 203.0.113.7/32"]
    assert inbound(security_group("webapp-staging-web")) == {("tcp", 80, 80, lb_id)}


def test_an_ipv6_ssh_cidr_becomes_an_ipv6_rule(cloud, tmp_path):
    create_zone()
    run_setup(make_environment(tmp_path / "first", extra="SSH_CIDR=2001:db8::/32\n"))
    assert ("tcp", 22, 22, "2001:db8::/32") in inbound(security_group("webapp-staging-web"))
    assert run_setup(make_environment(tmp_path / "again", extra="SSH_CIDR=2001:db8::/32\n")) == []


def assert_nothing_created(work_dir: Path) -> None:
    assert load_balancers() == []
    assert security_group("webapp-staging-lb") is None
    assert security_group("webapp-staging-web") is None
    assert key_pairs() == []
    assert not (work_dir / "deploy" / "keys" / "staging").exists()


def test_a_missing_hosted_zone_fails_before_anything_is_created(cloud, tmp_path, work_dir):
    create_zone("example.org")  # another domain's zone does not count
    environment = make_environment(tmp_path)
    with pytest.raises(DeployError) as caught:
        run_setup(environment)
    message = str(caught.value)
    assert "example.com" in message
    assert "HOSTED_ZONE_ID" in message
    assert_nothing_created(work_dir)


def test_a_private_zone_of_the_domain_does_not_count(cloud, tmp_path, work_dir):
    vpc_id = client("ec2").describe_vpcs()["Vpcs"][0]["VpcId"]
    client("route53").create_hosted_zone(
        Name="example.com",
        CallerReference="private",
        HostedZoneConfig={"PrivateZone": True, "Comment": "internal"},
        VPC={"VPCRegion": REGION, "VPCId": vpc_id},
    )
    with pytest.raises(DeployError, match=re.escape("No public Route 53 hosted zone named example.com")):
        run_setup(make_environment(tmp_path))
    assert_nothing_created(work_dir)


def with_zone_id(environment: Environment, zone_id: str) -> Environment:
    # Real zone ids start with Z, as the config checks; moto's are random letters: bypass the check.
    config = dataclasses.replace(environment.config, hosted_zone_id=zone_id)
    return Environment(config=config, log=environment.log, aws=Aws(config, environment.log))


def test_a_hosted_zone_id_that_does_not_exist_fails_before_anything_is_created(cloud, tmp_path, work_dir):
    create_zone()
    environment = with_zone_id(make_environment(tmp_path), "Z0000000000NOSUCHZONE")
    with pytest.raises(DeployError) as caught:
        run_setup(environment)
    assert "HOSTED_ZONE_ID Z0000000000NOSUCHZONE does not exist" in str(caught.value)
    assert "example.com" in str(caught.value)
    assert_nothing_created(work_dir)


def test_a_hosted_zone_id_of_another_domain_fails_before_anything_is_created(cloud, tmp_path, work_dir):
    other = create_zone("example.org").split("/")[-1]
    environment = with_zone_id(make_environment(tmp_path), other)
    with pytest.raises(DeployError, match=re.escape("cannot hold staging.example.com")):
        run_setup(environment)
    assert_nothing_created(work_dir)


def test_a_hosted_zone_id_of_a_parent_zone_is_used(cloud, tmp_path):
    parent = create_zone("example.com").split("/")[-1]
    folder = tmp_path / "sub"
    environment = make_environment(folder, extra="DOMAIN=shop.example.com\n")
    environment = with_zone_id(environment, parent)
    run_setup(environment)
    assert alias_record(parent, "staging.shop.example.com") is not None


def test_a_key_pair_in_aws_without_its_local_key_is_kept_with_a_warning(cloud, tmp_path, work_dir):
    create_zone()
    existing = client("ec2").create_key_pair(KeyName="webapp-staging")
    environment = make_environment(tmp_path)

    changes = run_setup(environment)

    assert not any("key" in change for change in changes)
    text = output(environment)
    assert "warning: key pair webapp-staging exists in AWS but its private key" in text
    assert not (work_dir / "deploy" / "keys" / "staging").exists()
    [pair] = key_pairs()
    assert pair["KeyPairId"] == existing["KeyPairId"]
    assert pair["KeyFingerprint"] == existing["KeyFingerprint"]


def test_a_local_key_with_loose_permissions_is_tightened(cloud, tmp_path, work_dir):
    create_zone()
    run_setup(make_environment(tmp_path / "first"))
    key_file = work_dir / "deploy" / "keys" / "staging"
    key_file.chmod(0o644)
    changes = run_setup(make_environment(tmp_path / "again"))
    assert changes == [f"set {key_file} to mode 0600"]
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_responses_are_logged_one_file_per_call_without_key_material(cloud, tmp_path, work_dir):
    create_zone()
    environment = make_environment(tmp_path)
    run_setup(environment)

    files = sorted(environment.log.dir.glob("*.json"))
    names = [path.name for path in files]
    for operation in (
        "ec2-CreateSecurityGroup",
        "elb-CreateLoadBalancer",
        "route53-ChangeResourceRecordSets",
        "ec2-ImportKeyPair",
    ):
        assert any(operation in name for name in names), (operation, names)
    assert names[0].startswith("0001-")
    assert (environment.log.dir / "run.log").is_file()
    assert (tmp_path / "log" / "staging" / "latest").resolve() == environment.log.dir.resolve()

    private_key = (work_dir / "deploy" / "keys" / "staging").read_text()
    secret_lines = [line for line in private_key.splitlines() if line and not line.startswith("-----")]
    assert secret_lines
    for path in files:
        text = path.read_text()
        assert "PRIVATE KEY" not in text
        assert not any(line in text for line in secret_lines), path.name


def test_key_material_in_a_response_is_redacted(tmp_path):
    log = RunLog("staging", root=tmp_path, out=io.StringIO())
    pem = "-----BEGIN " + "RSA PRIVATE KEY-----\nsecret"  # split: no key-looking text in the repository
    log.record_call("ec2", "CreateKeyPair", {"KeyName": "k", "KeyMaterial": pem})
    [path] = log.dir.glob("*.json")
    text = path.read_text()
    assert "secret" not in text
    assert '"KeyMaterial": "<redacted>"' in text
    assert '"KeyName": "k"' in text


def test_a_live_record_pointing_elsewhere_is_not_repointed_unless_taken_over(cloud, tmp_path, work_dir):
    zone_id = create_zone()
    live = {"Name": "staging.example.com", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "203.0.113.10"}]}
    client("route53").change_resource_record_sets(
        HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": live}]}
    )
    with pytest.raises(DeployError, match="--take-over-dns") as caught:
        run_setup(make_environment(tmp_path))
    assert "203.0.113.10" in str(caught.value)
    assert_nothing_created(work_dir)

    run_setup(make_environment(tmp_path), take_over_dns=True)
    record = alias_record(zone_id, "staging.example.com")
    assert record is not None and record["AliasTarget"]["DNSName"].startswith("elb-webapp-staging")


def test_app_port_moves_the_listener_health_check_and_web_rule_and_converges(cloud, tmp_path, work_dir):
    create_zone()
    run_setup(make_environment(tmp_path))
    moved = make_environment(tmp_path / "moved", extra="APP_PORT=8080\n")
    changes = run_setup(moved)
    assert "set the listener of elb-webapp-staging to HTTP 80 → instances HTTP:8080" in changes
    [balancer] = load_balancers()
    assert [d["Listener"]["InstancePort"] for d in balancer["ListenerDescriptions"]] == [8080]
    assert balancer["HealthCheck"]["Target"] == "HTTP:8080/api/status/health"
    lb_group = security_group("webapp-staging-lb")["GroupId"]
    assert inbound(security_group("webapp-staging-web")) == {("tcp", 8080, 8080, lb_group)}
    assert run_setup(make_environment(tmp_path / "again", extra="APP_PORT=8080\n")) == []
