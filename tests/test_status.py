"""`inv status`: an empty, a set-up and a deployed environment (in-process, both load balancer kinds),
the pure table renderer, the documented JSON shape, and the real CLI (JSON on stdout, nothing written)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from conftest import REPO, TEST_ENV, run_inv
from operator_env import create_zone, deploy, make_environment, set_up

from deploy.views.status import (
    collect_status,
    columns,
    group_status,
    human_age,
    render_table,
)

TOP_KEYS = {
    "version",
    "env",
    "stack",
    "region",
    "endpoint",
    "time",
    "host",
    "load_balancer",
    "groups",
    "launch_templates",
    "launch_configurations",
    "images",
    "lock",
    "leftovers",
    "window",
    "next_run",
}
GROUP_KEYS = {
    "name",
    "serving",
    "image",
    "created",
    "age_seconds",
    "promoted",
    "status",
    "min",
    "desired",
    "max",
    "launch_template",
    "launch_configuration",
    "lifecycle",
    "health",
    "load_balancer",
    "instances",
    "weight",
    "window_end",
    "scheduled",
    "draining",
    "rolled_back",
}
WEIGHTS_BEFORE_THE_END = (0, 0)
IMAGE_KEYS = {"id", "name", "role", "state", "created", "age_seconds", "deployed", "in_use"}


def test_status_of_an_empty_environment(cloud, tmp_path):
    status = collect_status(make_environment(tmp_path))
    assert set(status) == TOP_KEYS
    assert status["version"] == 1
    assert (status["env"], status["stack"], status["endpoint"]) == ("staging", "webapp-staging", None)
    assert status["host"]["name"] == "staging.example.com"
    assert status["host"]["record"] is None
    assert "No public Route 53 hosted zone" in status["host"]["problem"]
    assert status["load_balancer"] == {"kind": "classic", "name": "elb-webapp-staging", "exists": False}
    assert status["groups"] == status["launch_templates"] == status["images"] == []
    assert status["lock"] is None
    assert status["leftovers"] == {"packer": [], "orphan_snapshots": []}
    table = render_table(status)
    assert "elb-webapp-staging (classic): does not exist" in table
    assert "groups         none" in table
    assert "deploy lock    free" in table


@pytest.mark.parametrize(
    ("kind", "name", "listener"),
    [("classic", "elb-webapp-staging", "HTTP 80"), ("application", "alb-webapp-staging", "HTTP 80")],
)
def test_status_of_a_set_up_environment(cloud, tmp_path, kind, name, listener):
    create_zone()
    environment = set_up(make_environment(tmp_path, kind=kind))
    status = collect_status(environment)
    balancer = status["load_balancer"]
    assert balancer["exists"] is True
    assert (balancer["kind"], balancer["name"]) == (kind, name)
    assert balancer["health_check"]["target"] == "HTTP:80/api/status/health"
    assert balancer["health_check"]["interval"] == 30
    assert balancer["url"] == "http://staging.example.com/"  # on AWS: the host's URL
    assert status["host"]["record"]["alias"].lower() == balancer["dns_name"].lower()
    assert status["groups"] == []
    table = render_table(status)
    assert f"staging.example.com → ALIAS {status['host']['record']['alias']}" in table
    assert f"load balancer  {name} ({kind})" in table
    assert "health check   HTTP:80/api/status/health every 30s, timeout 4s" in table
    assert f"listener       {listener}" in table


@pytest.mark.parametrize("kind", ["classic", "application"])
def test_status_of_a_deployed_environment(cloud, tmp_path, kind):
    create_zone()
    environment = set_up(make_environment(tmp_path, kind=kind))
    old_group, old_image = deploy(environment)
    new_group, new_image = deploy(environment)
    environment.lock.acquire("deploy")

    status = collect_status(environment)

    groups = {group["name"]: group for group in status["groups"]}
    assert set(groups) == {old_group, new_group}
    assert all(set(group) == GROUP_KEYS for group in groups.values())
    new = groups[new_group]
    assert new["serving"] is True and groups[old_group]["serving"] is False
    assert new["image"] == new_image
    assert (new["min"], new["desired"], new["max"]) == (1, 2, 4)
    assert new["lifecycle"] == {"InService": 2}
    assert new["health"] == {"Healthy": 2}
    assert new["load_balancer"] == {"InService": 2}
    # Application: each group's own target group in the listener; the serving one gets the requests once a deploy's
    # end (or cleanup) moved them; the classic kind has no weights.
    weights = (new["weight"], groups[old_group]["weight"])
    assert weights == ((None, None) if kind == "classic" else WEIGHTS_BEFORE_THE_END), weights
    # The promotion opened the old group's window (its RetireAt tag): `inv rollback` is a weight change until then.
    old = groups[old_group]
    assert new["window_end"] is None and old["window_end"] and old["window_end"] > status["time"]
    assert status["window"] == {"group": old_group, "ends": old["window_end"]}
    assert (old["scheduled"], old["draining"], old["rolled_back"]) == (None, 0, False)  # the deploy's end schedules it
    assert new["launch_template"] == new_group.replace("asg-", "lt-", 1)
    assert 0 <= new["age_seconds"] < 600
    assert {t["name"]: t["image"] for t in status["launch_templates"]} == {
        old_group.replace("asg-", "lt-", 1): old_image,
        new_group.replace("asg-", "lt-", 1): new_image,
    }
    images = {image["id"]: image for image in status["images"]}
    assert set(images) == {old_image, new_image}
    assert all(set(image) == IMAGE_KEYS for image in images.values())
    assert images[new_image]["in_use"] and images[new_image]["role"] == "carnivore"
    assert images[new_image]["deployed"]  # tagged when its group was promoted
    assert status["lock"]["step"] == "deploy" and status["lock"]["pid"] > 0

    table = render_table(status)
    [row] = [line for line in table.splitlines() if line.strip().startswith(new_group)]
    weight = "-" if kind == "classic" else f"{WEIGHTS_BEFORE_THE_END[0]} %"
    pattern = rf"{new_group}\s+{new_image}\s+\S+\s+2 \(1-4\)\s+InService 2\s+InService 2\s+{weight}\s+serving$"
    assert re.search(pattern, row), row
    assert f"deploy lock    held by {status['lock']['user']}@" in table
    assert "at step deploy" in table
    json.dumps(status)  # JSON-serialisable as it is


def test_status_reads_only(cloud, tmp_path):
    create_zone()
    set_up(make_environment(tmp_path / "setup"))
    reader = make_environment(tmp_path / "status", dry_run=True)  # refuses any write
    status = collect_status(reader)
    assert status["load_balancer"]["exists"]
    assert reader.aws.refused == []


def test_group_status_counts_instances_by_state() -> None:
    raw = {
        "AutoScalingGroupName": "asg-webapp-dev01-20260101000000",
        "CreatedTime": datetime(2026, 1, 1, tzinfo=UTC),
        "MinSize": 1,
        "DesiredCapacity": 3,
        "MaxSize": 4,
        "Tags": [{"Key": "Image", "Value": "ami-1"}],
        "Instances": [
            {"InstanceId": "i-3", "LifecycleState": "Pending", "HealthStatus": "Healthy"},
            {"InstanceId": "i-1", "LifecycleState": "InService", "HealthStatus": "Healthy"},
            {"InstanceId": "i-2", "LifecycleState": "InService", "HealthStatus": "Unhealthy"},
        ],
    }
    entry = group_status(raw, {"i-1": "InService", "i-2": "OutOfService"}, None, datetime(2026, 1, 1, 2, tzinfo=UTC))
    assert entry["lifecycle"] == {"InService": 2, "Pending": 1}
    assert entry["health"] == {"Healthy": 2, "Unhealthy": 1}
    assert entry["load_balancer"] == {"InService": 1, "OutOfService": 1, "not registered": 1}
    assert [i["id"] for i in entry["instances"]] == ["i-1", "i-2", "i-3"]
    assert (entry["age_seconds"], entry["created"], entry["serving"]) == (7200, "2026-01-01T00:00:00Z", False)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (45, "45s"), (600, "10m"), (3 * 3600 + 5 * 60, "3h05m"), (2 * 86400 + 4 * 3600, "2d04h")],
)
def test_human_age(seconds, text) -> None:
    assert human_age(seconds) == text


def test_columns_align_cells() -> None:
    assert columns([["A", "BB"], ["ccc", "d"]], indent="") == ["A    BB", "ccc  d"]


def test_the_operations_reference_documents_every_key_of_the_json() -> None:
    readme = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = readme.split("### `inv status --json`", 1)[1].split("\n## ", 1)[0]
    for key in TOP_KEYS | GROUP_KEYS | IMAGE_KEYS:
        assert f'"{key}"' in section, key


def test_status_cli_prints_json_on_stdout_and_writes_nothing(env_dir, cloud_client):
    result = run_inv("status", "--env", TEST_ENV, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    status = json.loads(result.stdout)  # progress lines went to stderr
    assert status["env"] == TEST_ENV and status["groups"] == []
    assert status["load_balancer"]["exists"] is False
    assert "==> status" in result.stderr and "<== status done in" in result.stderr
    # Status only reads: the embedded cloud was not even seeded (a first real run seeds it).
    assert cloud_client("route53").list_hosted_zones()["HostedZones"] == []

    table = run_inv("status", "--env", TEST_ENV)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith(f"webapp-{TEST_ENV}  (env {TEST_ENV}, us-east-1, endpoint http://127.0.0.1:")
    assert "does not exist" in table.stdout
