"""The least-privilege IAM policy, proven by running: `inv iam-policy` prints it; the permissions section of
docs/aws.md is generated from it; an IAM user holding only that policy runs setup → deploy → deploy → rollback →
cleanup → destroy on a moto server with IAM enforcement on (INITIAL_NO_AUTH_ACTION_COUNT), and without one of
its statements a run fails with one line naming the missing permission.

The moto server of this module counts the admin's calls: every call after the first ADMIN_CALLS is checked
against IAM (the admin then acts with a key of its own, allowed everything).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore import xform_name
from conftest import (
    REGION,
    REPO,
    TEST_TIME_SCALE,
    ServerSite,
    embedded_cloud_server,
    run_inv,
    write_env_folder,
)
from iam_evaluator import Request, action_allowed, allowed, without

from deploy.config import load_config
from deploy.naming import Names, names_for
from deploy.plans.iam import PACKER_CALLS, permissions_table, policy_document

ADMIN_CALLS = 8  # the calls of `prepare_account`, made before enforcement starts
ENV = "iam"


# --- the document -----------------------------------------------------------------------------------------------

ACCOUNT = "123456789012"


def policy_of(tmp_path: Path, kind: str = "application", env: str = "staging", extra: str = "") -> dict[str, Any]:
    text = f"DOMAIN=example.com\nLOAD_BALANCER={kind}\n{extra}"
    folder = write_env_folder(tmp_path / "env" / f"{env}-{kind}", {f"{env}.env": text})
    config = load_config(env, folder=folder, environ={})
    return policy_document(config, names_for(config))


def staging_policy(tmp_path: Path, kind: str = "application") -> dict[str, Any]:
    return policy_of(tmp_path, kind)


def test_inv_iam_policy_prints_the_json_document_on_stdout(tmp_path):
    folder = write_env_folder(tmp_path / "env", {"staging.env": "DOMAIN=example.com\n"})
    result = run_inv("iam-policy", "--env", "staging", env={"DEPLOY_ENV_DIR": str(folder), "AWS_REGION": None})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document == policy_of(tmp_path / "again")
    sids = [statement["Sid"] for statement in document["Statement"]]
    assert len(sids) == len(set(sids)), "each statement named once: removing one removes exactly it"


@pytest.mark.parametrize(
    "region, partition", [("eu-west-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")]
)
def test_the_partition_of_every_arn_follows_the_region(tmp_path, region, partition):
    document = policy_of(tmp_path, extra=f"AWS_REGION={region}\nAWS_ACCOUNT_ID={ACCOUNT}\n")
    arns = [r for s in document["Statement"] for r in s["Resource"] if r != "*"]
    assert arns and all(arn.startswith(f"arn:{partition}:") for arn in arns), arns
    # AWS_ACCOUNT_ID scopes every ARN that names an account (images' and snapshots' name none).
    assert all(arn.split(":")[4] in (ACCOUNT, "") for arn in arns), arns


def ours(kind: str, env: str = "dev01", app: str = "webapp") -> list[Request]:
    """The authorizations AWS makes for the tool's and Packer's calls of ENV (ACCOUNT, us-east-1): at least one
    per statement, each allowed by that statement alone where others grant the same action."""
    stack = f"{app}-{env}"
    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    image = f"arn:aws:ec2:{REGION}::image/ami-0123456789abcdef0"
    snapshot = f"arn:aws:ec2:{REGION}::snapshot/snap-0123456789abcdef0"
    asg = f"arn:aws:autoscaling:{REGION}:{ACCOUNT}"
    elb = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}"
    tagged = {"aws:ResourceTag/App": app, "aws:ResourceTag/Env": env}
    request_tags = {"aws:RequestTag/App": app, "aws:RequestTag/Env": env, "aws:TagKeys": ["App", "Env", "ManagedBy"]}
    group = f"{asg}:autoScalingGroup:0a1b:autoScalingGroupName/asg-{stack}-20260101000000"
    group_tags = {
        "autoscaling:ResourceTag/App": app,
        "autoscaling:ResourceTag/Env": env,
        "autoscaling:ResourceTag/Name": stack,
    }
    ssm = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/immutable-deploy/{stack}"
    zone = "arn:aws:route53:::hostedzone/Z0123456789ABC"
    host = f"{env}.example.com"
    requests = [
        Request("ssm:PutParameter", f"{ssm}/lock", label="DeployLockAndHistory"),
        Request("ssm:GetParameterHistory", f"{ssm}/history", label="DeployLockAndHistory"),
        Request("route53:ListHostedZonesByName", "*", label="FindHostedZone"),
        Request("route53:ListResourceRecordSets", zone, label="ReadHostedZone"),
        Request(
            "route53:ChangeResourceRecordSets",
            zone,
            {
                "route53:ChangeResourceRecordSetsNormalizedRecordNames": [host],
                "route53:ChangeResourceRecordSetsRecordTypes": ["A"],
                "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
            },
            label="HostRecord",
        ),
        Request("ec2:DescribeImages", "*", label="ReadEc2"),
        Request("ec2:CreateSecurityGroup", f"{ec2}:security-group/sg-1", request_tags, label="CreateTagged"),
        Request("ec2:CreateLaunchTemplate", f"{ec2}:launch-template/lt-1", request_tags, label="CreateTagged"),
        Request("ec2:RunInstances", f"{ec2}:instance/*", request_tags, label="CreateTagged"),
        Request("ec2:CreateSecurityGroup", f"{ec2}:vpc/vpc-1", label="SecurityGroupsInVpc"),
        Request("ec2:AuthorizeSecurityGroupIngress", f"{ec2}:security-group/sg-1", tagged, label="OwnTagged"),
        Request("ec2:DeleteLaunchTemplate", f"{ec2}:launch-template/lt-1", tagged, label="OwnTagged"),
        Request("ec2:TerminateInstances", f"{ec2}:instance/i-1", tagged, label="OwnTagged"),
        Request("ec2:CreateImage", f"{ec2}:instance/i-1", tagged, label="OwnTagged"),
        Request("ec2:CreateTags", snapshot, {**tagged, **request_tags}, label="OwnTagged"),
        Request("ec2:ImportKeyPair", f"{ec2}:key-pair/{stack}", label="KeyPairs"),
        Request("ec2:CreateKeyPair", f"{ec2}:key-pair/packer_{stack}_20260101000000", label="KeyPairs"),
        Request("ec2:RunInstances", f"{ec2}:volume/*", label="RunInstancesWith"),
        Request("ec2:RunInstances", image, label="RunInstancesWith"),
        Request("ec2:CopyImage", image, label="Images"),
        Request("ec2:DeregisterImage", image, label="Images"),
        Request(
            "ec2:CreateTags",
            f"{ec2}:security-group/sg-1",
            {"ec2:CreateAction": "CreateSecurityGroup", **request_tags},
            label="TagsAtCreation",
        ),
        Request("ec2:CreateTags", image, request_tags, label="TagNewImages"),  # Packer's new image, untagged
        Request(
            "ec2:CreateTags",
            image,
            {"aws:ResourceTag/Env": "production", "aws:ResourceTag/App": app, "aws:TagKeys": ["Deployed"]},
            label="PromotionTags",  # an image given by hand, baked for another environment
        ),
        Request("autoscaling:DescribeAutoScalingGroups", "*", label="ReadAutoScaling"),
        Request("autoscaling:CreateAutoScalingGroup", group, request_tags, label="CreateGroups"),
        Request("autoscaling:CreateOrUpdateTags", group, group_tags, label="Groups"),
        Request(
            "autoscaling:DeleteAutoScalingGroup",
            f"{asg}:autoScalingGroup:0a1b:autoScalingGroupName/asg-{stack}-v2",
            {"autoscaling:ResourceTag/Name": stack},
            label="OriginalScriptsGroups",
        ),
        Request(
            "autoscaling:DeleteLaunchConfiguration",
            f"{asg}:launchConfiguration:0a1b:launchConfigurationName/lc-{stack}-20200101000000",
            label="OriginalScriptsLaunchConfigurations",
        ),
        Request("elasticloadbalancing:DescribeLoadBalancers", "*", label="ReadLoadBalancers"),
        Request(
            "iam:CreateServiceLinkedRole",
            f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
            {"iam:AWSServiceName": "autoscaling.amazonaws.com"},
            label="ServiceLinkedRoles",
        ),
    ]
    if kind == "classic":
        requests.append(
            Request(
                "elasticloadbalancing:CreateLoadBalancerListeners",
                f"{elb}:loadbalancer/elb-{stack}",
                label="LoadBalancer",
            )
        )
    else:
        requests += [
            Request(
                "elasticloadbalancing:CreateTargetGroup", f"{elb}:targetgroup/tg-{stack}/0a1b2c3d", label="LoadBalancer"
            ),
            Request(
                "elasticloadbalancing:ModifyListener", f"{elb}:listener/app/alb-{stack}/0a1b/2c3d", label="LoadBalancer"
            ),
            Request("acm:DescribeCertificate", CERTIFICATE, label="Certificate"),
            Request("cloudwatch:GetMetricData", "*", label="TrafficMetrics"),
        ]
    return requests


CERTIFICATE = f"arn:aws:acm:{REGION}:{ACCOUNT}:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


def dev01_policy(tmp_path: Path, kind: str, env: str = "dev01") -> dict[str, Any]:
    application = f"CERTIFICATE_ARN={CERTIFICATE}\nTRAFFIC_STEPS=10,50,100\n"
    extra = f"AWS_ACCOUNT_ID={ACCOUNT}\n" + (application if kind == "application" else "")
    return policy_of(tmp_path, kind, env=env, extra=extra)


@pytest.mark.parametrize("kind", ["application", "classic"])
def test_every_statement_allows_what_the_tool_asks_and_removing_it_refuses_a_named_request(tmp_path, kind):
    document = dev01_policy(tmp_path, kind)
    requests = ours(kind)
    for request in requests:
        assert allowed(document, request), request
    sids = {s["Sid"] for s in document["Statement"]}
    assert sids - {r.label for r in requests} == {"NotOtherEnvironments"}  # a Deny: tested below
    for sid in sids - {"NotOtherEnvironments"}:
        refused = [r for r in requests if r.label == sid and not allowed(without(document, sid), r)]
        assert refused, f"without {sid} every request still passes: it grants nothing"


def theirs(kind: str) -> list[Request]:
    """dev01-eu's resources, as dev01's tool would touch them: every write dev01's policy must refuse."""
    requests = [r for r in ours(kind, env="dev01-eu") if not r.action.split(":")[1].startswith(("Describe", "List"))]
    # Not environment-specific: the service-linked roles; an image's promotion tag (any environment's image
    # given by hand); what an instance is launched with; Packer's images by id (docs/permissions.md).
    shared = {"ServiceLinkedRoles", "PromotionTags", "RunInstancesWith", "Images", "SecurityGroupsInVpc"}
    return [r for r in requests if r.label not in shared | {"Certificate", "TrafficMetrics"}]


