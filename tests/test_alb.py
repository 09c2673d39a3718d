"""The Application Load Balancer kind, in-process against moto's mock_aws: `inv setup` resource by resource
(idempotent, drift converged, HTTPS with a certificate), a refused switch of kind, the group lifecycle
behind the target group, and the status/destroy methods of both kinds.
"""

from __future__ import annotations

import datetime
import io
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import REGION, write_env_folder

from deploy.aws.clients import Aws
from deploy.aws.loadbalancers import (
    IN_SERVICE,
    TLS_POLICY,
    ApplicationLoadBalancer,
    ClassicLoadBalancer,
    actions_match,
    listener_matches,
    load_balancer_for,
)
from deploy.aws.loadbalancers.listeners import certificate_names, wanted_listeners
from deploy.config import ConfigError, load_config
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.logs import RunLog
from deploy.naming import Names
from deploy.steps.setup import run_setup

TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg-webapp-staging/0123456789abcdef"


@pytest.fixture
def cloud(cloud: None) -> None:
    """conftest's mock cloud, with the hosted zone example.com."""
    client("route53").create_hosted_zone(Name="example.com", CallerReference="test-example.com")


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def make_environment(tmp_path: Path, extra: str = "", env: str = "staging", dry_run: bool = False) -> Environment:
    """An Environment on real AWS settings (no endpoint), the application kind unless EXTRA says otherwise."""
    folder = write_env_folder(tmp_path / "env", {f"{env}.env": f"DOMAIN=example.com\n{extra}"})
    config = load_config(env, folder=folder, environ={})
    log = RunLog(env, root=tmp_path / "log", out=io.StringIO())
    return Environment(config=config, log=log, aws=Aws(config, log, dry_run=dry_run) if dry_run else Aws(config, log))


def output(environment: Environment) -> str:
    return environment.log.out.getvalue()  # type: ignore[attr-defined]


def setup(tmp_path: Path, name: str, extra: str = "") -> tuple[Environment, list[str]]:
    environment = make_environment(tmp_path / name, extra)
    return environment, run_setup(environment)


def albs() -> list[dict[str, Any]]:
    return client("elbv2").describe_load_balancers()["LoadBalancers"]


def target_groups() -> list[dict[str, Any]]:
    return client("elbv2").describe_target_groups()["TargetGroups"]


def listeners(alb: dict[str, Any]) -> dict[int, dict[str, Any]]:
    found = client("elbv2").describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
    return {listener["Port"]: listener for listener in found}


