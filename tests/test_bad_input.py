"""Bad input, one test per case: a clear one-paragraph error, a non-zero exit, no traceback, and nothing
created or deleted in the cloud (a snapshot of the whole account is compared before and after).

Through the real CLI against the session's moto server, on an environment (`bad`) that is set up and
deployed once for the module, so that there is something a careless run could delete. Two cases are
in-process, where a subprocess cannot produce them: an expired token, and an image that exists but is
not available yet. At the end, an account with 300 unrelated groups costs a deploy no extra request.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import (
    NO_CREDENTIALS,
    REGION,
    ServerSite,
    local_base_image,
    local_env_text,
    make_image,
    new_run,
    other_app_groups,
    reset_cloud,
    succeeded,
    use_env_folder,
    write_env_folder,
)
from invoke.exceptions import Exit

import deploy.aws.images
from deploy import environment as environments
from deploy.cli import run_step
from deploy.steps.cleanup import cleanup as retire_outdated
from deploy.steps.launch_asg import launch_group
from deploy.steps.setup import run_setup
from deploy.steps.shift_traffic import promote
from deploy.steps.wait_health import wait_then_shift_traffic

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

ENV = "bad"
STACK = f"webapp-{ENV}"
MISSING_IMAGE = "ami-0123456789abcdef0"


class Site(ServerSite):
    """The module's environment; `site.run` runs the CLI with exactly the given arguments."""

    def add_env(self, name: str, text: str) -> None:
        (self.env_dir / f"{name}.env").write_text(text, encoding="utf-8")

    def snapshot(self) -> dict[str, list[Any]]:
        """What a run could create or delete anywhere in the account."""
        ec2, autoscaling, elb, elbv2 = (self.client(s) for s in ("ec2", "autoscaling", "elb", "elbv2"))
        route53, ssm = self.client("route53"), self.client("ssm")

        def pages(client: Any, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
            return [item for page in client.get_paginator(operation).paginate(**params) for item in page[key]]

        zones = pages(route53, "list_hosted_zones", "HostedZones")
        return {
            "groups": sorted(
                (
                    g["AutoScalingGroupName"],
                    g["DesiredCapacity"],
                    tuple(sorted(i["InstanceId"] for i in g["Instances"])),
                    tuple(g.get("LoadBalancerNames", [])),
                    tuple(g.get("TargetGroupARNs", [])),
                )
                for g in pages(autoscaling, "describe_auto_scaling_groups", "AutoScalingGroups")
            ),
            "launch_templates": sorted(
                t["LaunchTemplateName"] for t in pages(ec2, "describe_launch_templates", "LaunchTemplates")
            ),
            "launch_configurations": sorted(
                c["LaunchConfigurationName"]
                for c in pages(autoscaling, "describe_launch_configurations", "LaunchConfigurations")
            ),
            "load_balancers": sorted(
                [lb["LoadBalancerName"] for lb in elb.describe_load_balancers()["LoadBalancerDescriptions"]]
                + [lb["LoadBalancerName"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]]
            ),
            "target_groups": sorted(t["TargetGroupName"] for t in elbv2.describe_target_groups()["TargetGroups"]),
            "images": sorted((i["ImageId"], i["State"]) for i in ec2.describe_images(Owners=["self"])["Images"]),
            "security_groups": sorted(
                (g["GroupName"], g["GroupId"]) for g in pages(ec2, "describe_security_groups", "SecurityGroups")
            ),
            "key_pairs": sorted(k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]),
            "instances": sorted(
                (i["InstanceId"], i["State"]["Name"])
                for r in pages(ec2, "describe_instances", "Reservations")
                for i in r["Instances"]
                if i["State"]["Name"] != "terminated"
            ),
            "parameters": sorted(p["Name"] for p in ssm.describe_parameters()["Parameters"]),
            "records": sorted(
                (zone["Id"], r["Name"], r["Type"])
                for zone in zones
                for r in route53.list_resource_record_sets(HostedZoneId=zone["Id"])["ResourceRecordSets"]
            ),
        }