@pytest.mark.parametrize("kind", ["application", "classic"])
def test_dev01s_policy_allows_nothing_of_dev01_eu(tmp_path, kind):
    """ARNs and conditions, evaluated on the document (the embedded cloud checks actions only): dev01's names are
    a prefix of dev01-eu's, and no wildcard or tag of dev01's reaches them."""
    document = dev01_policy(tmp_path, kind)
    requests = theirs(kind)
    assert len(requests) >= 18
    leaks = [r for r in requests if allowed(document, r)]
    assert leaks == []
    group = (
        f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:0a1b:autoScalingGroupName/"
        "asg-webapp-dev01-eu-20260101000000"
    )
    eu_tags = {"autoscaling:ResourceTag/App": "webapp", "autoscaling:ResourceTag/Env": "dev01-eu"}
    assert not allowed(document, Request("autoscaling:DeleteAutoScalingGroup", group, eu_tags))
    # Even a group of dev01-eu's tagged as dev01's (or an untagged one named like the original scripts'): the
    # Deny on names with a hyphen past dev01's prefix holds.
    forged = {"autoscaling:ResourceTag/App": "webapp", "autoscaling:ResourceTag/Env": "dev01"}
    assert not allowed(document, Request("autoscaling:DeleteAutoScalingGroup", group, forged))
    lc = f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:launchConfiguration:0a1b:launchConfigurationName/lc-webapp-dev01-eu-1"
    assert not allowed(document, Request("autoscaling:DeleteLaunchConfiguration", lc))
    assert allowed(without(document, "NotOtherEnvironments"), Request("autoscaling:DeleteLaunchConfiguration", lc))
    # ... while dev01's own group is allowed.
    own = group.replace("dev01-eu", "dev01")
    own_tags = {**eu_tags, "autoscaling:ResourceTag/Env": "dev01"}
    assert allowed(document, Request("autoscaling:DeleteAutoScalingGroup", own, own_tags))