def security_group(name: str) -> dict[str, Any] | None:
    found = client("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])
    return found["SecurityGroups"][0] if found["SecurityGroups"] else None


def open_ports(group: dict[str, Any]) -> set[tuple[int, str]]:
    return {(p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] for r in p.get("IpRanges", [])}


def alias(host: str) -> dict[str, Any]:
    [zone] = client("route53").list_hosted_zones_by_name(DNSName="example.com")["HostedZones"]
    records = client("route53").list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    [record] = [r for r in records if r["Name"].rstrip(".") == host and r["Type"] == "A"]
    return record["AliasTarget"]


def import_certificate(domain: str = "*.example.com") -> str:
    """A self-signed certificate imported into ACM: ISSUED at once, as an imported certificate is on AWS."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return client("acm").import_certificate(
        Certificate=certificate.public_bytes(serialization.Encoding.PEM),
        PrivateKey=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
    )["CertificateArn"]


# --- setup ---------------------------------------------------------------------------------------


def test_setup_creates_the_application_load_balancer_with_every_attribute(cloud, tmp_path):
    environment, changes = setup(tmp_path, "first")

    assert changes
    assert environment.load_balancer.kind == "application"
    ec2 = client("ec2")
    vpc_id = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    default_subnets = sorted(
        s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["Subnets"]
    )
    lb_group = security_group("webapp-staging-lb")
    assert lb_group is not None
    assert open_ports(lb_group) == {(80, "0.0.0.0/0")}  # no 443 without a certificate

    [alb] = albs()
    assert alb["LoadBalancerName"] == "alb-webapp-staging"
    assert (alb["Type"], alb["Scheme"], alb["IpAddressType"]) == ("application", "internet-facing", "ipv4")
    assert sorted(zone["SubnetId"] for zone in alb["AvailabilityZones"]) == default_subnets
    assert alb["SecurityGroups"] == [lb_group["GroupId"]]
    assert client("elb").describe_load_balancers()["LoadBalancerDescriptions"] == []  # no classic one

    [group] = target_groups()
    assert group["TargetGroupName"] == "tg-webapp-staging"
    assert (group["Protocol"], group["Port"], group["TargetType"], group["VpcId"]) == ("HTTP", 80, "instance", vpc_id)
    assert group["HealthCheckProtocol"] == "HTTP"
    assert group["HealthCheckPort"] == "traffic-port"
    assert group["HealthCheckPath"] == "/api/status/health"
    assert group["HealthCheckIntervalSeconds"] == 30
    assert group["HealthCheckTimeoutSeconds"] == 4
    assert (group["HealthyThresholdCount"], group["UnhealthyThresholdCount"]) == (2, 2)
    assert group["Matcher"] == {"HttpCode": "200"}
    attributes = {
        a["Key"]: a["Value"]
        for a in client("elbv2").describe_target_group_attributes(TargetGroupArn=group["TargetGroupArn"])["Attributes"]
    }
    assert attributes["deregistration_delay.timeout_seconds"] == "300"
    tags = client("elbv2").describe_tags(ResourceArns=[alb["LoadBalancerArn"], group["TargetGroupArn"]])
    for description in tags["TagDescriptions"]:
        assert {"Key": "ManagedBy", "Value": "immutable-deploy"} in description["Tags"]

    found = listeners(alb)
    assert set(found) == {80}
    assert found[80]["Protocol"] == "HTTP"
    assert [(a["Type"], a["TargetGroupArn"]) for a in found[80]["DefaultActions"]] == [
        ("forward", group["TargetGroupArn"])
    ]

    target = alias("staging.example.com")
    assert target["DNSName"].rstrip(".").lower() == alb["DNSName"].lower()
    assert target["HostedZoneId"] == alb["CanonicalHostedZoneId"]
    assert target["EvaluateTargetHealth"] is True
    assert "http://staging.example.com/ → alb-webapp-staging (application load balancer)" in output(environment)


def test_a_second_run_changes_nothing_and_says_so(cloud, tmp_path):
    _, first = setup(tmp_path, "first")
    assert "created load balancer alb-webapp-staging (application, internet-facing)" in first

    again, changes = setup(tmp_path, "again")
    assert changes == []
    assert "nothing to change: webapp-staging is already set up" in output(again)
    assert len(albs()) == 1 and len(target_groups()) == 1


def sent(tmp_path: Path, operation: str) -> int:
    """How many OPERATION calls the runs logged under TMP_PATH (one file per AWS call)."""
    return len(list(tmp_path.rglob(f"*-{operation}.json")))


@pytest.mark.parametrize("kind", ["application", "classic"])
def test_setup_reads_back_nothing_it_wrote_but_a_classic_load_balancers_zone(cloud, tmp_path, kind):
    """AWS answers CreateLoadBalancer, CreateTargetGroup and CreateListener with the descriptions: remembered, not
    read again. A classic load balancer's answer lacks the hosted zone of its DNS name: read once, for the alias."""
    environment, _ = setup(tmp_path, "first", f"LOAD_BALANCER={kind}\n")
    reads = ["DescribeTargetGroups", "DescribeTargetGroupAttributes", "DescribeListeners"]
    if kind == "application":
        assert [sent(tmp_path / "first", operation) for operation in reads] == [1, 0, 0]
        assert sent(tmp_path / "first", "DescribeLoadBalancers") == 2  # its own, then the other kind's (guard)
    else:
        assert sent(tmp_path / "first", "DescribeLoadBalancers") == 3  # its own twice, the other kind's
        assert sent(tmp_path / "first", "DescribeLoadBalancerAttributes") == 0
    # What the run remembers is what AWS has: the summary from its memo is a fresh run's.
    fresh = make_environment(tmp_path / "fresh", f"LOAD_BALANCER={kind}\n")
    volatile = ("target_group", "instances", "tags", "state")  # AWS's to change (state: provisioning, then active)
    remembered = {k: v for k, v in environment.load_balancer.describe_summary().items() if k not in volatile}
    assert remembered == {k: v for k, v in fresh.load_balancer.describe_summary().items() if k not in volatile}


def test_drift_is_converged_back(cloud, tmp_path):
    setup(tmp_path, "first")
    elbv2 = client("elbv2")
    [alb], [group] = albs(), target_groups()
    elbv2.modify_target_group(TargetGroupArn=group["TargetGroupArn"], HealthCheckPath="/", HealthCheckTimeoutSeconds=9)
    elbv2.modify_target_group_attributes(
        TargetGroupArn=group["TargetGroupArn"],
        Attributes=[{"Key": "deregistration_delay.timeout_seconds", "Value": "10"}],
    )
    elbv2.modify_listener(
        ListenerArn=listeners(alb)[80]["ListenerArn"],
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "503"}}],
    )

    again, changes = setup(tmp_path, "again")

    assert changes == [
        "set the health check of tg-webapp-staging to HTTP /api/status/health every 30s, timeout 4s, thresholds 2/2",
        "set the deregistration delay of tg-webapp-staging to 300s",
        "set HTTP listener 80 → tg-webapp-staging on alb-webapp-staging",
    ]
    [group] = target_groups()
    assert (group["HealthCheckPath"], group["HealthCheckTimeoutSeconds"]) == ("/api/status/health", 4)
    assert listeners(alb)[80]["DefaultActions"][0]["Type"] == "forward"
    assert setup(tmp_path, "third")[1] == []
    # The run that converged remembers what it set, as a fresh run reads it (no describe after its writes).
    assert (
        again.load_balancer.describe_summary() == make_environment(tmp_path / "fresh").load_balancer.describe_summary()
    )


