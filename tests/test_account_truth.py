"""What the tool decides is read from the AWS account, never only from local files: a fresh clone, a CI runner
and a second machine decide the same (issue 10).

In-process on mock_aws with the tool's own step functions; the bakes use test_deploy_steps' FakePacker, which
makes real images in moto. Waits run on a fake clock.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from operator_env import FakeClock
from test_deploy_steps import FakePacker, client, deployment_image, make_environment, make_image, output

import deploy.steps.baking
from deploy.aws.groups import environment_groups
from deploy.aws.history import read_history
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.pipeline import rollback, run
from deploy.plans.groups import serving_group
from deploy.plans.stages import Request
from deploy.steps.cleanup import cleanup
from deploy.steps.destroy import run_destroy
from deploy.steps.launch_asg import launch_group
from deploy.steps.setup import run_setup
from deploy.steps.wait_health import wait_then_shift_traffic
from deploy.views.history import show_history


@pytest.fixture
def cloud(cloud: None) -> None:
    client("route53").create_hosted_zone(Name="example.com", CallerReference="zone")


@pytest.fixture
def packer(monkeypatch: pytest.MonkeyPatch) -> FakePacker:
    fake = FakePacker()
    monkeypatch.setattr(deploy.steps.baking, "run_packer", fake)
    return fake


def full_deploy(environment: Environment, image_id: str | None = None) -> None:
    """`inv deploy` as its chain runs it (one invocation: one Environment): the pipeline's stages in order."""
    run(environment, Request(image_id=image_id))


class Cycle:
    """One environment's whole life, a fresh Environment (a new invocation) per step; WIPE: the work folder is
    removed before every step (a fresh clone each time)."""

    def __init__(self, tmp_path: Path, env: str, wipe: bool, packer: FakePacker) -> None:
        self.tmp_path, self.env, self.wipe, self.packer = tmp_path, env, wipe, packer
        self.work = Path(os.environ["DEPLOY_WORK_DIR"])
        self.app = tmp_path / f"app-{env}"
        self.app.mkdir()
        shutil.copy2(REPO / "example-app" / "server.py", self.app / "server.py")
        self.labels: dict[str, str] = {}
        self.runs = 0
        self.builds_before = len(packer.builds)
        self.given = ""

    def give(self) -> str:
        """A deployment image of this environment baked elsewhere (another machine), to be given by hand."""
        self.given = self.given or deployment_image(f"webapp-{self.env}-carnivore-given", env=self.env)
        return self.given

    def environment(self, **settings: str) -> Environment:
        self.runs += 1
        clock = FakeClock()
        values = {
            "APP_DIR": str(self.app),
            "BUILD_COMMAND": "mkdir -p dist && cp server.py dist/",  # the same app each time
            "SOURCE_AMI": "local-base-*",
            "SOURCE_AMI_OWNER": "self",
            "RETAIN_IMAGES": "1",
            "PRIMAL_RETAIN": "1",
            **settings,
        }
        environment = make_environment(self.tmp_path / f"{self.env}-{self.runs}", self.env, **values)
        environment.clock, environment.sleep = clock, clock.sleep
        return environment

    def label(self, image_id: str | None, kind: str = "image") -> str | None:
        if image_id is None:
            return None
        if image_id == self.given:
            return "given"
        if image_id not in self.labels:
            self.labels[image_id] = f"{kind}{sum(label.startswith(kind) for label in self.labels.values()) + 1}"
        return self.labels[image_id]

    def step(self, name: str, action: Callable[[Environment], Any], **settings: str) -> dict[str, Any]:
        if self.wipe:
            shutil.rmtree(self.work, ignore_errors=True)
            self.work.mkdir()
        environment = self.environment(**settings)
        action(environment)
        serving = serving_group(environment_groups(environment))
        images = client("ec2").describe_images(Owners=["self"])["Images"]
        mine = [i for i in images if {t["Key"]: t["Value"] for t in i.get("Tags", [])}.get("Env") == self.env]
        for image in sorted(mine, key=lambda i: i["Name"]):  # named ...-ROLE-STAMP: labelled in order of baking
            role = {t["Key"]: t["Value"] for t in image.get("Tags", [])}.get("Role", "")
            self.label(image["ImageId"], "primal" if role == "primal" else "image")
        return {
            "step": name,
            "serving": self.label(serving.image_id) if serving else None,
            "images": sorted(str(self.label(i["ImageId"])) for i in sorted(mine, key=lambda i: i["CreationDate"])),
            "bakes": len(self.packer.builds) - self.builds_before,
            "history": [(e["action"], e["outcome"], self.label(e["image"])) for e in read_history(environment)],
        }

    def run(self) -> list[dict[str, Any]]:
        return [
            self.step("setup", run_setup),
            self.step("deploy", full_deploy),
            self.step("deploy --image-id", lambda e: full_deploy(e, self.give())),
            self.step("rollback", rollback),
            self.step("deploy again", full_deploy),
            self.step("cleanup", cleanup, RETAIN_IMAGES="0"),
            self.step("destroy", lambda e: run_destroy(e, yes=True)),
        ]