def test_tags_are_written_only_at_creation_or_onto_the_environments_own_resources(tmp_path):
    document = dev01_policy(tmp_path, "application")
    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    mine = {"aws:RequestTag/App": "webapp", "aws:RequestTag/Env": "dev01", "aws:TagKeys": ["App", "Env"]}
    # Another environment's instance, security group, launch template: no tag of any kind, even this one's.
    for resource in ("instance/i-1", "security-group/sg-1", "launch-template/lt-1", "key-pair/other"):
        other = {"aws:ResourceTag/App": "webapp", "aws:ResourceTag/Env": "dev01-eu", **mine}
        assert not allowed(document, Request("ec2:CreateTags", f"{ec2}:{resource}", other)), resource
        untagged = dict(mine)  # an existing untagged resource, not being created
        assert not allowed(document, Request("ec2:CreateTags", f"{ec2}:{resource}", untagged)), resource
    # At creation: only with this environment's tags, only in the creating calls it makes.
    creating = {"ec2:CreateAction": "RunInstances", **mine}
    assert allowed(document, Request("ec2:CreateTags", f"{ec2}:instance/i-1", creating))
    theirs_tags = {**creating, "aws:RequestTag/Env": "dev01-eu"}
    assert not allowed(document, Request("ec2:CreateTags", f"{ec2}:instance/i-1", theirs_tags))
    assert not allowed(
        document, Request("ec2:CreateTags", f"{ec2}:volume/v-1", {**creating, "ec2:CreateAction": "CreateVolume"})
    )
    # Another environment's image: the promotion tags only, never its Env or inputs.
    image = f"arn:aws:ec2:{REGION}::image/ami-1"
    other_image = {"aws:ResourceTag/App": "webapp", "aws:ResourceTag/Env": "dev01-eu"}
    assert not allowed(document, Request("ec2:CreateTags", image, {**other_image, **mine}))
    assert allowed(
        document, Request("ec2:CreateTags", image, {**other_image, "aws:TagKeys": ["Deployed", "GivenByHand"]})
    )