def test_a_certificate_adds_https_on_443_and_http_redirects_to_it(cloud, tmp_path):
    setup(tmp_path, "plain")  # an environment set up before it had a certificate
    arn = import_certificate()

    environment, changes = setup(tmp_path, "tls", f"CERTIFICATE_ARN={arn}\n")

    assert changes == [
        "webapp-staging-lb: allowed tcp 443 from 0.0.0.0/0",
        f"created HTTPS listener 443 → tg-webapp-staging ({TLS_POLICY}) on alb-webapp-staging",
        "set HTTP listener 80 → redirect to HTTPS 443 on alb-webapp-staging",
    ]
    assert open_ports(security_group("webapp-staging-lb")) == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0")}
    [alb], [group] = albs(), target_groups()
    found = listeners(alb)
    assert set(found) == {80, 443}
    https = found[443]
    assert https["Protocol"] == "HTTPS"
    assert https["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert [c["CertificateArn"] for c in https["Certificates"]] == [arn]
    assert [(a["Type"], a["TargetGroupArn"]) for a in https["DefaultActions"]] == [("forward", group["TargetGroupArn"])]
    [redirect] = found[80]["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"
    assert "https://staging.example.com/ → alb-webapp-staging" in output(environment)

    assert setup(tmp_path, "tls-again", f"CERTIFICATE_ARN={arn}\n")[1] == []

    # Without the certificate again: HTTP forwards first, then 443 goes, and the security group closes it.
    _, changes = setup(tmp_path, "plain-again")
    assert changes == [
        "webapp-staging-lb: revoked tcp 443 from 0.0.0.0/0",
        "set HTTP listener 80 → tg-webapp-staging on alb-webapp-staging",
        "removed the HTTPS listener 443 of alb-webapp-staging (CERTIFICATE_ARN is empty)",
    ]
    assert set(listeners(alb)) == {80}
    assert listeners(alb)[80]["DefaultActions"][0]["Type"] == "forward"


def test_a_fresh_setup_with_a_certificate_creates_https_from_the_start(cloud, tmp_path):
    arn = import_certificate()
    _, changes = setup(tmp_path, "tls", f"CERTIFICATE_ARN={arn}\n")
    assert f"created HTTPS listener 443 → tg-webapp-staging ({TLS_POLICY}) on alb-webapp-staging" in changes
    assert "created HTTP listener 80 → redirect to HTTPS 443 on alb-webapp-staging" in changes
    [alb] = albs()
    assert set(listeners(alb)) == {80, 443}


def assert_nothing_created() -> None:
    assert albs() == [] and target_groups() == []
    assert client("elb").describe_load_balancers()["LoadBalancerDescriptions"] == []
    assert security_group("webapp-staging-lb") is None
    assert client("ec2").describe_key_pairs()["KeyPairs"] == []


def test_a_certificate_missing_from_acm_fails_before_anything_is_created(cloud, tmp_path):
    missing = "arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
    with pytest.raises(DeployError, match="is not a certificate in ACM of us-east-1") as caught:
        setup(tmp_path, "tls", f"CERTIFICATE_ARN={missing}\n")
    assert "fix it in env/staging.env" in str(caught.value)
    assert_nothing_created()


def test_a_certificate_still_pending_validation_is_refused(cloud, tmp_path):
    pending = client("acm").request_certificate(DomainName="staging.example.com", ValidationMethod="DNS")
    with pytest.raises(DeployError, match="PENDING_VALIDATION: an HTTPS listener needs an issued certificate"):
        setup(tmp_path, "tls", f"CERTIFICATE_ARN={pending['CertificateArn']}\n")
    assert_nothing_created()


def test_a_certificate_for_another_name_is_used_with_a_warning(cloud, tmp_path):
    arn = import_certificate("shop.example.org")
    environment, _ = setup(tmp_path, "tls", f"CERTIFICATE_ARN={arn}\n")
    assert f"warning: certificate {arn} does not name staging.example.com" in output(environment)


def test_a_dry_run_reports_what_would_change_and_changes_nothing(cloud, tmp_path):
    environment = make_environment(tmp_path / "dry", dry_run=True)
    changes = run_setup(environment, dry_run=True)
    assert "would create load balancer alb-webapp-staging (application, internet-facing)" in changes
    assert "would create target group tg-webapp-staging (HTTP:80, health check HTTP /api/status/health → 200)" in (
        changes
    )
    assert "would create HTTP listener 80 → tg-webapp-staging on alb-webapp-staging" in changes
    assert albs() == [] and target_groups() == []

    setup(tmp_path, "real")
    [group] = target_groups()
    client("elbv2").modify_target_group(TargetGroupArn=group["TargetGroupArn"], HealthCheckPath="/")
    again = run_setup(make_environment(tmp_path / "dry-again", dry_run=True), dry_run=True)
    assert again == [
        "would set the health check of tg-webapp-staging to HTTP /api/status/health every 30s, timeout 4s,"
        " thresholds 2/2"
    ]
    assert target_groups()[0]["HealthCheckPath"] == "/"


# --- switching kinds -----------------------------------------------------------------------------


@pytest.mark.parametrize(("before", "after"), [("classic", "application"), ("application", "classic")])
def test_switching_the_kind_of_an_environment_is_refused_before_anything_changes(cloud, tmp_path, before, after):
    setup(tmp_path, "before", f"LOAD_BALANCER={before}\nSSH_CIDR=203.0.113.7/32\n")
    groups_before = client("ec2").describe_security_groups()["SecurityGroups"]
    old_name = {"classic": "elb-webapp-staging", "application": "alb-webapp-staging"}[before]

    switched = make_environment(tmp_path / "after", f"LOAD_BALANCER={after}\n")  # SSH_CIDR dropped: no change either
    with pytest.raises(DeployError) as caught:
        run_setup(switched)

    message = str(caught.value)
    where = "env/staging.env, line "  # where the value came from: the file and its line
    assert f"already has a {before} load balancer ({old_name}), but LOAD_BALANCER={after} ({where}" in message
    assert f"keep LOAD_BALANCER={before}" in message
    assert "inv destroy --env staging" in message and "inv setup --env staging" in message
    assert client("ec2").describe_security_groups()["SecurityGroups"] == groups_before  # the 22 rule is still there
    if after == "application":
        assert albs() == [] and target_groups() == []
    else:
        assert client("elb").describe_load_balancers()["LoadBalancerDescriptions"] == []
    # A deploy is refused the same way, at launch-asg (require), before any group is created.
    with pytest.raises(DeployError, match="Switching the kind of an existing environment is refused"):
        switched.load_balancer.require()


def test_a_deploy_before_setup_says_to_run_setup(cloud, tmp_path):
    environment = make_environment(tmp_path)
    with pytest.raises(DeployError, match=r"alb-webapp-staging does not exist: run `inv setup --env staging` first"):
        environment.load_balancer.require()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("LOAD_BALANCER=network\n", "LOAD_BALANCER='network' must be application"),
        ("CERTIFICATE_ARN=arn:aws:iam::123456789012:server-certificate/x\n", "must be an ACM certificate ARN"),
        (
            "LOAD_BALANCER=classic\nCERTIFICATE_ARN=arn:aws:acm:us-east-1:123456789012:certificate/"
            "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b\n",
            "CERTIFICATE_ARN needs LOAD_BALANCER=application",
        ),
        (
            "CERTIFICATE_ARN=arn:aws:acm:eu-west-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b\n",
            "the certificate is in eu-west-1",
        ),
    ],
)
def test_load_balancer_settings_are_validated(tmp_path, text, expected):
    folder = write_env_folder(tmp_path / "env", {"staging.env": f"DOMAIN=example.com\n{text}"})
    with pytest.raises(ConfigError, match=expected):
        load_config("staging", folder=folder, environ={})


