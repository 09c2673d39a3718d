"""`inv destroy`: the pure plan (order, ownership by names and tags), the production guard, the
confirmation, and a real destroy that leaves only other environments' (and foreign) resources."""

from __future__ import annotations

from dataclasses import replace

import pytest
from botocore.exceptions import ClientError
from conftest import TEST_ENV, local_env_text, run_inv
from operator_env import (
    FakeClock,
    bake_image,
    client,
    create_zone,
    deploy,
    deployed_on_server,
    described_cloud,
    make_environment,
    output,
    set_up,
)

from deploy import execute
from deploy.errors import DeployError
from deploy.plans.actions import numbered as describe_plan
from deploy.plans.destroy import Described, plan_destroy, refusal
from deploy.plans.model import Balancer, Group, Image, Owned, Record
from deploy.steps.destroy import run_destroy


def described(**overrides) -> Described:
    """A described staging environment with one of everything, all its own."""
    tags = {"App": "webapp", "Env": "staging", "ManagedBy": "immutable-deploy"}
    base = Described(
        app="webapp",
        env="staging",
        host="staging.example.com",
        zone_id="Z1",
        record=Record.from_aws(
            {"Name": "staging.example.com.", "Type": "A", "AliasTarget": {"DNSName": "elb-webapp-staging-1.x."}}
        ),
        load_balancer=Balancer("elb-webapp-staging", "classic", True, "elb-webapp-staging-1.x"),
        groups=(Group("asg-webapp-staging-20260101000000", tags={"Name": "webapp-staging"}, instance_ids=("i-1",)),),
        launch_templates=("lt-webapp-staging-20260101000000",),
        launch_configurations=("lc-webapp-staging-1",),
        images=(Image("ami-1", tags={**tags, "Role": "carnivore"}, snapshots=("snap-1",)),),
        security_groups=(Owned("webapp-staging-lb", tags, "sg-lb"), Owned("webapp-staging-web", tags, "sg-web")),
        key_pair=Owned("webapp-staging", tags),
        files=("/w/deploy/keys/staging",),
    )
    return replace(base, **overrides)


def test_the_plan_deletes_in_an_order_aws_allows() -> None:
    actions = plan_destroy(described())
    assert [(a.op, a.target) for a in actions] == [
        ("delete-record", "staging.example.com"),
        ("delete-group", "asg-webapp-staging-20260101000000"),
        ("delete-launch-template", "lt-webapp-staging-20260101000000"),
        ("delete-launch-configuration", "lc-webapp-staging-1"),
        ("delete-load-balancer", "elb-webapp-staging"),
        ("delete-image", "ami-1"),
        ("delete-security-group", "webapp-staging-web"),  # its rules name the load balancer's group
        ("delete-security-group", "webapp-staging-lb"),
        ("delete-key-pair", "webapp-staging"),
        ("delete-file", "/w/deploy/keys/staging"),
    ]
    assert actions[5].get("snapshots") == ("snap-1",)
    assert describe_plan(actions)[0] == " 1. delete DNS record staging.example.com (ALIAS A → elb-webapp-staging-1.x)"


def test_the_plan_keeps_what_is_not_this_environments() -> None:
    other = {"App": "webapp", "Env": "staging2", "ManagedBy": "immutable-deploy"}
    actions = plan_destroy(
        described(
            record=Record.from_aws(
                {"Name": "staging.example.com.", "Type": "A", "AliasTarget": {"DNSName": "somewhere-else.example.org."}}
            ),
            groups=(Group("asg-webapp-staging-20260101000000", tags={"Env": "prod"}),),
            images=(
                Image("ami-unmanaged", tags={"App": "webapp", "Env": "staging"}),
                Image("ami-shared", tags={**other, "Env": "staging"}),
            ),
            images_used_elsewhere=frozenset({"ami-shared"}),
            security_groups=(Owned("webapp-staging-web", other, "sg-x"),),
            key_pair=Owned("webapp-staging", other),
        )
    )
    kept = {a.target: a.detail for a in actions if a.op == "keep"}
    assert kept == {
        "DNS record staging.example.com": "it does not point at this environment's load balancer",
        "group asg-webapp-staging-20260101000000": "its tags name another app or environment",
        "image ami-unmanaged": "not baked by this tool for this environment",
        "image ami-shared": "another environment uses it",
        "security group webapp-staging-web": "its tags name another app or environment",
        "key pair webapp-staging": "its tags name another app or environment",
    }
    assert not [a for a in actions if a.op in ("delete-record", "delete-group", "delete-image", "delete-key-pair")]