def test_instance_and_security_group_writes_need_the_environments_tags(tmp_path):
    document = dev01_policy(tmp_path, "application")
    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    writes = {
        "instance/i-1": [
            "ec2:StopInstances",
            "ec2:TerminateInstances",
            "ec2:CreateImage",
            "ec2:ModifyInstanceAttribute",
        ],
        "security-group/sg-1": [
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupIngress",
            "ec2:DeleteSecurityGroup",
        ],
        "launch-template/lt-1": ["ec2:DeleteLaunchTemplate"],
    }
    for resource, actions in writes.items():
        for action in actions:
            for tags in ({}, {"aws:ResourceTag/App": "webapp", "aws:ResourceTag/Env": "dev01-eu"}):
                assert not allowed(document, Request(action, f"{ec2}:{resource}", tags)), (action, tags)
    assert not action_allowed(document, "ec2:ModifyInstanceAttribute")


def test_route53_changes_only_the_hosts_a_record(tmp_path):
    document = dev01_policy(tmp_path, "application")
    zone = "arn:aws:route53:::hostedzone/Z1"

    def change(names: list[str], types: list[str]) -> Request:
        context = {
            "route53:ChangeResourceRecordSetsNormalizedRecordNames": names,
            "route53:ChangeResourceRecordSetsRecordTypes": types,
            "route53:ChangeResourceRecordSetsActions": ["UPSERT"],
        }
        return Request("route53:ChangeResourceRecordSets", zone, context)

    assert allowed(document, change(["dev01.example.com"], ["A"]))
    assert not allowed(document, change(["dev01-eu.example.com"], ["A"]))
    assert not allowed(document, change(["example.com"], ["A"]))
    assert not allowed(document, change(["dev01.example.com"], ["MX"]))
    assert not allowed(document, change(["dev01.example.com", "www.example.com"], ["A"]))