def test_the_kind_defaults_to_application_and_classic_stays_available(tmp_path):
    folder = write_env_folder(tmp_path / "env", {"a.env": "DOMAIN=example.com\n", "c.env": "DOMAIN=example.com\n"})
    assert load_config("a", folder=folder, environ={}).load_balancer == "application"
    assert load_config("c", folder=folder, environ={"LOAD_BALANCER": "Classic"}).load_balancer == "classic"


def test_names_of_the_longest_stack_fit_the_32_character_limit():
    names = Names(app="a" * 20, env="b" * 7, domain="example.com")  # APP_NAME-ENV at its 28-character maximum
    assert len(names.stack) == 28
    assert names.application_load_balancer == f"alb-{names.stack}"
    assert names.target_group == f"tg-{names.stack}"
    assert len(names.application_load_balancer) <= 32 and len(names.target_group) <= 32


# --- groups behind the target group --------------------------------------------------------------


OLD, NEW = "asg-webapp-staging-20261205090000", "asg-webapp-staging-20261205100000"


def make_group(environment: Environment, name: str, size: int = 2, shared: bool = False) -> list[str]:
    """A group attached as launch-asg attaches it (the load balancer's group_attachment: its own target group), or
    SHARED: to tg-NAME, as the earlier layout attached every group; its instance ids."""
    ec2, autoscaling = client("ec2"), client("autoscaling")
    if not ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": ["lt-test"]}])[
        "LaunchTemplates"
    ]:
        ec2.create_launch_template(
            LaunchTemplateName="lt-test", LaunchTemplateData={"ImageId": "ami-12345678", "InstanceType": "t3.micro"}
        )
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["DefaultForAz"]]
    balancer = environment.load_balancer
    attachment = (
        {"TargetGroupARNs": [balancer.target_group_arn()]}  # type: ignore[attr-defined]
        if shared
        else balancer.group_attachment(name)
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": "lt-test"},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=size,
        VPCZoneIdentifier=",".join(subnets),
        **attachment,
    )
    group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    return sorted(i["InstanceId"] for i in group["Instances"])