def test_an_alias_is_ours_only_by_the_exact_dns_name_never_by_a_name_pattern() -> None:
    """A load balancer that does not exist in this region (a stray region, deleted already) claims no record."""
    gone = Balancer("elb-webapp-staging", "classic", False)
    record = {
        "Name": "staging.example.com.",
        "Type": "A",
        "AliasTarget": {"DNSName": "dualstack.elb-webapp-staging-9.us-east-1.elb.amazonaws.com."},
    }
    actions = plan_destroy(described(load_balancer=gone, record=Record.from_aws(record)))
    assert actions[0].op == "keep" and actions[0].target == "DNS record staging.example.com"
    assert not [a for a in actions if a.op in ("delete-record", "delete-load-balancer")]
    same_name_other_number = replace(described().load_balancer, dns_name="elb-webapp-staging-2.x")
    assert plan_destroy(described(load_balancer=same_name_other_number))[0].op == "keep"
    exact = {**record, "AliasTarget": {"DNSName": "dualstack.elb-webapp-staging-1.x."}}
    assert plan_destroy(described(record=Record.from_aws(exact)))[0].op == "delete-record"


@pytest.mark.parametrize(
    ("env_flag", "env", "yes", "dry_run", "refused"),
    [
        ("production", "production", True, False, False),
        ("production", "production", False, False, True),  # not confirmed
        (None, "production", True, False, True),  # the name came from DEPLOY_ENV, not from --env
        (None, "production", False, True, False),  # a dry run deletes nothing
        ("staging", "staging", False, False, False),  # asks for confirmation instead
    ],
)
def test_production_needs_both_the_name_and_yes(env_flag, env, yes, dry_run, refused) -> None:
    assert (refusal(env_flag, env, yes, dry_run) is not None) is refused


STAGING_GROUP_TARGET_GROUPS: list[str] = []  # each group's own target group (application kind), as launched


def own(key: str, item) -> bool:
    """Whether an item of described_cloud() is one of staging's own (those destroy must delete)."""
    if key == "images":
        return ("ManagedBy", "immutable-deploy") in item[1] and ("Env", "staging") in item[1]
    name = item if isinstance(item, str) else item[0]
    return {
        "groups": name.startswith("asg-webapp-staging-"),
        "launch_templates": name.startswith("lt-webapp-staging-"),
        "classic": name == "elb-webapp-staging",
        "application": name == "alb-webapp-staging",
        "target_groups": name in ("tg-webapp-staging", *STAGING_GROUP_TARGET_GROUPS),
        "records": name == "staging.example.com.",
        "security_groups": name in ("webapp-staging-lb", "webapp-staging-web"),
        "key_pairs": name == "webapp-staging",
        "parameters": False,
    }[key]


@pytest.mark.parametrize("kind", ["classic", "application"])
def test_destroy_leaves_only_other_environments_resources(cloud, tmp_path, work_dir, kind):
    create_zone()
    create_zone("example.org")
    other = set_up(make_environment(tmp_path / "other", env="staging2", kind=kind))
    deploy(other)
    environment = set_up(make_environment(tmp_path / "staging", kind=kind))
    deploy(environment)
    deploy(environment)  # two groups, two templates, two images
    # Not created by this tool, though named or tagged like this environment's:
    foreign_image = bake_image("staging", managed=False)
    client("ec2").create_security_group(GroupName="webapp-staging-lb-old", Description="by hand")
    client("ec2").create_key_pair(KeyName="webapp-staging-admin")
    before = described_cloud()
    prefix = environment.names.group_target_group_prefix
    STAGING_GROUP_TARGET_GROUPS[:] = [name for name in before["target_groups"] if name.startswith(prefix)]
    assert len(STAGING_GROUP_TARGET_GROUPS) == (2 if kind == "application" else 0)

    done = run_destroy(make_environment(tmp_path / "destroy", kind=kind), yes=True)

    after = described_cloud()
    # record, 2 groups, 2 templates, load balancer, 2 images, 2 security groups, key pair, 2 key files
    # (launching and promoting a group write no local state: the account records them)
    assert len(done) == 13
    # Exactly staging's own resources are gone; everything else is as it was.
    for key, items in before.items():
        if key != "instances":
            assert after[key] == [item for item in items if not own(key, item)], key
    assert foreign_image in {image for image, _ in after["images"]}
    running = [
        dict((t["Key"], t["Value"]) for t in instance.get("Tags", [])).get("Env")
        for r in client("ec2").describe_instances()["Reservations"]
        for instance in r["Instances"]
        if instance["State"]["Name"] == "running"
    ]
    assert running == ["staging2", "staging2"]
    assert not (work_dir / "deploy" / "keys" / "staging").exists()
    assert not (work_dir / "deploy" / "keys" / "staging.pub").exists()
    assert not (work_dir / "deploy" / "state" / "staging.json").exists()
    assert (work_dir / "deploy" / "keys" / "staging2").is_file()

    again = make_environment(tmp_path / "again", kind=kind)
    assert run_destroy(again, yes=True) == []
    assert "nothing to destroy" in output(again)