@pytest.mark.parametrize("kind", ["application", "classic"])
def test_named_resources_are_scoped_to_the_environment(tmp_path, kind):
    """Names only: the load balancer of the environment's kind, by its exact name."""
    document = dev01_policy(tmp_path, kind)
    elb = f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:"
    [balancer] = [s["Resource"] for s in document["Statement"] if s["Sid"] == "LoadBalancer"]
    if kind == "classic":
        assert balancer == [elb + "loadbalancer/elb-webapp-dev01"]
    else:
        delete = "elasticloadbalancing:DeleteLoadBalancer"
        assert allowed(document, Request(delete, elb + "loadbalancer/app/alb-webapp-dev01/50dc6c495c0c9188"))
        assert not allowed(document, Request(delete, elb + "loadbalancer/app/alb-webapp-dev01-eu/50dc6c495c0c9188"))
        # Each group's own target group, and no other environment's (its shared tg-NAME, or its groups' own).
        names = Names(app="webapp", env="dev01", domain="example.com")
        others = [Names(app="webapp", env=env, domain="example.com") for env in ("dev0", "dev01-eu", "dev02")]
        drop = "elasticloadbalancing:DeleteTargetGroup"
        own = names.group_target_group("asg-webapp-dev01-20261205100000")
        assert allowed(document, Request(drop, f"{elb}targetgroup/{own}/50dc6c495c0c9188"))
        for other in others:
            theirs = other.group_target_group(f"{other.group_prefix}20261205100000")
            assert not allowed(document, Request(drop, f"{elb}targetgroup/{theirs}/50dc6c495c0c9188"))
            assert not allowed(document, Request(drop, f"{elb}targetgroup/{other.target_group}/50dc6c495c0c9188"))


def test_the_documented_permissions_section_is_the_policy(tmp_path):
    readme = (REPO / "docs" / "aws.md").read_text(encoding="utf-8")
    block = readme.split("<!-- iam-policy:start -->\n", 1)[1].split("<!-- iam-policy:end -->", 1)[0]
    assert block == permissions_table(staging_policy(tmp_path))


# --- the inventory: every operation the tool can send, and Packer's ----------------------------------------------

# The clients' service names, and the IAM prefix of their actions.
IAM_PREFIX = {
    "ec2": "ec2",
    "elb": "elasticloadbalancing",
    "elbv2": "elasticloadbalancing",
    "autoscaling": "autoscaling",
    "route53": "route53",
    "ssm": "ssm",
    "sts": "sts",
    "acm": "acm",
    "cloudwatch": "cloudwatch",
}
# A load balancer kind's own code: its operations are checked against that kind's policy only.
KIND_FILES = {
    "classic": ["deploy/aws/loadbalancers/classic.py"],
    "application": [
        "deploy/aws/loadbalancers/application.py",
        "deploy/aws/loadbalancers/group_targets.py",  # a target group per group
        "deploy/aws/loadbalancers/certificates.py",
        "deploy/aws/metrics.py",  # traffic steps: an application load balancer's only
    ],
}
# Operations that need no permission (AWS: GetCallerIdentity works even under an explicit deny).
NO_PERMISSION = {"sts:GetCallerIdentity"}
# What AWS asks of the caller on its own: the service-linked roles on an account's first group and load
# balancer; RunInstances for the instances of a group made from a launch template; AddTags for a load balancer or
# target group created with tags.
ASKED_BY_AWS = {"iam:CreateServiceLinkedRole", "ec2:RunInstances", "elasticloadbalancing:AddTags"}