def forward_weights(environment: Environment) -> dict[str, int]:
    """{target group name: weight} of the HTTP listener, as AWS describes it."""
    [alb] = albs()
    action = listeners(alb)[80]["DefaultActions"][0]
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or [{"TargetGroupArn": action["TargetGroupArn"]}]
    return {g["TargetGroupArn"].split("/")[1]: int(g.get("Weight", 1)) for g in groups}


def test_each_group_gets_its_own_target_group_and_an_earlier_shared_one_is_moved_from(cloud, tmp_path):
    """The earlier layout's group serves through tg-NAME; the new group's own target group (APP_PORT, tagged) joins
    the listener at weight 0, takes every request once served, and the shared one leaves once its group retired."""
    environment, _ = setup(tmp_path, "setup")
    balancer = environment.load_balancer
    names = environment.names
    old = make_group(environment, OLD, shared=True)
    new = make_group(environment, NEW)
    own = names.group_target_group(NEW)

    assert own.startswith("tg") and own.endswith("-20261205100000") and len(own) <= 32
    [created] = [group for group in target_groups() if group["TargetGroupName"] == own]
    assert created["Port"] == 80 and created["HealthCheckPath"] == "/api/status/health"
    tags = client("elbv2").describe_tags(ResourceArns=[created["TargetGroupArn"]])["TagDescriptions"][0]["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} | {"ManagedBy": ""} == {
        "App": "webapp",
        "Env": "staging",
        "Group": NEW,
        "ManagedBy": "",
    }
    assert forward_weights(environment) == {"tg-webapp-staging": 1, own: 0}  # joined at weight 0
    assert balancer.serving_states(old, OLD) == dict.fromkeys(old, IN_SERVICE)
    assert balancer.serving_states(new, NEW) == dict.fromkeys(new, IN_SERVICE)  # checked at weight 0
    assert balancer.serving_states() == dict.fromkeys(old + new, IN_SERVICE)

    balancer.serve(NEW)
    assert forward_weights(environment) == {"tg-webapp-staging": 0, own: 100}
    assert not balancer.group_detached(OLD)
    balancer.detach_group(OLD)
    balancer.detach_group(OLD)  # already detached: nothing happens
    assert balancer.group_detached(OLD)
    assert balancer.serving_states(old, OLD) == dict.fromkeys(old, "unused")

    assert balancer.release(NEW, [OLD]) == ["deleted target group tg-webapp-staging"]
    assert forward_weights(environment) == {own: 100}
    assert [group["TargetGroupName"] for group in target_groups()] == [own]
    assert not balancer.group_detached(NEW)

    # A setup run afterwards keeps the groups' weights and makes no shared target group again.
    assert run_setup(make_environment(tmp_path / "again")) == []
    assert forward_weights(environment) == {own: 100}
    assert [group["TargetGroupName"] for group in target_groups()] == [own]