def test_the_whole_cycle_decides_the_same_with_the_work_folder_wiped_before_every_step(cloud, tmp_path, packer):
    base = deployment_image("local-base-debian-12", env="none")  # SOURCE_AMI of both environments
    assert base

    kept = Cycle(tmp_path, "kept", wipe=False, packer=packer).run()
    wiped = Cycle(tmp_path, "wiped", wipe=True, packer=packer).run()

    assert wiped == kept
    by_step = {entry["step"]: entry for entry in wiped}
    # What those decisions are, so that "the same" cannot be the same mistake:
    assert by_step["deploy"]["bakes"] == 2  # primal + deployment image
    assert by_step["deploy"]["serving"] == "image1"
    assert by_step["deploy --image-id"]["serving"] == "given"
    assert by_step["rollback"]["serving"] == "image1"  # picked from the account's history
    assert by_step["deploy again"]["bakes"] == 2  # both images found in the account by their inputs
    assert by_step["deploy again"]["serving"] == "image1"
    # RETAIN_IMAGES=0: nothing earlier is kept for a rollback, but the image given by hand is never deleted.
    assert by_step["cleanup"]["images"] == ["given", "image1", "primal1"]
    assert by_step["destroy"]["images"] == ["given"]  # destroy too never deletes it
    assert by_step["destroy"]["serving"] is None
    assert [outcome for _, outcome, _ in by_step["destroy"]["history"]] == ["promoted"] * 4
    assert [action for action, _, _ in by_step["destroy"]["history"]] == ["deploy", "rollback", "deploy", "deploy"]


def test_an_image_given_by_hand_survives_a_cleanup_after_the_state_file_is_gone(cloud, tmp_path, packer):
    """The issue's data loss: deploy --image-id A, deploy, remove the state, RETAIN_IMAGES=0 cleanup."""
    cycle = Cycle(tmp_path, "dev", wipe=True, packer=packer)
    deployment_image("local-base-debian-12", env="none")
    cycle.step("setup", run_setup)
    cycle.step("deploy --image-id", lambda e: full_deploy(e, cycle.give()))
    cycle.step("deploy", full_deploy)
    after = cycle.step("cleanup", cleanup, RETAIN_IMAGES="0")
    assert "given" in after["images"]
    [image] = client("ec2").describe_images(ImageIds=[cycle.given])["Images"]
    snapshots = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m]
    assert client("ec2").describe_snapshots(SnapshotIds=snapshots)["Snapshots"]


def test_rollback_after_two_hand_given_images_from_a_fresh_clone(cloud, tmp_path, packer):
    """The issue's failed rollback: deploy --image-id A, deploy --image-id B, rollback → A."""
    cycle = Cycle(tmp_path, "dev", wipe=True, packer=packer)
    first, second = deployment_image("image-a", env="elsewhere"), deployment_image("image-b", env="elsewhere")
    cycle.step("setup", run_setup)
    cycle.step("A", lambda e: full_deploy(e, first))
    cycle.step("B", lambda e: full_deploy(e, second))
    environment = cycle.environment()
    shutil.rmtree(cycle.work)
    rollback(environment)
    serving = serving_group(environment_groups(environment))
    assert serving is not None and serving.image_id == first
    assert [e["by_hand"] for e in read_history(environment)] == [True, True, True]