def test_destroy_asks_to_type_the_name_and_deletes_nothing_otherwise(cloud, tmp_path):
    create_zone()
    set_up(make_environment(tmp_path / "setup"))
    before = described_cloud()
    asked: list[str] = []

    with pytest.raises(DeployError, match="Not confirmed: nothing was deleted"):
        run_destroy(make_environment(tmp_path / "no"), confirm=lambda prompt: asked.append(prompt) or "yes")

    assert asked == ["Type staging to delete all of this, anything else to cancel: "]
    assert described_cloud() == before
    assert run_destroy(make_environment(tmp_path / "ok"), confirm=lambda prompt: "staging")
    assert described_cloud()["classic"] == []


def test_destroy_cli_refuses_production_without_touching_anything(env_dir, cloud_client):
    (env_dir / "production.env").write_text(local_env_text(cloud_client("ec2").meta.endpoint_url), encoding="utf-8")
    result = run_inv("destroy", "--env", "production")
    assert result.returncode == 1
    assert "Refusing to destroy production: pass both --env production and --yes" in result.stderr
    assert "==> destroy" not in result.stdout  # refused before the environment was even opened
    assert "Traceback" not in result.stderr


def test_destroy_cli_removes_the_environment_and_not_the_other(env_dir, fresh_cloud, cloud_client, work_dir):
    (env_dir / "other.env").write_text(local_env_text(fresh_cloud), encoding="utf-8")
    deployed_on_server("other")
    _, group, image = deployed_on_server(TEST_ENV)

    refused = run_inv("destroy", "--env", TEST_ENV)  # no terminal to confirm on, no --yes
    assert refused.returncode == 1 and "Not confirmed: nothing was deleted" in refused.stderr
    result = run_inv("destroy", "--env", TEST_ENV, "--yes")

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"done: delete group {group}" in result.stdout
    assert f"done: deregister image {image}" in result.stdout
    assert "<== destroy done in" in result.stdout
    elbv2 = cloud_client("elbv2")
    assert [lb["LoadBalancerName"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]] == ["alb-webapp-other"]
    groups = cloud_client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    assert [g["AutoScalingGroupName"][: len("asg-webapp-other-")] for g in groups] == ["asg-webapp-other-"]
    assert [k["KeyName"] for k in cloud_client("ec2").describe_key_pairs()["KeyPairs"]] == ["webapp-other"]
    parameters = [p["Name"] for p in cloud_client("ssm").describe_parameters()["Parameters"]]
    assert not [name for name in parameters if name.endswith("/lock")]  # the lock it held is released
    # The history stays: the account's record of what was deployed (and of images given by hand).
    assert f"/immutable-deploy/webapp-{TEST_ENV}/history" in parameters
    assert not (work_dir / "deploy" / "keys" / TEST_ENV).exists()


def test_a_security_group_still_in_use_is_retried_and_the_wait_is_bounded(cloud, tmp_path, monkeypatch):
    environment = make_environment(tmp_path)
    group_id = client("ec2").create_security_group(GroupName="webapp-staging-lb", Description="x")["GroupId"]
    clock = FakeClock()
    environment.clock, environment.sleep = clock, clock.sleep
    real = environment.aws.ec2.delete_security_group
    calls: list[str] = []

    def in_use_twice(**kwargs):
        calls.append(kwargs["GroupId"])
        if len(calls) <= 2:
            raise ClientError({"Error": {"Code": "DependencyViolation", "Message": "in use"}}, "DeleteSecurityGroup")
        return real(**kwargs)

    monkeypatch.setattr(environment.aws.ec2, "delete_security_group", in_use_twice)
    execute._delete_security_group(environment, group_id, "webapp-staging-lb")
    assert calls == [group_id] * 3 and clock.now == 102.0  # POLL_SECONDS=1, fake sleeps
    assert output(environment).count("waiting: webapp-staging-lb is still in use") == 2
    assert (
        client("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": ["webapp-staging-lb"]}])[
            "SecurityGroups"
        ]
        == []
    )

    def always_in_use(**kwargs):
        raise ClientError({"Error": {"Code": "DependencyViolation", "Message": "in use"}}, "DeleteSecurityGroup")

    monkeypatch.setattr(environment.aws.ec2, "delete_security_group", always_in_use)
    with pytest.raises(DeployError, match="run `inv destroy` again to finish"):
        execute._delete_security_group(environment, "sg-0123456789abcdef0", "webapp-staging-web")
    assert clock.now - 102.0 == execute.SECURITY_GROUP_TIMEOUT_S  # gave up at the bound, without sleeping


def test_destroy_with_the_other_kind_of_load_balancer_configured_refuses_and_says_how(cloud, tmp_path):
    create_zone()
    set_up(make_environment(tmp_path / "setup", kind="classic"))
    before = described_cloud()
    with pytest.raises(DeployError, match=r"already has a classic load balancer \(elb-webapp-staging\)"):
        run_destroy(make_environment(tmp_path / "destroy", kind="application"), yes=True)
    assert described_cloud() == before