def test_an_aborted_group_leaves_the_listener_and_its_target_group_is_deleted(cloud, tmp_path):
    environment, _ = setup(tmp_path, "setup")
    balancer = environment.load_balancer
    make_group(environment, OLD)
    balancer.serve(OLD)
    make_group(environment, NEW)
    own = environment.names.group_target_group(NEW)

    assert balancer.release(None, [NEW]) == [f"deleted target group {own}"]
    # The shared tg-NAME (setup's first target, before any group) stays at 0 until a deploy's end releases it.
    assert forward_weights(environment) == {"tg-webapp-staging": 0, environment.names.group_target_group(OLD): 100}


def test_a_stopped_instance_is_not_in_service(cloud, tmp_path):
    environment, _ = setup(tmp_path, "setup")
    ids = make_group(environment, NEW)
    client("ec2").stop_instances(InstanceIds=ids[:1])
    assert environment.load_balancer.serving_states(ids, NEW) == {ids[0]: "unused", ids[1]: IN_SERVICE}


def test_a_classic_load_balancer_attaches_groups_by_name(cloud, tmp_path):
    environment, _ = setup(tmp_path, "setup", "LOAD_BALANCER=classic\n")
    assert isinstance(environment.load_balancer, ClassicLoadBalancer)
    assert environment.load_balancer.group_attachment(NEW) == {"LoadBalancerNames": ["elb-webapp-staging"]}


