"""The region is part of the environment: a stray shell region is refused before any AWS call, and "is this
record ours" compares the load balancer's exact DNS name (which names its region), never a name pattern."""

from __future__ import annotations

import boto3
import pytest
from conftest import REGION, write_env_folder
from invoke.exceptions import Exit
from operator_env import create_zone, make_environment

from deploy.cli import run_step
from deploy.config import REGION_OVERRIDE, load_config
from deploy.errors import ConfigError, DeployError
from deploy.plans.destroy import plan_destroy
from deploy.steps.destroy import describe_for_destroy
from deploy.steps.setup import run_setup

OTHER = "eu-west-1"


def folder(tmp_path):
    return write_env_folder(tmp_path / "env", {"staging.env": "DOMAIN=example.com\nLOAD_BALANCER=classic\n"})


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_a_shell_region_other_than_the_env_files_is_refused_naming_both(tmp_path, variable):
    with pytest.raises(ConfigError) as caught:
        load_config("staging", folder=folder(tmp_path), environ={variable: OTHER})
    message = str(caught.value)
    assert f"{variable}={OTHER}" in message
    assert f"AWS_REGION={REGION}" in message and "defaults.env" in message
    assert f"{REGION_OVERRIDE}={OTHER}" in message


def test_the_same_region_in_the_shell_is_accepted(tmp_path):
    environ = {"AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION}
    assert load_config("staging", folder=folder(tmp_path), environ=environ).region == REGION


def test_the_override_names_the_region_it_allows(tmp_path):
    config = load_config("staging", folder=folder(tmp_path), environ={"AWS_REGION": OTHER, REGION_OVERRIDE: OTHER})
    assert config.region == OTHER and config.source_of("AWS_REGION") == REGION_OVERRIDE
    with pytest.raises(ConfigError, match="refused before any AWS call"):  # an override of another region
        load_config("staging", folder=folder(tmp_path), environ={"AWS_REGION": OTHER, REGION_OVERRIDE: "us-west-2"})


def test_setup_with_a_stray_region_creates_nothing_anywhere(cloud, tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOY_ENV_DIR", str(folder(tmp_path)))
    monkeypatch.setenv("AWS_REGION", OTHER)
    create_zone()
    with pytest.raises(Exit) as caught:
        run_step("setup", "staging", run_setup, locking=True)
    assert f"AWS_REGION={OTHER}" in str(caught.value.message) and f"AWS_REGION={REGION}" in str(caught.value.message)
    for region in (REGION, OTHER):
        assert boto3.client("elb", region_name=region).describe_load_balancers()["LoadBalancerDescriptions"] == []
        groups = boto3.client("ec2", region_name=region).describe_security_groups()["SecurityGroups"]
        assert [g["GroupName"] for g in groups] == ["default"]
        assert boto3.client("ssm", region_name=region).describe_parameters()["Parameters"] == []  # not even the lock


def test_a_record_aliasing_the_same_named_balancer_in_another_region_is_foreign(cloud, tmp_path):
    zone_id = create_zone()
    run_setup(make_environment(tmp_path))  # the live site, in us-east-1
    elsewhere = make_environment(tmp_path, extra=f"AWS_REGION={OTHER}\n")
    with pytest.raises(DeployError, match="--take-over-dns") as caught:
        run_setup(elsewhere)
    assert f"{REGION}.elb.amazonaws.com" in str(caught.value)
    assert boto3.client("elb", region_name=OTHER).describe_load_balancers()["LoadBalancerDescriptions"] == []
    [record] = [
        r
        for r in boto3.client("route53").list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        if r["Type"] == "A"
    ]
    assert f".{REGION}.elb.amazonaws.com" in record["AliasTarget"]["DNSName"]


def test_destroy_in_another_region_keeps_the_live_record(cloud, tmp_path):
    create_zone()
    run_setup(make_environment(tmp_path))
    elsewhere = make_environment(tmp_path, extra=f"AWS_REGION={OTHER}\n")
    actions = plan_destroy(describe_for_destroy(elsewhere))
    assert [a for a in actions if a.op == "delete-record"] == []
    assert any(a.op == "keep" and a.target.startswith("DNS record") for a in actions)