def refused(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    """The run failed with one short paragraph on stderr that holds every phrase; no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    message = result.stderr.strip()
    assert message, output
    assert "\n\n" not in message, message
    assert len(message) < 2000, message
    for phrase in phrases:
        assert phrase in message, message
    return message


@pytest.fixture(scope="module")
def site(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = Site.create(moto_server, ENV, tmp_path_factory.mktemp("bad-input"), HEALTH_TIMEOUT="10")
    for task in ("setup", "deploy"):
        succeeded(site.inv(task))
    yield site


@pytest.fixture
def unchanged(site: Site) -> Iterator[None]:
    """The test's run must leave the whole account as it found it."""
    before = site.snapshot()
    yield
    assert site.snapshot() == before


@pytest.fixture
def fresh_work(site: Site, tmp_path: Path) -> dict[str, str]:
    """A fresh work folder and a new source image: the deploy would bake from scratch. (A fresh folder alone
    would not: the account knows the primal image baked from the same inputs, and any clone reuses it.)"""
    folder = tmp_path / "work"
    folder.mkdir()
    [primal] = site.client("ec2").describe_images(
        Owners=["self"], Filters=[{"Name": "tag:Role", "Values": ["primal"]}]
    )["Images"]
    return {"DEPLOY_WORK_DIR": str(folder), "SOURCE_AMI": primal["ImageId"]}


@pytest.fixture
def in_process(site: Site, aws_environ: None, monkeypatch: pytest.MonkeyPatch) -> None:
    use_env_folder(monkeypatch, site.env_dir, site.work_dir)


# --- the command line ----------------------------------------------------------------------------


def test_an_unknown_task_flag(site, unchanged):
    refused(site.run("deploy", "--env", ENV, "--imageid", MISSING_IMAGE), "No idea what '--imageid' is!")


def test_an_unknown_task(site, unchanged):
    refused(site.run("deplyo", "--env", ENV), "No idea what 'deplyo' is!")


def test_a_timeout_that_is_not_a_number(site, unchanged):
    message = refused(site.run("deploy", "--env", ENV, "--timeout", "soon"), "--timeout", "'soon'")
    assert message.startswith("error: ")


def test_an_unknown_environment(site, unchanged):
    message = refused(site.run("deploy", "--env", "nosuch"), "Unknown environment 'nosuch'", f"{ENV}")
    assert message.startswith("error: ")


# --- env files -----------------------------------------------------------------------------------


def test_a_malformed_env_file(site, unchanged):
    site.add_env("broken", local_env_text(site.url) + "this line is not a setting\n")
    message = refused(site.run("deploy", "--env", "broken"), "broken.env, line ", "expected KEY=value")
    assert "'this line is not a setting'" in message


def test_a_bad_value_in_an_env_file(site, unchanged):
    site.add_env("capacity", local_env_text(site.url, DESIRED_CAPACITY="9", MAX_CAPACITY="4"))
    refused(
        site.run("deploy", "--env", "capacity"),
        "capacity.env",
        "MIN_CAPACITY <= DESIRED_CAPACITY <= MAX_CAPACITY",
        "1 <= 9 <= 4",
    )


# --- images, instance types, DNS, load balancer --------------------------------------------------


def test_an_image_id_that_does_not_exist(site, unchanged):
    refused(
        site.run("deploy", "--env", ENV, "--image-id", MISSING_IMAGE),
        f"Image {MISSING_IMAGE} does not exist in {REGION}",
    )


def test_an_image_id_that_was_deregistered(site):
    ec2 = site.client("ec2")
    image_id = make_image(ec2, "gone-before-deploy")
    ec2.deregister_image(ImageId=image_id)
    before = site.snapshot()

    refused(site.run("deploy", "--env", ENV, "--image-id", image_id), f"Image {image_id} does not exist")

    assert site.snapshot() == before


def test_an_image_that_is_not_available(site, in_process, unchanged, monkeypatch):
    """In-process: moto makes every image available at once; here one reads as still pending."""
    pending = "ami-0fedcba9876543210"
    real = deploy.aws.images.describe_image
    monkeypatch.setattr(
        deploy.aws.images,
        "describe_image",
        lambda environment, image_id: (
            {"ImageId": pending, "State": "pending"} if image_id == pending else real(environment, image_id)
        ),
    )
    with pytest.raises(Exit) as exited:
        run_step("launch-asg", ENV, lambda e: launch_group(e, image_id=pending), locking=True)
    assert exited.value.code == 1
    assert str(exited.value.message).startswith(f"error: launch-asg: Image {pending} is pending, not available.")


def test_an_unknown_instance_type(site, unchanged):
    result = site.run("deploy", "--env", ENV, env={"INSTANCE_TYPE": "t3.gigantic"})
    refused(result, "INSTANCE_TYPE t3.gigantic is not offered in us-east-1")
    assert "packer build" not in result.stdout  # refused before the bake


def test_a_hosted_zone_that_does_not_exist(site, unchanged):
    site.add_env("nozone", local_env_text(site.url, HOSTED_ZONE_ID="Z0NOSUCHZONE0000"))
    refused(site.run("setup", "--env", "nozone"), "HOSTED_ZONE_ID Z0NOSUCHZONE0000 does not exist")
    assert not (site.work_dir / "deploy" / "keys" / "nozone").exists()


def test_a_load_balancer_missing_because_setup_never_ran(site, unchanged, fresh_work):
    site.add_env("nosetup", local_env_text(site.url))
    result = site.run("deploy", "--env", "nosetup", env=fresh_work)
    refused(result, "Load balancer alb-webapp-nosetup does not exist", "run `inv setup --env nosetup` first")
    assert "packer build" not in result.stdout  # refused before anything was baked


# --- credentials ---------------------------------------------------------------------------------


def test_no_credentials(site, unchanged):
    site.add_env("real", "DOMAIN=example.com\nLOCAL_CLOUD=false\n")
    message = refused(site.run("deploy", "--env", "real", env=NO_CREDENTIALS), "credentials")
    assert message.startswith("error: ")
    assert "--env local" in message


@pytest.mark.parametrize("code", ["ExpiredToken", "ExpiredTokenException", "RequestExpired"])
def test_an_expired_token(site, in_process, unchanged, code):
    def expired(environment: Any) -> None:
        raise ClientError({"Error": {"Code": code, "Message": "The security token is expired"}}, "DescribeImages")

    with pytest.raises(Exit) as exited:
        run_step("deploy", ENV, expired)

    assert exited.value.code == 1
    assert exited.value.message == f"error: AWS refused the credentials ({code}): refresh them and retry."


# --- tools and the build -------------------------------------------------------------------------


def test_packer_missing(site, unchanged, fresh_work, tmp_path):
    # A PATH with python3 (the app build runs first) but no packer.
    empty = tmp_path / "bin"
    empty.mkdir()
    (empty / "python3").symlink_to(sys.executable)
    result = site.run("deploy", "--env", ENV, env={**fresh_work, "PATH": str(empty)})
    refused(result, "error: bake-primal: Packer (packer) was not found on PATH", "apt-get install packer")


def test_packer_failing(site, unchanged, fresh_work, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    packer = folder / "packer"
    packer.write_text(
        "#!/bin/sh\n"
        '[ "$1" = version ] && echo "Packer v1.6.6" && exit 0\n'
        "echo \"$(date +%s),,ui,error,Build 'local' errored after 1 second: UnauthorizedOperation: not allowed\"\n"
        "exit 1\n",
        encoding="utf-8",
    )
    packer.chmod(0o755)
    result = site.run("deploy", "--env", ENV, env={**fresh_work, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"})
    refused(
        result,
        "error: bake-primal: The packer build of primal.json (builder local) failed (exit code 1)",
        "UnauthorizedOperation: not allowed",
    )


def test_current_packer_without_the_amazon_plugin(site, unchanged, fresh_work, tmp_path):
    # A stand-in answering as Packer 1.11.2 does with no plugin installed (its build would fail to initialize).
    folder = tmp_path / "bin"
    folder.mkdir()
    packer = folder / "packer"
    packer.write_text(
        '#!/bin/sh\ncase "$1" in\n  version) echo "Packer v1.11.2";;\n  plugins) ;;\n'
        "  *) echo 'Error: Failed to initialize build \"local\"' >&2; exit 1;;\nesac\n",
        encoding="utf-8",
    )
    packer.chmod(0o755)
    result = site.run("deploy", "--env", ENV, env={**fresh_work, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"})
    refused(
        result,
        f"error: bake-primal: {packer} is Packer 1.11.2, which has no amazon plugin",
        "install it with `packer plugins install github.com/hashicorp/amazon`",
    )


def test_a_line_break_in_a_value(site, unchanged, fresh_work):
    injected = 'HEALTH_CHECK_PATH="/api/status/health\\nINJECTED=pwned"\n'
    site.add_env("inject", (site.env_dir / f"{ENV}.env").read_text() + injected)
    result = site.run("deploy", "--env", "inject", env=fresh_work)
    lines = len((site.env_dir / f"{ENV}.env").read_text().splitlines()) + 1
    refused(result, f"inject.env, line {lines}: HEALTH_CHECK_PATH holds a line break (LF)")
    assert not (Path(fresh_work["DEPLOY_WORK_DIR"]) / "tmp").exists()  # nothing staged, no app.env


def test_a_work_folder_packer_would_evaluate(site, unchanged, fresh_work, tmp_path):
    folder = tmp_path / "{{ 7*7 }}" / "work"
    folder.mkdir(parents=True)
    result = site.run("deploy", "--env", ENV, env={**fresh_work, "DEPLOY_WORK_DIR": str(folder)})
    refused(result, "error: copy-over: The staging folder", "holds '{{', which Packer would evaluate")


def test_an_unterminated_quote(site, unchanged):
    site.add_env("quote", (site.env_dir / f"{ENV}.env").read_text() + 'DOMAIN="evil.test\n')
    line = len((site.env_dir / f"{ENV}.env").read_text().splitlines()) + 1
    refused(site.run("deploy", "--env", "quote"), f"quote.env, line {line}: the value of DOMAIN opens a quote")


@pytest.mark.parametrize("length", [22, 300])
def test_an_environment_name_too_long(site, unchanged, length):
    name = "e" * length
    if length < 100:
        site.add_env(name, (site.env_dir / f"{ENV}.env").read_text())
    message = refused(site.run("deploy", "--env", name), f"has {length} characters")
    assert ("at most 21 fit" if length < 100 else "at most 26 fit") in message
    assert "File name too long" not in message and "Shorten APP_NAME." not in message


def test_an_app_build_that_fails(site, unchanged):
    command = 'echo "npm ERR! Missing script: build-bad" >&2; exit 3'
    result = site.run("deploy", "--env", ENV, env={"BUILD_COMMAND": command})
    refused(result, "error: build-app: The app build failed (exit 3)", "npm ERR! Missing script: build-bad")


def test_a_failing_build_with_megabytes_of_output_quotes_only_its_tail(site, unchanged):
    command = "python3 -c \"print('x' * 20_000_000); print('the real error: build-bad'); raise SystemExit(3)\""
    result = site.run("deploy", "--env", ENV, env={"BUILD_COMMAND": command})
    message = refused(result, "error: build-app: The app build failed (exit 3)", "the real error: build-bad")
    assert "earlier output in the log" in message  # the rest is in the log, named in the message


def test_a_packer_that_is_not_a_program(site, unchanged, fresh_work, tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    packer = folder / "packer"
    packer.write_text("this is a text file, not a program\n", encoding="utf-8")
    packer.chmod(0o755)
    result = site.run("deploy", "--env", ENV, env={**fresh_work, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"})
    refused(result, f"error: bake-primal: {packer} could not be run", "is it the Packer program?")


# --- local faults --------------------------------------------------------------------------------


def test_status_works_without_a_writable_work_folder(site, unchanged, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")  # a folder below a file cannot be made, even by root
    result = site.run("status", "--env", ENV, env={"DEPLOY_WORK_DIR": str(blocker / "work")})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"webapp-{ENV}" in result.stdout


def test_a_deploy_with_an_unwritable_work_folder_is_refused_before_any_aws_call(site, unchanged, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    result = site.run("deploy", "--env", ENV, env={"DEPLOY_WORK_DIR": str(blocker / "work")})
    refused(result, "Cannot write the run log under", "make the work folder writable")


def test_a_staging_path_that_is_a_file(site, unchanged, fresh_work):
    # (No state file any more to be a folder: the local fault of a run's own staging folder instead.)
    staging = Path(fresh_work["DEPLOY_WORK_DIR"]) / "tmp" / "appserver" / ENV
    staging.parent.mkdir(parents=True)
    staging.write_text("", encoding="utf-8")
    result = site.run("deploy", "--env", ENV, env=fresh_work)
    refused(result, "error: copy-over: a local file could not be written or read")
    parameters = site.client("ssm").describe_parameters()["Parameters"]
    assert not [p["Name"] for p in parameters if p["Name"].endswith("/lock")]  # released


# --- the lock ------------------------------------------------------------------------------------


def test_a_deploy_lock_held(site):
    holder = {
        "host": "build-box-7",
        "user": "alice",
        "pid": 4242,
        "started": "2024-05-01T10:00:00+00:00",
        "step": "wait-health",
    }
    ssm = site.client("ssm")
    name = f"/immutable-deploy/{STACK}/lock"
    ssm.put_parameter(Name=name, Value=json.dumps(holder), Type="String")
    try:
        before = site.snapshot()
        refused(
            site.run("deploy", "--env", ENV),
            f"Another run of {ENV} is running: alice@build-box-7 pid 4242",
            "at step wait-health",
            f"inv unlock --env {ENV}",
        )
        assert site.snapshot() == before
        assert json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"]) == holder
    finally:
        ssm.delete_parameter(Name=name)


# --- accounts at scale ---------------------------------------------------------------------------


def test_300_unrelated_groups_cost_a_deploy_no_extra_request(
    moto_server, aws_environ, shared_service_models, tmp_path, monkeypatch
):
    """In-process on an emptied cloud: two deploys (bakes skipped) on top of a serving group, the
    second after another application put 300 groups (desired 0) into the account. Both send the same
    requests, operation by operation: every listing is filtered by AWS, every poll reads one group."""
    folder = write_env_folder(tmp_path / "env", {"scale.env": local_env_text(moto_server, HEALTH_TIMEOUT="30")})
    use_env_folder(monkeypatch, folder, tmp_path / "work")
    reset_cloud(moto_server)
    environment = environments.open_environment("scale")
    run_setup(environment)
    ec2, autoscaling = environment.aws.ec2, environment.aws.autoscaling
    base = local_base_image(ec2)

    def deployment_image(name: str) -> str:
        """An image tagged as bake-carnivore tags its images, made without Packer."""
        return make_image(ec2, name, environment.names.tags(Role="carnivore", Name=name), base=base)

    def deploy_requests(name: str) -> Counter[str]:
        retire_outdated(new_run(environment), wait=True)  # the same start: the serving group alone
        image_id = deployment_image(name)
        environment.aws.requests.clear()
        launch_group(new_run(environment), image_id=image_id)
        wait_then_shift_traffic(environment)
        assert len(retire_outdated(environment)) == 1
        return Counter(environment.aws.requests)

    first = deployment_image("scale-0")
    promote(environment, launch_group(environment, image_id=first), first)
    retire_outdated(environment)  # the serving group takes the requests; setup's shared target group goes
    alone = deploy_requests("scale-1")

    other_app_groups(ec2, autoscaling, base, 300)

    crowded = deploy_requests("scale-2")

    assert crowded == alone
    assert sum(alone.values()) > 0
