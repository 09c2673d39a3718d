"""`--dry-run`: plans of setup, deploy, cleanup and destroy that write nothing.

Proof that no mutating request reached the cloud, three ways: the dry-run guard of deploy/aws.py
refuses any write (its record of refused calls stays empty), the run log (one file per AWS call)
holds only reads, and the cloud's whole state is the same before and after (in-process: every
describe; on the moto server: its /moto-api/data.json dump).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import TEST_ENV, run_inv
from invoke import Collection, Config
from operator_env import (
    bake_image,
    client,
    create_zone,
    deploy,
    deployed_on_server,
    described_cloud,
    logged_operations,
    make_environment,
    moto_state,
    output,
    prime_moto,
    set_up,
)

import tasks
from deploy.aws.clients import is_read_operation
from deploy.chain import ChainExecutor
from deploy.errors import DeployError
from deploy.pipeline import plan
from deploy.plans.actions import would
from deploy.plans.cleanup import CleanupFacts, plan_cleanup
from deploy.plans.model import Group, Image, LaunchConfiguration
from deploy.plans.stages import Request
from deploy.steps.cleanup import cleanup_plan
from deploy.steps.destroy import run_destroy
from deploy.steps.setup import setup_plan


def assert_only_reads(environment) -> None:
    assert environment.aws.refused == []
    operations = logged_operations(environment)
    assert operations, "the plan read nothing?"
    assert all(is_read_operation(name) for name in operations), operations


@pytest.mark.parametrize(
    ("name", "read"),
    [
        ("DescribeInstances", True),
        ("ListResourceRecordSets", True),
        ("GetParameter", True),
        ("CreateLoadBalancer", False),
        ("PutParameter", False),
        ("DeregisterImage", False),
        ("RunInstances", False),
    ],
)
def test_read_operations_are_describe_list_get(name, read) -> None:
    assert is_read_operation(name) is read


def test_the_guard_refuses_a_write_before_it_is_sent(cloud, tmp_path):
    environment = make_environment(tmp_path, dry_run=True)
    assert environment.aws.ec2.describe_key_pairs()["KeyPairs"] == []
    with pytest.raises(DeployError, match="refused ec2:CreateKeyPair"):
        environment.aws.ec2.create_key_pair(KeyName="webapp-staging")
    assert environment.aws.refused == ["ec2:CreateKeyPair"]
    assert client("ec2").describe_key_pairs()["KeyPairs"] == []  # it never reached the cloud
    assert "dry run: refused ec2:CreateKeyPair" in output(environment)


@pytest.mark.parametrize("kind", ["classic", "application"])
def test_setup_plan_of_a_new_environment_says_what_it_would_create(cloud, tmp_path, kind):
    create_zone()
    before = described_cloud()
    environment = make_environment(tmp_path, kind=kind, dry_run=True, extra="SSH_CIDR=203.0.113.7/32\n")

    lines = setup_plan(environment)

    assert described_cloud() == before
    assert_only_reads(environment)
    assert lines and all(line.startswith(("would ", "webapp-staging-")) for line in lines), lines
    assert "would create security group webapp-staging-lb" in lines
    assert "webapp-staging-web: would allow tcp 22 from 203.0.113.7/32" in lines
    assert any(line.startswith("would create load balancer") for line in lines)
    assert any(line.startswith("would point staging.example.com (ALIAS A)") for line in lines)
    assert "would import key pair webapp-staging" in lines
    assert not (tmp_path / "work" / "deploy" / "keys").exists()


def test_setup_plan_after_setup_changes_nothing_and_says_so(cloud, tmp_path):
    create_zone()
    set_up(make_environment(tmp_path / "setup"))
    environment = make_environment(tmp_path / "plan", dry_run=True, extra="SSH_CIDR=203.0.113.7/32\n")
    before = described_cloud()

    assert setup_plan(environment) == ["webapp-staging-web: would allow tcp 22 from 203.0.113.7/32"]

    assert described_cloud() == before
    assert_only_reads(environment)


def test_deploy_plan_names_the_bakes_the_new_group_and_what_it_would_retire(cloud, tmp_path):
    create_zone()
    environment = set_up(make_environment(tmp_path / "setup"))
    old_group, old_image = deploy(environment)
    source = bake_image("staging", role="source", managed=False)
    planner = make_environment(tmp_path / "plan", dry_run=True, extra=f"SOURCE_AMI={source}\n")
    before = described_cloud()

    lines = plan(planner, Request())

    assert described_cloud() == before
    assert_only_reads(planner)
    steps = [line.split(":", 1)[0] for line in lines]
    assert steps == [  # in the order the run takes them (the pipeline's)
        "build-app",
        "copy-over",
        "bake-primal",
        "bake-primal",
        "bake-carnivore",
        "launch-asg",
        "wait-health",
        "shift-traffic",
        "cleanup",
    ]
    assert lines[2] == "bake-primal: would create security group webapp-staging-bake (Packer's build instances)"
    assert lines[3] == f"bake-primal: would bake a primal image with Packer (-only=aws) from {source}"
    launch = lines[5]
    assert "would create launch template lt-webapp-staging-" in launch and "2 x t3.micro" in launch
    # The group serving now is kept for KEEP_PREVIOUS_SECONDS (its template with it), then sized 0 by AWS.
    kept = next(line for line in lines if line.startswith(f"cleanup: would keep group {old_group} (out of service"))
    assert kept.endswith("then AWS sizes it 0 (scheduled action))")
    # The old image was deployed (RETAIN_IMAGES=2 keeps it for a rollback): not deleted.
    assert not any(old_image in line for line in lines)


def test_deploy_plan_with_a_given_image_skips_every_build(cloud, tmp_path):
    create_zone()
    set_up(make_environment(tmp_path / "setup"))
    image = bake_image("staging")
    planner = make_environment(tmp_path / "plan", dry_run=True)

    lines = plan(planner, Request(image_id=image))

    assert lines[0] == f"build-app, copy-over, bake-primal, bake-carnivore: skip, image {image} is given"
    assert f"({image}, IMDSv2 required, encrypted)" in lines[1]
    assert lines[-1] == "cleanup: nothing to retire"
    assert_only_reads(planner)


def test_deploy_plan_before_setup_fails_like_the_deploy_would(cloud, tmp_path):
    create_zone()
    planner = make_environment(tmp_path, dry_run=True)
    with pytest.raises(DeployError, match="would fail at launch-asg: load balancer elb-webapp-staging does not exist"):
        plan(planner, Request(image_id=bake_image("staging")))
    assert planner.aws.refused == []


def test_cleanup_plan_lists_outdated_groups_and_changes_nothing(cloud, tmp_path):
    create_zone()
    environment = set_up(make_environment(tmp_path / "setup"))
    old_group, _ = deploy(environment)
    new_group, _ = deploy(environment)
    planner = make_environment(tmp_path / "plan", dry_run=True)
    before = described_cloud()

    lines = would(cleanup_plan(planner))

    [kept] = lines  # kept for its window (KEEP_PREVIOUS_SECONDS), with its template
    assert kept.startswith(f"would keep group {old_group} (out of service with its capacity until ")
    assert f"serving: {new_group}" in output(planner)
    assert described_cloud() == before
    assert_only_reads(planner)


def test_destroy_dry_run_deletes_nothing(cloud, tmp_path, work_dir):
    create_zone()
    environment = set_up(make_environment(tmp_path / "setup"))
    deploy(environment)
    planner = make_environment(tmp_path / "plan", dry_run=True)
    before = described_cloud()

    assert run_destroy(planner, dry_run=True) == []

    assert described_cloud() == before
    assert_only_reads(planner)
    assert "delete load balancer elb-webapp-staging" in output(planner)
    assert (work_dir / "deploy" / "keys" / "staging").is_file()


def test_the_cleanup_plan_keeps_what_the_serving_group_uses() -> None:
    serving = Group("asg-w-s-3", launch_template="lt-w-s-3", image_id="ami-3")
    groups = [Group("asg-w-s-1", launch_template="lt-w-s-1"), Group("asg-w-s-2", launch_configuration="lc-w-s-2")]
    images = [Image(f"ami-{n}") for n in (1, 2, 3, 4)]
    facts = CleanupFacts(
        groups=[*groups, serving],
        serving=serving,
        serving_health=None,
        templates=["lt-w-s-1", "lt-w-s-3"],
        template_images={"lt-w-s-3": "ami-3"},
        configurations=[LaunchConfiguration("lc-w-s-2", "ami-2")],
        images=images,
        protected={"ami-4"},
    )
    actions = plan_cleanup(facts)
    assert [(a.op, a.target) for a in actions] == [
        ("delete-group", "asg-w-s-1"),  # empty (no instance, desired 0): deleted at once
        ("delete-group", "asg-w-s-2"),
        ("delete-launch-template", "lt-w-s-1"),
        ("delete-launch-configuration", "lc-w-s-2"),
        ("delete-image", "ami-1"),  # not the serving one (3), not the protected one (4)
        ("delete-image", "ami-2"),
    ]
    kept = plan_cleanup(replace(facts, keep_images=True))
    assert not [a for a in kept if a.op == "delete-image"] and "would keep every image" in " ".join(would(kept))


def _chain(task: str, **flags: object) -> list[str]:
    executor = ChainExecutor(Collection.from_module(tasks), Config())
    return [call.task.name for call in executor.expand_calls(executor.normalize([(task, flags)]))]


def test_a_dry_run_deploy_runs_no_pre_task() -> None:
    assert _chain("deploy", env="local", dry_run=True) == ["deploy"]
    assert _chain("deploy", env="local", dry_run=False)[0] == "build_app"


def newest_run_operations(work_dir: Path, env: str) -> list[str]:
    run = (work_dir / "deploy" / "log" / env / "latest").resolve()
    return [path.stem.rsplit("-", 1)[1] for path in sorted(run.glob("*.json"))]


def test_every_dry_run_on_the_moto_server_leaves_its_state_unchanged(env_dir, work_dir, fresh_cloud):
    """The real CLI: on an empty cloud, then on a deployed environment, no dry run changes anything."""
    prime_moto(fresh_cloud)
    empty = moto_state(fresh_cloud)
    planned = run_inv("setup", "--env", TEST_ENV, "--dry-run")
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "embedded cloud: would create the public hosted zone example.test" in planned.stdout
    assert "would create load balancer alb-webapp-test" in planned.stdout
    assert moto_state(fresh_cloud) == empty  # not even seeded

    _, group, image = deployed_on_server(TEST_ENV)
    # moto turns a new load balancer from provisioning to active at the first DescribeLoadBalancers (a read that
    # changes its state; AWS does it in time), which setup no longer sends after creating it: read it now.
    prime_moto(fresh_cloud)
    deployed = moto_state(fresh_cloud)
    outputs = {}
    for command in ("setup", "deploy", "cleanup", "destroy"):
        result = run_inv(command, "--env", TEST_ENV, "--dry-run")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "refused" not in result.stdout + result.stderr
        assert "plan (dry run" in result.stdout
        operations = newest_run_operations(work_dir, TEST_ENV)  # one log file per AWS call
        assert operations and all(is_read_operation(name) for name in operations), (command, operations)
        outputs[command] = result.stdout
    assert moto_state(fresh_cloud) == deployed  # one dump at the end: each takes a second or two
    assert "nothing would change: webapp-test is already set up" in outputs["setup"]
    assert f"cleanup: would size group {group} 0" in outputs["deploy"]  # KEEP_PREVIOUS_SECONDS=0 (tests' env)
    # The groups serve through their own target groups: setup's shared one goes (nothing else to retire).
    assert "1. would delete target group tg-webapp-test (out of the listeners first)\n<==" in outputs["cleanup"]
    assert f"deregister image {image}" in outputs["destroy"]


def test_cleanup_plan_retires_nothing_while_the_serving_group_is_not_healthy(cloud, tmp_path):
    create_zone()
    environment = set_up(make_environment(tmp_path / "setup"))
    deploy(environment)
    new_group, _ = deploy(environment)
    [raw] = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[new_group])["AutoScalingGroups"]
    client("ec2").stop_instances(InstanceIds=[raw["Instances"][0]["InstanceId"]])

    lines = would(cleanup_plan(make_environment(tmp_path / "plan", dry_run=True)))

    assert len(lines) == 1
    assert lines[0].startswith(f"would retire nothing: the serving group {new_group} is not fully healthy (1/2 healthy")
