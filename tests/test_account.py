"""AWS_ACCOUNT_ID pins the account: every task that writes checks the credentials' account with one
sts:GetCallerIdentity before anything else, and refuses another account naming both ids; a dry run, a read and
an environment without the key make no such call (the request budgets stay as they were)."""

from __future__ import annotations

import boto3
import pytest
from conftest import REGION, write_env_folder
from invoke.exceptions import Exit
from operator_env import create_zone

from deploy.cli import run_step
from deploy.steps.setup import run_setup, setup_plan

MOTO_ACCOUNT = "123456789012"  # the account of moto's credentials
OTHER_ACCOUNT = "210987654321"


def folder(tmp_path, account: str | None):
    line = f"AWS_ACCOUNT_ID={account}\n" if account else ""
    return write_env_folder(tmp_path / "env", {"staging.env": f"DOMAIN=example.com\nLOAD_BALANCER=classic\n{line}"})


def sent(work_dir, operation: str) -> int:
    return len(list((work_dir / "deploy" / "log").rglob(f"*-{operation}.json")))


def test_credentials_of_another_account_are_refused_before_any_write_naming_both_ids(
    cloud, tmp_path, work_dir, monkeypatch
):
    monkeypatch.setenv("DEPLOY_ENV_DIR", str(folder(tmp_path, OTHER_ACCOUNT)))
    create_zone()
    with pytest.raises(Exit) as caught:
        run_step("setup", "staging", run_setup, locking=True)
    message = str(caught.value.message)
    assert message.count("\n") == 0 and "Traceback" not in message
    assert (
        f"the credentials are of account {MOTO_ACCOUNT}" in message and f"AWS_ACCOUNT_ID is {OTHER_ACCOUNT}" in message
    )
    assert "staging.env, line 3" in message  # where to fix it
    assert boto3.client("elb", region_name=REGION).describe_load_balancers()["LoadBalancerDescriptions"] == []
    groups = boto3.client("ec2", region_name=REGION).describe_security_groups()["SecurityGroups"]
    assert [g["GroupName"] for g in groups] == ["default"]
    assert boto3.client("ssm", region_name=REGION).describe_parameters()["Parameters"] == []  # not even the lock
    logged = [p.name for p in (work_dir / "deploy" / "log").rglob("*.json")]
    assert len(logged) == 1 and logged[0].endswith("-sts-GetCallerIdentity.json"), logged  # the only call


def test_the_right_account_costs_one_call_and_no_key_or_a_dry_run_none(cloud, tmp_path, work_dir, monkeypatch):
    create_zone()
    monkeypatch.setenv("DEPLOY_ENV_DIR", str(folder(tmp_path / "pinned", MOTO_ACCOUNT)))
    run_step("setup", "staging", run_setup, locking=True)
    assert sent(work_dir, "sts-GetCallerIdentity") == 1
    run_step("setup", "staging", setup_plan, dry_run=True)  # a dry run writes nothing: not checked
    assert sent(work_dir, "sts-GetCallerIdentity") == 1
    monkeypatch.setenv("DEPLOY_ENV_DIR", str(folder(tmp_path / "unpinned", None)))
    run_step("setup", "staging", run_setup, locking=True)
    assert sent(work_dir, "sts-GetCallerIdentity") == 1


def test_the_example_production_env_file_pins_its_account():
    from conftest import REPO

    text = (REPO / "env" / "production.env").read_text(encoding="utf-8")
    assert "\nAWS_ACCOUNT_ID=" in text