# --- status and destroy --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["classic", "application"])
def test_describe_summary_and_delete(cloud, tmp_path, kind):
    environment, _ = setup(tmp_path, "setup", f"LOAD_BALANCER={kind}\n")
    balancer = environment.load_balancer
    lb_group = security_group("webapp-staging-lb")["GroupId"]

    summary = balancer.describe_summary()

    assert summary["kind"] == kind and summary["exists"] is True
    assert summary["name"] == {"classic": "elb-webapp-staging", "application": "alb-webapp-staging"}[kind]
    assert summary["dns_name"].startswith(summary["name"])
    assert summary["health_check"] | {"success_codes": None} == {
        "target": "HTTP:80/api/status/health",
        "protocol": "HTTP",
        "port": 80,
        "path": "/api/status/health",
        "interval": 30,
        "timeout": 4,
        "healthy_threshold": 2,
        "unhealthy_threshold": 2,
        "success_codes": None,
    }
    assert [(listener["port"], listener["protocol"]) for listener in summary["listeners"]] == [(80, "HTTP")]
    assert summary["security_groups"] == [lb_group]
    assert summary["tags"]["ManagedBy"] == "immutable-deploy"
    if kind == "application":
        assert summary["listeners"][0]["action"] == "forward to tg-webapp-staging"
        assert summary["health_check"]["success_codes"] == "200"
        assert summary["target_group"]["name"] == "tg-webapp-staging"
        assert summary["target_group"]["deregistration_delay_seconds"] == 300
        assert summary["target_group"]["targets"] == {}
    else:
        assert summary["draining_seconds"] == 300
        assert summary["instances"] == {}

    deleted = balancer.delete()

    expected = {
        "classic": ["deleted load balancer elb-webapp-staging"],
        "application": [
            "deleted listener HTTP 80 of alb-webapp-staging",
            "deleted target group tg-webapp-staging",
            "deleted load balancer alb-webapp-staging",
        ],
    }[kind]
    assert deleted == expected
    assert albs() == [] and target_groups() == []
    assert client("elb").describe_load_balancers()["LoadBalancerDescriptions"] == []
    assert balancer.describe_summary() == {"kind": kind, "name": summary["name"], "exists": False} | (
        {"target_group": None} if kind == "application" else {}
    )
    assert balancer.delete() == []


def test_the_summary_of_an_https_listener_names_its_certificate_and_policy(cloud, tmp_path):
    arn = import_certificate()
    environment, _ = setup(tmp_path, "tls", f"CERTIFICATE_ARN={arn}\n")
    listeners_by_port = {
        listener["port"]: listener for listener in environment.load_balancer.describe_summary()["listeners"]
    }
    assert listeners_by_port[80]["action"] == "redirect to HTTPS:443 (HTTP_301)"
    assert listeners_by_port[443] == {
        "port": 443,
        "protocol": "HTTPS",
        "action": "forward to tg-webapp-staging",
        "certificate": arn,
        "ssl_policy": TLS_POLICY,
    }


def test_the_kind_is_chosen_by_the_configuration(cloud, tmp_path):
    assert isinstance(make_environment(tmp_path / "a").load_balancer, ApplicationLoadBalancer)
    assert isinstance(make_environment(tmp_path / "c", "LOAD_BALANCER=classic\n").load_balancer, ClassicLoadBalancer)


def test_a_load_balancer_is_handed_its_settings_and_where_to_say_things(cloud, tmp_path):
    """The configuration given to load_balancer_for counts, not the one the clients were made with."""
    arn = import_certificate("shop.example.org")
    environment = make_environment(tmp_path / "clients")  # application, no certificate
    config = load_config(
        "staging",
        folder=write_env_folder(
            tmp_path / "given", {"staging.env": f"DOMAIN=example.com\nCERTIFICATE_ARN={arn}\nPOLL_SECONDS=7\n"}
        ),
        environ={},
    )
    said: list[str] = []

    balancer = load_balancer_for(environment.aws, environment.names, config, said.append)
    balancer.preflight(
        client("ec2").describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    )

    assert isinstance(balancer, ApplicationLoadBalancer)
    assert balancer.ingress_ports() == [80, 443]
    assert balancer.settings.poll_seconds == 7
    assert said == [f"  warning: certificate {arn} does not name staging.example.com (shop.example.org)"]
    assert "warning" not in output(environment)  # not the clients' run log
    reconfigured = load_config(
        "staging", folder=tmp_path / "given", environ={"LOAD_BALANCER": "classic", "CERTIFICATE_ARN": ""}
    )
    classic = load_balancer_for(environment.aws, environment.names, reconfigured, said.append)
    assert isinstance(classic, ClassicLoadBalancer)
    assert [other.kind for other in classic.others] == ["application"]


