"""`inv ssh`: the command built for a deployed environment, the choice of instance, and the embedded
cloud, where there is no host to reach."""

from __future__ import annotations

import io
import subprocess

import pytest
from conftest import TEST_ENV, run_inv
from invoke.exceptions import Exit
from operator_env import client, create_zone, deploy, deployed_on_server, make_environment, output, set_up

from deploy.errors import DeployError
from deploy.steps import ssh
from deploy.steps.ssh import build_command, no_host_reason, pick_instance, run_ssh, ssh_command


def test_ssh_command_uses_only_the_environments_key() -> None:
    assert ssh_command("deploy/keys/dev01", "203.0.113.9") == [
        "ssh",
        "-i",
        "deploy/keys/dev01",
        "-o",
        "IdentitiesOnly=yes",
        "admin@203.0.113.9",
    ]


def _instance(instance_id: str, healthy: bool = True, **overrides) -> dict:
    return {
        "id": instance_id,
        "lifecycle": "InService" if healthy else "Pending",
        "health": "Healthy",
        "state": "running",
        "load_balancer": "InService",
        "public_ip": "203.0.113.1",
        **overrides,
    }


def test_the_first_healthy_instance_by_id_is_chosen() -> None:
    instances = [_instance("i-3"), _instance("i-1", healthy=False), _instance("i-2", load_balancer="OutOfService")]
    assert pick_instance(instances)["id"] == "i-3"
    assert pick_instance([*instances, _instance("i-0")])["id"] == "i-0"


def test_a_named_instance_must_belong_to_the_serving_group() -> None:
    instances = [_instance("i-1"), _instance("i-2", healthy=False)]
    assert pick_instance(instances, "i-2")["id"] == "i-2"  # even an unhealthy one, on purpose
    with pytest.raises(DeployError, match=r"i-9 is not an instance of the serving group \(its instances: i-1, i-2\)"):
        pick_instance(instances, "i-9")


def test_no_healthy_instance_says_which_there_are() -> None:
    with pytest.raises(DeployError, match=r"No healthy instance.*--instance: i-1 \(Pending, running\)"):
        pick_instance([_instance("i-1", healthy=False)])


def test_the_command_for_a_deployed_environment(cloud, tmp_path, work_dir, monkeypatch):
    monkeypatch.chdir(work_dir)  # the key is shown relative to where the command runs
    create_zone()
    environment = set_up(make_environment(tmp_path, extra="SSH_CIDR=203.0.113.0/24\n"))
    group, _ = deploy(environment)
    addresses = {
        i["InstanceId"]: i["PublicIpAddress"]
        for r in client("ec2").describe_instances(
            Filters=[{"Name": "tag:aws:autoscaling:groupName", "Values": [group]}]
        )["Reservations"]
        for i in r["Instances"]
    }
    first = min(addresses)

    command = build_command(environment)

    assert command == ["ssh", "-i", "deploy/keys/staging", "-o", "IdentitiesOnly=yes", f"admin@{addresses[first]}"]
    assert (work_dir / "deploy" / "keys" / "staging").is_file()
    assert f"{first} of {group} (InService, running)" in output(environment)
    assert "warning" not in output(environment)  # key present, port 22 open
    other = max(addresses)
    assert build_command(environment, other)[-1] == f"admin@{addresses[other]}"
    assert no_host_reason(environment) is None  # real AWS settings: there is a host


def test_run_ssh_runs_the_command_or_only_prints_it(cloud, tmp_path, monkeypatch):
    create_zone()
    environment = set_up(make_environment(tmp_path))
    deploy(environment)
    ran: list[list[str]] = []
    monkeypatch.setattr(
        ssh.subprocess, "run", lambda command, check: ran.append(command) or subprocess.CompletedProcess(command, 0)
    )
    printed = io.StringIO()

    command = run_ssh(environment, None, print_only=True, out=printed)
    assert printed.getvalue() == " ".join(command) + "\n" and ran == []
    assert "warning: SSH_CIDR is empty, so port 22 is closed" in output(environment)

    assert run_ssh(environment, None, print_only=False, out=printed) == command
    assert ran == [command]

    monkeypatch.setattr(ssh.subprocess, "run", lambda command, check: subprocess.CompletedProcess(command, 255))
    with pytest.raises(Exit) as caught:
        run_ssh(environment, None, print_only=False, out=printed)
    assert caught.value.code == 255


def test_without_a_serving_group_it_says_to_deploy(cloud, tmp_path):
    create_zone()
    environment = set_up(make_environment(tmp_path))
    with pytest.raises(DeployError, match=r"no serving group: run `inv deploy --env staging`"):
        build_command(environment)


def test_on_the_embedded_cloud_there_is_no_host_to_reach(env_dir, fresh_cloud, work_dir):
    _, group, _ = deployed_on_server(TEST_ENV)

    printed = run_inv("ssh", "--env", TEST_ENV, "--print")
    assert printed.returncode == 0, printed.stdout + printed.stderr
    command = printed.stdout.strip().split(" ")
    assert command[:5] == ["ssh", "-i", str(work_dir / "deploy" / "keys" / TEST_ENV), "-o", "IdentitiesOnly=yes"]
    assert command[5].startswith("admin@") and len(command) == 6  # stdout holds the command alone
    assert "has no host to reach" in printed.stderr and f"of {group}" in printed.stderr

    refused = run_inv("ssh", "--env", TEST_ENV)
    assert refused.returncode == 1
    assert "Cannot ssh: the embedded cloud" in refused.stderr and "has no host to reach" in refused.stderr
    assert f"The command would be: {printed.stdout.strip()}" in refused.stderr