def code_operations(kind: str) -> dict[str, set[str]]:
    """Every AWS operation named in the tool's code (deploy/, the embedded cloud aside), as the IAM actions it
    may be ({snake_name: {prefix:Operation, ...}}): a client method or an operation name given to a paginator,
    whether or not a given run calls it (an APP_PORT change, a dry run, a failure path)."""
    session = botocore.session.get_session()
    names: dict[str, set[str]] = {}
    for service, prefix in IAM_PREFIX.items():
        for operation in session.get_service_model(service).operation_names:
            names.setdefault(xform_name(operation), set()).add(f"{prefix}:{operation}")
    other = KIND_FILES["classic" if kind == "application" else "application"]
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / "deploy").rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith("deploy/localcloud/") or relative in other or relative == "deploy/motoserver.py":
            continue
        for token in set(re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", path.read_text(encoding="utf-8"))):
            if token in names:
                found[token] = names[token]
    return found


@pytest.mark.parametrize("kind", ["application", "classic"])
def test_every_operation_of_the_code_and_packer_is_allowed_and_nothing_else_is_granted(tmp_path, kind):
    document = dev01_policy(tmp_path, kind)
    operations = code_operations(kind)
    assert "create_load_balancer_listeners" in operations or kind == "application"
    assert "get_caller_identity" in operations
    refused = {
        token: actions
        for token, actions in operations.items()
        if not any(action_allowed(document, a) or a in NO_PERMISSION for a in actions)
    }
    assert refused == {}
    refused_packer = [action for action in PACKER_CALLS if not action_allowed(document, action)]
    assert refused_packer == []
    # Nothing granted that no operation needs: every action an Allow statement names matches an operation.
    needed = {a for actions in operations.values() for a in actions} | set(PACKER_CALLS) | ASKED_BY_AWS
    unused = [
        (s["Sid"], action)
        for s in document["Statement"]
        if s["Effect"] == "Allow"
        for action in s["Action"]
        if not any(re.fullmatch(action.replace("*", ".*"), n, re.IGNORECASE) for n in needed)
    ]
    assert unused == []
    dropped = ["ec2:GetPasswordData", "ec2:CreateVolume", "ec2:RegisterImage", "ec2:CreateSnapshot"]
    assert not [a for a in dropped if action_allowed(document, a)]


# --- proven by running --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def enforced_server(tmp_path_factory) -> Iterator[str]:
    """A moto server (the embedded cloud's, with its fixes) that checks IAM after the first ADMIN_CALLS calls."""
    folder = tmp_path_factory.mktemp("moto-iam")
    settings = {"LOCAL_TIME_SCALE": TEST_TIME_SCALE, "LOCAL_CLOUD_DIR": str(folder)}
    with embedded_cloud_server(folder, INITIAL_NO_AUTH_ACTION_COUNT=str(ADMIN_CALLS), **settings) as url:
        yield url


class Account:
    """The enforced server's account: an admin allowed everything, and one user per environment."""

    def __init__(self, url: str, admin: dict[str, str]) -> None:
        self.url = url
        self.admin = admin

    def client(self, service: str, key: dict[str, str] | None = None) -> Any:
        key = key or self.admin
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )

    def user(self, name: str, policy: dict[str, Any]) -> dict[str, str]:
        iam = self.client("iam")
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="immutable-deploy", PolicyDocument=json.dumps(policy))
        return iam.create_access_key(UserName=name)["AccessKey"]