# --- pure comparisons of listeners ---------------------------------------------------------------


def test_the_listeners_wanted_put_https_first_when_there_is_a_certificate():
    [(port, http, what)] = wanted_listeners(TG_ARN, "tg-webapp-staging", None)
    assert (port, http["Protocol"], what) == (80, "HTTP", "HTTP listener 80 → tg-webapp-staging")
    assert http["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": TG_ARN}]
    https, redirect = wanted_listeners(TG_ARN, "tg-webapp-staging", "cert-a")
    assert (https[0], https[1]["Certificates"], https[1]["SslPolicy"]) == (
        443,
        [{"CertificateArn": "cert-a"}],
        TLS_POLICY,
    )
    assert (redirect[0], redirect[1]["DefaultActions"][0]["Type"]) == (80, "redirect")


def test_a_wildcard_certificate_names_one_label_only():
    wildcard = {"DomainName": "*.example.com", "SubjectAlternativeNames": ["*.example.com"]}
    assert certificate_names(wildcard, "Staging.example.com")
    assert not certificate_names(wildcard, "a.staging.example.com")
    assert not certificate_names(wildcard, "example.com")
    assert certificate_names(
        {"DomainName": "shop.example.org", "SubjectAlternativeNames": ["example.com"]}, "example.com"
    )


def test_a_forward_action_as_aws_describes_it_matches():
    described = [
        {
            "Type": "forward",
            "TargetGroupArn": TG_ARN,
            "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": TG_ARN, "Weight": 1}]},
        }
    ]
    assert actions_match(described, [{"Type": "forward", "TargetGroupArn": TG_ARN}])
    only_config = [{"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": TG_ARN}]}}]
    assert actions_match(only_config, [{"Type": "forward", "TargetGroupArn": TG_ARN}])
    assert not actions_match(described, [{"Type": "forward", "TargetGroupArn": TG_ARN + "0"}])


def test_a_redirect_with_aws_defaults_matches_and_a_changed_one_does_not():
    wanted = [{"Type": "redirect", "RedirectConfig": {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}}]
    aws_style = {"Protocol": "HTTPS", "Port": "443", "Host": "#{host}", "Path": "/#{path}", "Query": "#{query}"}
    assert actions_match([{"Type": "redirect", "RedirectConfig": aws_style | {"StatusCode": "HTTP_301"}}], wanted)
    assert not actions_match([{"Type": "redirect", "RedirectConfig": aws_style | {"StatusCode": "HTTP_302"}}], wanted)
    elsewhere = aws_style | {"StatusCode": "HTTP_301", "Host": "example.org"}
    assert not actions_match([{"Type": "redirect", "RedirectConfig": elsewhere}], wanted)


def test_an_https_listener_must_have_the_certificate_and_the_policy():
    forward = [{"Type": "forward", "TargetGroupArn": TG_ARN}]
    desired = {
        "Protocol": "HTTPS",
        "Port": 443,
        "DefaultActions": forward,
        "Certificates": [{"CertificateArn": "cert-a"}],
        "SslPolicy": TLS_POLICY,
    }
    current = {"Protocol": "HTTPS", "DefaultActions": forward, "Certificates": [{"CertificateArn": "cert-a"}]}
    assert listener_matches(current | {"SslPolicy": TLS_POLICY}, desired)
    assert not listener_matches(current | {"SslPolicy": "ELBSecurityPolicy-2016-08"}, desired)
    assert not listener_matches(
        current | {"SslPolicy": TLS_POLICY, "Certificates": [{"CertificateArn": "cert-b"}]}, desired
    )
    assert not listener_matches(current | {"Protocol": "HTTP", "SslPolicy": TLS_POLICY}, desired)
