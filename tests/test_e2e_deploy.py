"""End to end: `inv setup` and `inv deploy` as subprocesses, real Packer, the session's moto server.

One environment (`e2e`) is set up and deployed once for the whole module; each test then deploys
on top of whatever serves at its start, so the tests read the serving group from the cloud instead
of assuming what an earlier test left. The app is built from a copy of example-app in a temporary
folder, so concurrent runs never share example-app/dist.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import (
    ServerSite,
    image_of,
    instance_ids,
    instance_stopper,
    make_image,
    succeeded,
    watching,
)
from headless import open_page

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

ENV = "e2e"
DESIRED = 2
HEALTH_TIMEOUT = 6
NEVER_HEALTHY_TIMEOUT = 2  # a group that never gets healthy is waited for in full: keep that wait short


class Site(ServerSite):
    """The module's environment: where its files are, how to run the CLI on it, and its cloud."""

    def snapshot_exists(self, snapshot_id: str) -> bool:
        try:
            return bool(self.client("ec2").describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"])
        except ClientError as error:
            assert error.response["Error"]["Code"] == "InvalidSnapshot.NotFound"
            return False

    def deployment_image(self, name: str) -> str:
        """An image tagged as bake-carnivore tags its images, made directly in the cloud."""
        tags = {"ManagedBy": "immutable-deploy", "App": "webapp", "Env": ENV, "Role": "carnivore", "Name": name}
        return make_image(self.client("ec2"), name, tags)


def snapshots(image: dict[str, Any]) -> list[str]:
    found = [m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if m.get("Ebs", {}).get("SnapshotId")]
    assert found, f"{image['ImageId']} has no snapshot"
    return found


def report_shown(site: Site) -> tuple[str, dict[str, str]]:
    """`inv report` of the latest run: the page's text as headless Chromium shows it, and each stage's outcome."""
    path = Path(succeeded(site.inv("report")).strip())
    assert path == site.latest_run() / "report.html", path
    with open_page(path.as_uri()) as page:
        text = str(page.evaluate("document.body.innerText"))
        rows = page.evaluate("[...document.querySelectorAll('table.stages tr[data-stage]')].map(r => r.innerText)")
    outcomes = {cells[0]: cells[3] for cells in (str(row).split("\t") for row in rows)}
    return text, outcomes


def assert_serves_alone(site: Site, group: dict[str, Any]) -> None:
    """GROUP's instances are all InService at the load balancer, and no other instance is registered."""
    ids = instance_ids(group)
    assert len(ids) == DESIRED
    assert site.lb_states() == dict.fromkeys(ids, "InService")


@pytest.fixture(scope="module")
def site(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = Site.create(
        moto_server,
        ENV,
        tmp_path_factory.mktemp("e2e-deploy"),
        LOAD_BALANCER="classic",  # the original scripts' elb-NAME
        DESIRED_CAPACITY=str(DESIRED),
        HEALTH_TIMEOUT=str(HEALTH_TIMEOUT),
        POLL_SECONDS="1",
        RETAIN_IMAGES="0",  # no earlier image is kept for a rollback: outdated images go at once
    )
    succeeded(site.inv("setup"))
    first = succeeded(site.inv("deploy"))
    assert "baked primal image" in first and "baked carnivore image" in first
    assert_serves_alone(site, site.serving())
    yield site


def test_a_second_deploy_replaces_the_group_with_no_moment_out_of_service(site):
    before = site.serving()
    old_template = before["LaunchTemplate"]["LaunchTemplateName"]
    old_image = site.image(image_of(before))
    assert old_image is not None
    old_snapshots = snapshots(old_image)
    primal = site.primal_image()
    with watching(lambda: list(site.lb_states().values()).count("InService")) as watch:
        output = succeeded(site.inv("deploy", "--wait-retirement"))  # then the old group, template, image are gone
    in_service_counts, errors = watch.counts, watch.errors

    after = site.serving()
    assert after["AutoScalingGroupName"] > before["AutoScalingGroupName"]
    assert_serves_alone(site, after)
    assert site.templates() == [after["LaunchTemplate"]["LaunchTemplateName"]]
    assert old_template not in site.templates()
    new_image = image_of(after)
    assert new_image != old_image["ImageId"]
    assert site.image(new_image) is not None  # the live image stays
    assert site.image(primal) is not None  # the primal image is not a deployment image
    assert site.image(old_image["ImageId"]) is None
    assert not any(site.snapshot_exists(s) for s in old_snapshots)
    assert f"outdated: {before['AutoScalingGroupName']}" in output
    assert f"deleted group {before['AutoScalingGroupName']}" in output
    text, outcomes = report_shown(site)
    assert "promoted" in text and f"deployed {new_image} as {after['AutoScalingGroupName']}" in text
    stages = [
        "build-app",
        "copy-over",
        "bake-primal",
        "bake-carnivore",
        "launch-asg",
        "wait-health",
        "shift-traffic",
        "finish",
    ]
    assert outcomes == dict.fromkeys(stages, "ok")

    assert len(in_service_counts) >= 20, f"the watcher saw too little ({len(in_service_counts)} polls; {errors[:3]})"
    assert min(in_service_counts) > 0, f"InService dropped to 0 during the deploy: {in_service_counts}"
    assert max(in_service_counts) == 2 * DESIRED  # both groups served side by side before the old one went


def test_a_new_group_that_never_gets_healthy_is_removed_and_the_old_one_keeps_serving(site):
    before = site.serving()
    old_name = before["AutoScalingGroupName"]
    with instance_stopper(site, old_name, DESIRED) as found:
        result = site.inv("deploy", env={"HEALTH_TIMEOUT": str(NEVER_HEALTHY_TIMEOUT)})
    ended = time.monotonic()

    stdout, stderr = result.stdout, result.stderr
    output = stdout + stderr
    assert found, f"the new group never appeared:\n{output}"
    assert result.returncode != 0, output
    assert ended - found["at"] < NEVER_HEALTHY_TIMEOUT + 10, "the failed wait was not bounded by the timeout"
    assert "Traceback" not in output
    assert f"The new group {found['name']} was not healthy within {NEVER_HEALTHY_TIMEOUT}s" in stderr
    assert "It was removed" in stderr
    assert "the previous group keeps serving" in stderr
    assert "Logs: " in stderr
    text, outcomes = report_shown(site)
    assert outcomes["launch-asg"] == "ok" and outcomes["wait-health"] == "failed" and "finish" not in outcomes
    assert f"wait-health: The new group {found['name']} was not healthy within {NEVER_HEALTHY_TIMEOUT}s" in text

    assert found["name"] not in site.groups()
    assert found["template"] not in site.templates()
    still = site.serving()
    assert still["AutoScalingGroupName"] == old_name
    assert instance_ids(still) == instance_ids(before)
    assert_serves_alone(site, still)


def test_primal_id_skips_the_primal_bake_and_no_cleanup_keeps_every_image(site):
    before = site.serving()
    primal = site.primal_image()
    outdated = site.deployment_image("webapp-e2e-carnivore-outdated")  # would go without --no-cleanup
    previous = image_of(before)

    output = succeeded(site.inv("deploy", "--primal-id", primal, "--no-cleanup"))

    assert f"skipped: primal image {primal} given" in output
    logs = [p.name for p in site.latest_run().iterdir()]
    assert not any("packer-primal" in name for name in logs)
    assert any("packer-carnivore" in name and name.endswith(".log") for name in logs)
    assert "kept every image" in output
    after = site.serving()
    assert after["AutoScalingGroupName"] != before["AutoScalingGroupName"]  # groups still retire
    assert_serves_alone(site, after)
    for image_id in (outdated, previous, image_of(after), primal):
        assert site.image(image_id) is not None, image_id


def test_image_id_skips_every_build_and_a_group_of_the_original_scripts_is_retired(site):
    before = site.serving()
    image_id = image_of(before)
    legacy_image = site.primal_image()
    autoscaling = site.client("autoscaling")
    legacy, _ = site.add_legacy_group(legacy_image)
    outdated = site.deployment_image("webapp-e2e-carnivore-stale")
    outdated_snapshots = snapshots(site.image(outdated) or {})

    output = succeeded(site.inv("deploy", "--image-id", image_id, "--wait-retirement"))

    assert f"skipped: image {image_id} given" in output
    for step in ("build-app", "copy-over", "bake-primal"):
        assert f"==> {step}" not in output
    assert not any("packer" in p.name for p in site.latest_run().iterdir())
    after = site.serving()
    assert legacy not in site.groups()
    assert before["AutoScalingGroupName"] not in site.groups()
    assert image_of(after) == image_id
    assert_serves_alone(site, after)
    configurations = autoscaling.describe_launch_configurations()["LaunchConfigurations"]
    assert [
        c["LaunchConfigurationName"] for c in configurations if c["LaunchConfigurationName"].startswith("lc-")
    ] == []
    assert f"deleted group {legacy}" in output
    assert site.image(image_id) is not None  # live, and given: never deleted
    assert "GivenByHand" in {t["Key"] for t in (site.image(image_id) or {}).get("Tags", [])}  # in the account
    assert site.image(outdated) is None
    assert not any(site.snapshot_exists(s) for s in outdated_snapshots)
