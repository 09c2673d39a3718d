"""End to end: the real CLI against a real moto server, checked with boto3."""

from __future__ import annotations

import contextlib
import os
import signal
import stat

import pytest
from conftest import REPO, TEST_ENV, free_port, is_listening, local_env_text, run_inv

from deploy.localcloud.process import SERVER_VERSION


def test_setup_twice_against_the_local_cloud(env_dir, work_dir, cloud_client):
    with (env_dir / f"{TEST_ENV}.env").open("a", encoding="utf-8") as env_file:
        env_file.write("LOAD_BALANCER=classic\n")  # the original scripts' kind; tests/test_e2e_cycle.py runs both
    first = run_inv("setup", "--env", TEST_ENV)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Traceback" not in first.stderr
    # The server was already listening: the tool used it (no second server) and seeded it.
    assert "embedded cloud started" not in first.stdout
    assert not (work_dir / "deploy" / "local-cloud").exists()
    assert "embedded cloud: created the public hosted zone example.test" in first.stdout
    assert "created load balancer elb-webapp-test" in first.stdout

    second = run_inv("setup", "--env", TEST_ENV)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "nothing to change: webapp-test is already set up" in second.stdout
    assert "created" not in second.stdout
    assert "<== setup done" in second.stdout

    elb, ec2, route53 = cloud_client("elb"), cloud_client("ec2"), cloud_client("route53")
    [lb] = elb.describe_load_balancers()["LoadBalancerDescriptions"]
    assert lb["LoadBalancerName"] == "elb-webapp-test"
    assert lb["HealthCheck"]["Target"] == "HTTP:80/api/status/health"

    groups = {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": ["webapp-test-lb", "webapp-test-web"]}]
        )["SecurityGroups"]
    }
    assert set(groups) == {"webapp-test-lb", "webapp-test-web"}
    assert lb["SecurityGroups"] == [groups["webapp-test-lb"]["GroupId"]]
    web_sources = {
        pair["GroupId"]
        for permission in groups["webapp-test-web"]["IpPermissions"]
        for pair in permission["UserIdGroupPairs"]
    }
    assert web_sources == {groups["webapp-test-lb"]["GroupId"]}

    [zone] = route53.list_hosted_zones_by_name(DNSName="example.test")["HostedZones"]
    records = route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
    [alias] = [r for r in records if r["Name"].rstrip(".") == "test.example.test" and r["Type"] == "A"]
    assert alias["AliasTarget"]["DNSName"].rstrip(".").lower() == lb["DNSName"].lower()
    assert alias["AliasTarget"]["EvaluateTargetHealth"] is True

    [pair] = ec2.describe_key_pairs(KeyNames=["webapp-test"])["KeyPairs"]
    assert pair["KeyName"] == "webapp-test"
    key_file = work_dir / "deploy" / "keys" / TEST_ENV
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["local-base-debian-12"]}])
    assert images["Images"] == []  # setup bakes nothing: only bake-primal seeds the base image
    assert "embedded cloud: created the public hosted zone" not in second.stdout  # seeded once, by the first run

    runs = [p for p in (work_dir / "deploy" / "log" / TEST_ENV).iterdir() if p.name != "latest"]
    assert len(runs) == 2
    assert not (REPO / "deploy" / "log" / TEST_ENV).exists()
    assert not (REPO / "deploy" / "keys" / TEST_ENV).exists()


@pytest.fixture
def own_cloud_env(env_dir, work_dir):
    """An env whose embedded cloud the tool starts itself on a free port; the server is killed if a test leaves it."""
    port = free_port()
    # An image id as SOURCE_AMI: nothing to seed but the zone, so the server need not load its images (faster).
    text = local_env_text(f"http://127.0.0.1:{port}", SOURCE_AMI="ami-0123456789abcdef0")
    (env_dir / "own.env").write_text(text, encoding="utf-8")
    pid_file = work_dir / "deploy" / "local-cloud" / f"moto-{port}.pid"
    yield port, pid_file
    if pid_file.is_file():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)


def test_local_cloud_starts_a_server_and_stops_it(own_cloud_env):
    port, pid_file = own_cloud_env
    assert not is_listening(port)

    started = run_inv("local-cloud", "--env", "own", env={"MOTO_EC2_LOAD_DEFAULT_AMIS": "false"})
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"embedded cloud listening at http://127.0.0.1:{port}" in started.stdout
    assert "embedded cloud started" in started.stdout
    # It seeds what any command may need (SOURCE_AMI being an image id here, only the zone).
    assert "embedded cloud: created the public hosted zone example.test" in started.stdout
    assert pid_file.is_file()
    pid, version = (int(part) for part in pid_file.read_text().split())
    assert version == SERVER_VERSION
    os.kill(pid, 0)  # raises if the recorded process does not exist
    assert is_listening(port)

    stopped = run_inv("local-cloud", "--env", "own", "--stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"stopped the embedded cloud at http://127.0.0.1:{port} (pid {pid})" in stopped.stdout
    assert not pid_file.exists()
    assert not is_listening(port)

    again = run_inv("local-cloud", "--env", "own", "--stop")
    assert again.returncode == 0
    assert "no embedded cloud started by this tool" in again.stdout


def test_a_server_an_older_version_of_the_tool_started_is_restarted(own_cloud_env):
    """Such a server outlives tasks and runs the fixes of its day: it is replaced, never trusted."""
    port, pid_file = own_cloud_env
    started = run_inv("local-cloud", "--env", "own", env={"MOTO_EC2_LOAD_DEFAULT_AMIS": "false"})
    assert started.returncode == 0, started.stdout + started.stderr
    old_pid, _ = (int(part) for part in pid_file.read_text().split())
    pid_file.write_text(f"{old_pid}\n")  # as the tool wrote it before server versions were recorded

    again = run_inv("local-cloud", "--env", "own", env={"MOTO_EC2_LOAD_DEFAULT_AMIS": "false"})

    assert again.returncode == 0, again.stdout + again.stderr
    assert f"stopped the embedded cloud at http://127.0.0.1:{port} (pid {old_pid})" in again.stdout
    assert "an older version of the tool had started it" in again.stdout
    new_pid, version = (int(part) for part in pid_file.read_text().split())
    assert new_pid != old_pid and version == SERVER_VERSION
    assert run_inv("local-cloud", "--env", "own", "--stop").returncode == 0


def test_local_cloud_refuses_an_env_on_real_aws(env_dir):
    (env_dir / "real.env").write_text("DOMAIN=example.com\nLOCAL_CLOUD=false\n", encoding="utf-8")
    result = run_inv("local-cloud", "--env", "real")
    assert result.returncode == 1
    assert "LOCAL_CLOUD is false" in result.stderr
    assert "Traceback" not in result.stderr
