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
import pytest
from conftest import (
    REGION,
    REPO,
    TEST_TIME_SCALE,
    ServerSite,
    embedded_cloud_server,
    run_inv,
    write_env_folder,
)

from deploy.config import load_config
from deploy.naming import names_for
from deploy.plans.iam import permissions_table, policy_document

ADMIN_CALLS = 8  # the calls of `prepare_account`, made before enforcement starts
ENV = "iam"


# --- the document -----------------------------------------------------------------------------------------------


def staging_policy(tmp_path: Path, kind: str = "application") -> dict[str, Any]:
    folder = write_env_folder(tmp_path / "env", {"staging.env": f"DOMAIN=example.com\nLOAD_BALANCER={kind}\n"})
    config = load_config("staging", folder=folder, environ={})
    return policy_document(config, names_for(config))


def test_inv_iam_policy_prints_the_json_document_on_stdout(tmp_path):
    folder = write_env_folder(tmp_path / "env", {"staging.env": "DOMAIN=example.com\n"})
    result = run_inv("iam-policy", "--env", "staging", env={"DEPLOY_ENV_DIR": str(folder), "AWS_REGION": None})
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document == staging_policy(tmp_path)
    sids = [statement["Sid"] for statement in document["Statement"]]
    assert len(sids) == len(set(sids))
    actions = [action for statement in document["Statement"] for action in statement["Action"]]
    assert len(actions) == len(set(actions)), "each action in one statement: removing one removes exactly it"


def _arn_matches(pattern: str, arn: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), arn) is not None


@pytest.mark.parametrize("kind", ["application", "classic"])
def test_named_resources_are_scoped_to_the_environment(tmp_path, kind):
    """What moto cannot check (it knows no request's resource): the scoped ARNs cover this environment's
    resources and not another environment's."""
    statements = {s["Sid"]: s["Resource"] for s in staging_policy(tmp_path, kind)["Statement"]}
    account = "123456789012"
    ours_and_theirs = {
        "DeployLockAndHistory": (
            "parameter/immutable-deploy/webapp-staging/lock",
            "parameter/immutable-deploy/webapp-prod/lock",
        ),
        "Groups": (
            "autoScalingGroup:u:autoScalingGroupName/asg-webapp-staging-20260101000000",
            "autoScalingGroup:u:autoScalingGroupName/asg-webapp-production-20260101000000",
        ),
        "KeyPairs": ("key-pair/webapp-staging", "key-pair/webapp-production"),
    }
    services = {"DeployLockAndHistory": "ssm", "Groups": "autoscaling", "KeyPairs": "ec2"}
    for sid, (ours, theirs) in ours_and_theirs.items():
        arn = f"arn:aws:{services[sid]}:{REGION}:{account}:"
        assert any(_arn_matches(p, arn + ours) for p in statements[sid]), sid
        assert not any(_arn_matches(p, arn + theirs) for p in statements[sid]), sid
    balancer = statements["LoadBalancer"]
    elb = f"arn:aws:elasticloadbalancing:{REGION}:{account}:"
    if kind == "classic":
        assert _arn_matches(balancer[0], elb + "loadbalancer/elb-webapp-staging")
        assert not _arn_matches(balancer[0], elb + "loadbalancer/elb-webapp-production")
    else:
        assert any(_arn_matches(p, elb + "loadbalancer/app/alb-webapp-staging/50dc6c495c0c9188") for p in balancer)
        assert any(_arn_matches(p, elb + "targetgroup/tg-webapp-staging/943f017f100becff") for p in balancer)
        assert not any(_arn_matches(p, elb + "loadbalancer/app/alb-webapp-prod/50dc6c495c0c9188") for p in balancer)


def test_the_documented_permissions_section_is_the_policy(tmp_path):
    readme = (REPO / "docs" / "aws.md").read_text(encoding="utf-8")
    block = readme.split("<!-- iam-policy:start -->\n", 1)[1].split("<!-- iam-policy:end -->", 1)[0]
    assert block == permissions_table(staging_policy(tmp_path))


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


def site_for(account: Account, env: str, root: Path, drop: str | None = None) -> tuple[ServerSite, dict[str, str]]:
    """ENV on the enforced server (real-AWS settings but its endpoint), run as a user holding its policy
    (without the statement DROP)."""
    site = ServerSite(account.url, env, root)
    from conftest import copy_example_app, local_env_text

    copy_example_app(site.app_dir)
    text = local_env_text(account.url, LOCAL_CLOUD="false", APP_DIR=os.path.relpath(site.app_dir, REPO))
    write_env_folder(site.env_dir, {f"{env}.env": text})
    site.work_dir.mkdir()
    config = load_config(env, folder=site.env_dir, environ={})
    policy = policy_document(config, names_for(config))
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


@pytest.mark.timeout(600)
def test_a_user_holding_only_the_policy_runs_the_whole_life_of_an_environment(account, tmp_path):
    site, user = site_for(account, ENV, tmp_path)
    ok(site.inv("setup", env=user))
    ok(site.inv("deploy", env=user))
    ok(site.inv("deploy", env=user))
    ok(site.inv("rollback", env=user))
    ok(site.inv("cleanup", env=user))
    ok(site.inv("destroy", "--yes", env=user))
    assert account.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert account.client("elbv2").describe_load_balancers()["LoadBalancers"] == []


LIFE = (("setup",), ("deploy",), ("deploy",), ("rollback",), ("cleanup",), ("destroy", "--yes"))
# Statements whose actions only AWS itself exercises: the service-linked roles are created by AWS, as the
# caller, on an account's first group and load balancer; moto never asks for them.
NOT_EXERCISED = {"ServiceLinkedRoles"}
SAMPLED = [
    "DeployLockAndHistory",
    "FindHostedZone",
    "HostRecord",
    "ReadEc2",
    "SecurityGroups",
    "KeyPairs",
    "ReadLoadBalancers",
    "LoadBalancer",
    "Instances",
    "Images",
    "LaunchTemplates",
    "ReadAutoScaling",
    "Groups",
    "Tags",
]


def test_every_statement_but_the_unexercised_is_sampled(tmp_path):
    assert set(SAMPLED) | NOT_EXERCISED == {s["Sid"] for s in staging_policy(tmp_path)["Statement"]}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("sid", SAMPLED)
def test_without_one_statement_a_run_fails_with_one_line_naming_the_permission(account, tmp_path, sid):
    env = f"r{SAMPLED.index(sid)}"
    site, user = site_for(account, env, tmp_path, drop=sid)
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
    denied = re.search(r"not authorized to perform:? ([a-z0-9-]+:[A-Za-z]+)", line)
    assert denied is not None, line
    action = denied.group(1)
    assert any(re.fullmatch(a.replace("*", ".*"), action) for a in statement["Action"]), (sid, line)