def test_rollback_with_no_earlier_image_says_so(cloud, tmp_path, packer):
    cycle = Cycle(tmp_path, "dev", wipe=True, packer=packer)
    cycle.step("setup", run_setup)
    cycle.step("A", lambda e: full_deploy(e, cycle.give()))
    with pytest.raises(DeployError, match="Nothing to roll back to"):
        rollback(cycle.environment())


def test_wait_health_finds_the_new_group_from_a_fresh_clone(cloud, tmp_path, packer):
    cycle = Cycle(tmp_path, "dev", wipe=True, packer=packer)
    cycle.step("setup", run_setup)
    cycle.step("launch", lambda e: launch_group(e, image_id=cycle.give()))
    after = cycle.step("wait", wait_then_shift_traffic)  # another invocation, no local file: found by its tags
    assert after["serving"] == "given"


def test_history_is_shown_newest_first_as_a_table_and_as_json(cloud, tmp_path, packer):
    import io

    cycle = Cycle(tmp_path, "dev", wipe=True, packer=packer)
    cycle.step("setup", run_setup)
    cycle.step("A", lambda e: full_deploy(e, cycle.give()))
    other = deployment_image("webapp-dev-carnivore-2", env="dev")
    cycle.step("B", lambda e: full_deploy(e, other))
    table, raw = io.StringIO(), io.StringIO()
    environment = cycle.environment()
    show_history(environment, as_json=False, out=table)
    show_history(environment, as_json=True, out=raw)

    lines = table.getvalue().splitlines()
    assert lines[0].split()[:4] == ["time", "action", "outcome", "image"]
    assert other in lines[1] and cycle.given in lines[2] and "(by hand)" in lines[2]
    entries = json.loads(raw.getvalue())["entries"]
    assert [e["image"] for e in entries] == [other, cycle.given]
    assert [e["name"] for e in entries] == [2, 1]  # each entry's version of the history parameter
    for item in entries:
        assert item["time"].endswith("Z") and "@" in item["by"] and item["version"].startswith("1.")
        assert item["group"].startswith("asg-webapp-dev-") and item["seconds"] >= 0


def test_cleanup_keeps_the_newest_primal_images_and_those_in_use_and_deletes_the_rest(cloud, tmp_path, packer):
    cycle = Cycle(tmp_path, "dev", wipe=True, packer=packer)
    cycle.step("setup", run_setup)
    primal = {"ManagedBy": "immutable-deploy", "App": "webapp", "Env": "dev", "Role": "primal"}
    oldest, baking, old, newest = (make_image(f"webapp-dev-primal-{n}", **primal) for n in range(1, 5))
    # A deployment image baked from the oldest one, and a bake running from the second:
    carnivore = {**primal, "Role": "carnivore", "SourceImage": oldest, "Deployed": "2026-01-01T00:00:00Z"}
    make_image("webapp-dev-carnivore-1", **carnivore)  # deployed once: retained for a rollback (RETAIN_IMAGES)
    client("ec2").run_instances(ImageId=baking, MinCount=1, MaxCount=1)
    doomed = [
        m["Ebs"]["SnapshotId"]
        for m in client("ec2").describe_images(ImageIds=[old])["Images"][0]["BlockDeviceMappings"]
        if "Ebs" in m
    ]
    environment = cycle.environment(PRIMAL_RETAIN="1", RETAIN_IMAGES="5")

    cleanup(environment, dry_run=True)  # the plan announces it, through the same decision
    assert f"would deregister image {old} and delete its snapshots (primal image beyond the newest 1)" in output(
        environment
    )
    cleanup(environment)

    left = {i["ImageId"] for i in client("ec2").describe_images(Owners=["self"])["Images"]}
    assert {oldest, baking, newest} <= left
    assert old not in left
    assert client("ec2").describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": doomed}])["Snapshots"] == []
