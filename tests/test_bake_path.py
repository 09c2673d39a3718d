"""The bake path on a real account's terms (issue 18): what Packer is handed stays data, Packer's credentials
outlast the bake, and a throttled bake is run again.

In-process: the credentials' expiry. End to end (the real CLI, Debian's Packer 1.6.6, the session's moto
server): START_COMMAND holding Packer template syntax is baked byte for byte; a deploy whose Packer requests are
throttled through a proxy (EC2's RequestLimitExceeded answer) bakes both images and succeeds.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.credentials import RefreshableCredentials
from conftest import AwsProxy, ServerSite, succeeded, tags_of
from operator_env import make_environment

from deploy.errors import DeployError
from deploy.steps.baking import credentials_refusal, packer_credentials

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
EVALUATED = "python3 server.py --tag '{{env `AWS_SECRET_ACCESS_KEY`}}' '{{ 7*7 }}'"
needs_packer = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")


# --- Packer's credentials -------------------------------------------------------------------------------------


def test_credentials_expiring_before_a_bake_could_end_are_refused_naming_the_expiry() -> None:
    needed = 3600 + 180
    assert credentials_refusal(None, NOW, needed, "env/x.env") is None  # long-lived keys: no expiry
    assert credentials_refusal(NOW + timedelta(hours=2), NOW, needed, "env/x.env") is None
    refusal = credentials_refusal(NOW + timedelta(minutes=30), NOW, needed, "env/x.env, line 3")
    assert refusal is not None
    assert "expire at 2026-12-05 08:30 UTC (in 30 min)" in refusal
    assert "PACKER_TIMEOUT" in refusal and "env/x.env, line 3" in refusal


def _temporary(expiry: datetime) -> RefreshableCredentials:
    def refresh() -> dict[str, str]:
        return {"access_key": "ASIA1", "secret_key": "s", "token": "t", "expiry_time": expiry.isoformat()}

    return RefreshableCredentials.create_from_metadata(refresh(), refresh, "sso")


def test_a_bake_hands_packer_temporary_credentials_only_when_they_outlast_it(
    cloud: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = make_environment(tmp_path)
    now = datetime.now(UTC)
    session = environment.aws.session
    monkeypatch.setattr(session, "get_credentials", lambda: _temporary(now + timedelta(minutes=40)))
    with pytest.raises(DeployError, match=r"expire at .* UTC \(in 40 min\), before a bake may end"):
        packer_credentials(environment, now=now)
    monkeypatch.setattr(session, "get_credentials", lambda: _temporary(now + timedelta(hours=3)))
    assert packer_credentials(environment, now=now) == {
        "AWS_ACCESS_KEY_ID": "ASIA1",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_SESSION_TOKEN": "t",
    }


# --- end to end ----------------------------------------------------------------------------------------------


@pytest.fixture
def site(moto_server: str, tmp_path: Path) -> Iterator[ServerSite]:
    site = ServerSite.create(moto_server, "bakes", tmp_path, HEALTH_TIMEOUT="20")
    yield site


def _carnivore(site: ServerSite) -> dict[str, Any]:
    role = [{"Name": "tag:Role", "Values": ["carnivore"]}]
    images = site.client("ec2").describe_images(Owners=["self"], Filters=role)
    [image] = images["Images"]
    return image


@needs_packer
@pytest.mark.timeout(180)
def test_template_syntax_in_start_command_is_baked_byte_for_byte(site: ServerSite) -> None:
    succeeded(site.inv("setup"))
    succeeded(site.inv("deploy", env={"START_COMMAND": EVALUATED}))
    tags = tags_of(_carnivore(site))
    assert tags["LocalAppStart"] == EVALUATED  # not the secret key, not 49, not a Packer error
    assert tags["LocalAppDir"].startswith(str(site.work_dir)) and tags["LocalAppPort"] == "80"
    # What Packer was handed holds no `{{` at all: the start command went base64-encoded.
    var_files = list(site.latest_run().glob("*packer-carnivore-vars*.json"))
    assert var_files and all("{{" not in path.read_text() for path in var_files)


@needs_packer
@pytest.mark.timeout(300)
def test_a_deploy_whose_packer_requests_are_throttled_bakes_both_images(site: ServerSite) -> None:
    """A fifth of Packer's EC2 requests, and every other DescribeImages it sends (the first included), are answered
    RequestLimitExceeded: Packer's max_retries and the tool's retry of a throttled build carry both bakes."""
    counts = {"DescribeImages": 0, "other": 0}

    def throttle(action: str, agent: str) -> str:
        if "aws-sdk-go" not in agent:  # the tool's own requests (boto3 retries them itself) pass
            return "pass"
        kind = "DescribeImages" if action == "DescribeImages" else "other"
        counts[kind] += 1
        every = 2 if kind == "DescribeImages" else 5
        return "throttle" if counts[kind] % every == 1 % every else "pass"

    with AwsProxy(site.url, throttle) as proxy:
        through = {"AWS_ENDPOINT_URL": proxy.url}
        succeeded(site.inv("setup", env=through))
        output = succeeded(site.inv("deploy", env=through))
    throttled = [action for action, agent, what in proxy.seen if what == "throttle"]
    assert throttled.count("DescribeImages") >= 2 and len(throttled) > throttled.count("DescribeImages"), throttled
    assert "RequestLimitExceeded (AWS: try later); attempt 2 of 4" in output
    assert "baked primal image" in output and "baked carnivore image" in output
    assert _carnivore(site)["State"] == "available"