@pytest.fixture(scope="module")
def account(enforced_server: str) -> Account:
    """The admin's ADMIN_CALLS calls (what an account has: the hosted zone, a base image), then enforcement."""
    admin = boto3.Session(region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    calls: list[str] = []

    def client(service: str) -> Any:
        made = admin.client(service, endpoint_url=enforced_server)
        made.meta.events.register("before-send", lambda event_name, **_: calls.append(event_name))
        return made

    iam, route53, ec2 = client("iam"), client("route53"), client("ec2")
    iam.create_user(UserName="admin")
    iam.put_user_policy(
        UserName="admin",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    route53.create_hosted_zone(Name="example.test", CallerReference="iam-test")
    [base, *_] = ec2.describe_images(
        Owners=["amazon"],
        Filters=[{"Name": "architecture", "Values": ["x86_64"]}, {"Name": "root-device-type", "Values": ["ebs"]}],
    )["Images"]
    [instance] = ec2.run_instances(ImageId=base["ImageId"], MinCount=1, MaxCount=1, InstanceType="t3.micro")[
        "Instances"
    ]
    ec2.create_image(InstanceId=instance["InstanceId"], Name="local-base-debian-12")
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    assert len(calls) == ADMIN_CALLS
    with pytest.raises(Exception, match=r"AccessDenied|InvalidClientTokenId|AuthFailure"):
        ec2.describe_vpcs()  # enforcement is on: the fake credentials are no IAM user's
    return Account(enforced_server, key)


def site_for(
    account: Account, env: str, root: Path, drop: str | None = None, kind: str = "application", **settings: str
) -> tuple[ServerSite, dict[str, str]]:
    """ENV on the enforced server (real-AWS settings but its endpoint, LOAD_BALANCER=KIND, SETTINGS), run as a user
    holding its policy (without the statement DROP); the admin leaves a launch configuration of the original scripts
    behind, for the first deploy's cleanup to retire."""
    site = ServerSite(account.url, env, root)
    from conftest import copy_example_app, local_env_text

    copy_example_app(site.app_dir)
    text = local_env_text(
        account.url, LOCAL_CLOUD="false", LOAD_BALANCER=kind, APP_DIR=os.path.relpath(site.app_dir, REPO), **settings
    )
    write_env_folder(site.env_dir, {f"{env}.env": text})
    site.work_dir.mkdir()
    config = load_config(env, folder=site.env_dir, environ={})
    names = names_for(config)
    [image] = account.client("ec2").describe_images(Owners=["self"])["Images"][:1]
    account.client("autoscaling").create_launch_configuration(
        LaunchConfigurationName=f"{names.launch_configuration_prefix}20200101000000",
        ImageId=image["ImageId"],
        InstanceType="t3.micro",
    )
    policy = policy_document(config, names)
    policy["Statement"] = [s for s in policy["Statement"] if s["Sid"] != drop]
    key = account.user(f"deployer-{env}", policy)
    return site, {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_SESSION_TOKEN": None,
        "AWS_SECURITY_TOKEN": None,
    }


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


LIFE = (("setup",), ("deploy",), ("deploy",), ("rollback",), ("cleanup",), ("destroy", "--yes"))
# The whole life with every task: dry runs and the reading tasks between the steps.
FULL_LIFE = (
    ("setup", "--dry-run"),
    ("setup",),
    ("deploy", "--dry-run"),
    ("deploy",),
    ("deploy",),
    ("status",),
    ("history",),
    ("ssh", "--print"),
    ("rollback", "--dry-run"),
    ("rollback",),
    ("cleanup", "--dry-run"),
    ("cleanup",),
    ("unlock",),
    ("destroy", "--dry-run"),
    ("destroy", "--yes"),
)


def logged_actions(site: ServerSite) -> set[str]:
    """The IAM actions of every call the runs logged (one file per call: NNNN-SERVICE-Operation.json)."""
    actions = set()
    for path in (site.work_dir / "deploy" / "log").rglob("*.json"):
        parts = path.stem.split("-")
        if len(parts) >= 2 and parts[-2] in IAM_PREFIX:
            actions.add(f"{IAM_PREFIX[parts[-2]]}:{parts[-1]}")
    return actions


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind", ["application", "classic"])
def test_a_user_holding_only_the_policy_runs_the_whole_life_of_an_environment(account, tmp_path, kind):
    env = f"{ENV}{kind[0]}"
    # The application kind in traffic steps (its second deploy and the rollback read CloudWatch: TrafficMetrics).
    steps = {"TRAFFIC_STEPS": "10,100", "STEP_SECONDS": "200"} if kind == "application" else {}
    site, user = site_for(account, env, tmp_path, kind=kind, **steps)
    for args in FULL_LIFE:
        ok(site.inv(*args, env=user))
    groups = account.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert [g for g in groups if g["AutoScalingGroupName"].startswith(f"asg-webapp-{env}-")] == []
    configurations = account.client("autoscaling").describe_launch_configurations()["LaunchConfigurations"]
    assert [c for c in configurations if c["LaunchConfigurationName"].startswith(f"lc-webapp-{env}-")] == []
    # The inventory, from the calls the runs made: each is in the code's inventory and allowed by the policy.
    config = load_config(env, folder=site.env_dir, environ={})
    document = policy_document(config, names_for(config))
    sent = logged_actions(site)
    assert len(sent) > 30
    inventory = {a for actions in code_operations(kind).values() for a in actions}
    assert sent - inventory == set()
    assert [a for a in sent if not action_allowed(document, a) and a not in NO_PERMISSION] == []
    assert ("cloudwatch:GetMetricData" in sent) == (kind == "application")


# Statements whose actions only AWS itself exercises: the service-linked roles are created by AWS, as the
# caller, on an account's first group and load balancer; moto never asks for them.
NOT_EXERCISED = {"ServiceLinkedRoles"}
# Statements none of whose actions is theirs alone: the embedded cloud, which checks actions only, still allows
# them without the statement; the document's evaluation shows what each alone allows (above).
SHARED = {"SecurityGroupsInVpc", "RunInstancesWith", "TagsAtCreation", "TagNewImages", "PromotionTags"}
SHARED |= {"OriginalScriptsGroups", "NotOtherEnvironments"}
# The statements a kind's policy words its own way; the others are the same for both kinds (checked below),
# so one kind's runs prove them for both.
OF_THE_KIND = ["LoadBalancer", "Groups"]
SAMPLED = [
    "DeployLockAndHistory",
    "FindHostedZone",
    "ReadHostedZone",
    "HostRecord",
    "ReadEc2",
    "CreateTagged",
    "OwnTagged",
    "KeyPairs",
    "Images",
    "ReadAutoScaling",
    "CreateGroups",
    "Groups",
    "OriginalScriptsLaunchConfigurations",
    "ReadLoadBalancers",
    "LoadBalancer",
]
DROPS = [("application", sid) for sid in SAMPLED] + [("classic", sid) for sid in OF_THE_KIND]


@pytest.mark.parametrize("kind", ["application", "classic"])
def test_every_statement_is_sampled_or_shared_and_the_kinds_differ_only_where_sampled_twice(tmp_path, kind):
    document = staging_policy(tmp_path, kind)
    assert set(SAMPLED) | NOT_EXERCISED | SHARED == {s["Sid"] for s in document["Statement"]}
    allows = [s for s in document["Statement"] if s["Effect"] == "Allow"]
    alone = {
        s["Sid"] for s in allows if any(all(a not in o["Action"] for o in allows if o is not s) for a in s["Action"])
    }
    assert alone == set(SAMPLED) | NOT_EXERCISED  # a sampled statement has an action no other one grants
    other = staging_policy(tmp_path / "other", "classic" if kind == "application" else "application")
    differ = [s["Sid"] for s, t in zip(document["Statement"], other["Statement"], strict=True) if s != t]
    assert sorted(differ) == sorted([*OF_THE_KIND, "OriginalScriptsGroups"])


@pytest.mark.timeout(600)
@pytest.mark.parametrize("kind, sid", DROPS)
def test_without_one_statement_a_run_fails_with_one_line_naming_the_permission(account, tmp_path, kind, sid):
    env = f"{kind[0]}{DROPS.index((kind, sid))}"
    site, user = site_for(account, env, tmp_path, drop=sid, kind=kind)
    config = load_config(env, folder=site.env_dir, environ={})
    [statement] = [s for s in policy_document(config, names_for(config))["Statement"] if s["Sid"] == sid]
    for args in LIFE:
        result = site.inv(*args, env=user)
        if result.returncode != 0:
            break
    else:
        pytest.fail(f"the whole life of {env} ran without {sid}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    [line] = lines
    assert "Traceback" not in result.stderr + result.stdout
    assert line.startswith("error: ") and re.match(r"error: [a-z-]+: ", line), line  # names the step
    denied = re.search(r"not authorized to perform:? ([a-z0-9-]+:[A-Za-z]+)", line)
    assert denied is not None, line
    action = denied.group(1)
    assert any(re.fullmatch(a.replace("*", ".*"), action) for a in statement["Action"]), (sid, line)
