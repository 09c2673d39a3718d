"""Progressive delivery's configuration keys (deploy/settings.py): defaults, validation, the classic kind's refusal;
and the example app's faults (FAIL_RATE, DELAY_MS): from the deploying shell through app.env to the app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import REPO, free_port, wait_until, write_env_folder
from test_deploy_steps import make_environment

from deploy.config import load_config
from deploy.errors import ConfigError
from deploy.settings import TRAFFIC_SETTINGS
from deploy.steps.copy_over import copy_over

TRAFFIC_KEYS = (
    "TRAFFIC_STEPS",
    "STEP_SECONDS",
    "MAX_ERROR_RATE",
    "MAX_LATENCY_MS",
    "MIN_REQUESTS",
    "ALARM_NAMES",
    "KEEP_PREVIOUS_SECONDS",
)


def load(tmp_path: Path, text: str = "", environ: dict[str, str] | None = None):
    folder = write_env_folder(tmp_path / "env", {"dev.env": "DOMAIN=example.com\n" + text})
    return load_config("dev", folder, environ=environ or {})


def test_the_defaults_send_everything_at_once_as_before(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert (config.traffic_steps, config.step_seconds, config.max_error_rate) == ((100,), 120, 1.0)
    assert (config.max_latency_ms, config.min_requests, config.alarm_names) == (None, 50, None)
    assert (config.keep_previous_seconds, config.fail_rate, config.delay_ms) == (900, None, None)


def test_values_are_read_into_their_types(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "TRAFFIC_STEPS=10, 50,100\nSTEP_SECONDS=60\nMAX_ERROR_RATE=0.5\nMAX_LATENCY_MS=250\nMIN_REQUESTS=0\n"
        "ALARM_NAMES=webapp-5xx, webapp latency\nKEEP_PREVIOUS_SECONDS=0\n",
    )
    assert (config.traffic_steps, config.step_seconds, config.max_error_rate) == ((10, 50, 100), 60, 0.5)
    assert (config.max_latency_ms, config.min_requests) == (250, 0)
    assert (config.alarm_names, config.keep_previous_seconds) == (("webapp-5xx", "webapp latency"), 0)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("TRAFFIC_STEPS=10,50", "must end with 100"),
        ("TRAFFIC_STEPS=50,10,100", "must ascend"),
        ("TRAFFIC_STEPS=10,10,100", "must ascend"),
        ("TRAFFIC_STEPS=0,100", "from 1 to 100"),
        ("TRAFFIC_STEPS=10,150", "from 1 to 100"),
        ("TRAFFIC_STEPS=10%,100", "whole percentages"),
        ("TRAFFIC_STEPS=10,,100", "whole percentages"),
        ("STEP_SECONDS=0", "must be 1 or more"),
        ("STEP_SECONDS=100000", "at most 86400 seconds"),
        ("MAX_ERROR_RATE=-1", "from 0 to 100"),
        ("MAX_ERROR_RATE=nan", "from 0 to 100"),
        ("MAX_ERROR_RATE=1%", "must be a number"),
        ("MAX_LATENCY_MS=0", "must be 1 or more"),
        ("MAX_LATENCY_MS=0.5", "whole number"),
        ("MIN_REQUESTS=-5", "must be 0 or more"),
        ("KEEP_PREVIOUS_SECONDS=-1", "must be 0 or more"),
        ("ALARM_NAMES=a,a", "names an alarm twice"),
        ("ALARM_NAMES=" + ",".join(f"alarm-{n}" for n in range(101)), "at most 100 alarms"),
        ("ALARM_NAMES=" + "x" * 256, "1 to 255 printable characters; not name 1"),
        ("FAIL_RATE=1.5", "from 0 to 1"),
        ("DELAY_MS=-1", "must be 0 or more"),
    ],
)
def test_a_bad_value_is_refused_naming_the_file_and_key(tmp_path: Path, line: str, message: str) -> None:
    key = line.split("=", 1)[0]
    with pytest.raises(ConfigError, match=rf"dev\.env, line 2: {key}=.*{message}"):
        load(tmp_path, line + "\n")


def test_steps_are_refused_with_a_classic_load_balancer_naming_the_application_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, "LOAD_BALANCER=classic\nTRAFFIC_STEPS=10,100\n")
    assert "TRAFFIC_STEPS=10,100 needs LOAD_BALANCER=application" in str(refused.value)
    assert "dev.env, line 3" in str(refused.value)
    assert load(tmp_path / "all", "LOAD_BALANCER=classic\nTRAFFIC_STEPS=100\n").traffic_steps == (100,)


def test_the_shells_fault_settings_override_the_files(tmp_path: Path) -> None:
    config = load(tmp_path, "FAIL_RATE=0\n", environ={"FAIL_RATE": "0.5", "DELAY_MS": "200"})
    assert (config.fail_rate, config.delay_ms) == (0.5, 200)
    assert config.source_of("FAIL_RATE") == "the environment variable FAIL_RATE"


def test_every_key_is_documented_in_the_progressive_delivery_guide() -> None:
    guide = (REPO / "docs" / "progressive-delivery.md").read_text(encoding="utf-8")
    assert [s.key for s in TRAFFIC_SETTINGS if f"| `{s.key}` |" not in guide] == []
    assert {s.key for s in TRAFFIC_SETTINGS} >= set(TRAFFIC_KEYS)


# --- the example app's faults --------------------------------------------------------------------------------


def test_faults_are_staged_into_app_env_only_when_set(aws_environ, work_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("DEPLOY_WORK_DIR", str(work_dir))
    app = tmp_path / "app"
    app.mkdir()
    (app / "server.py").write_text("")
    plain = copy_over(make_environment(tmp_path / "plain", APP_DIR=str(app), APP_FILES="server.py"))
    assert not {"FAIL_RATE", "DELAY_MS"} & {
        line.split("=")[0] for line in (plain.folder / "app.env").read_text().split()
    }

    faulty = make_environment(tmp_path / "bad", APP_DIR=str(app), APP_FILES="server.py", FAIL_RATE="0.5", DELAY_MS="20")
    settings = (copy_over(faulty).folder / "app.env").read_text().splitlines()
    assert "FAIL_RATE=0.5" in settings and "DELAY_MS=20" in settings


@contextmanager
def running_app(tmp_path: Path, **faults: str) -> Iterator[tuple[str, Path]]:
    """The example app on a free port with FAULTS in its environment: (its URL, its log), stopped at the end."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "HEALTH_CHECK_PATH": "/health", **faults}
    log_path = tmp_path / f"app-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "example-app" / "server.py")], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: status(url + "/health") == 200, 10, 0.05)
        yield url, log_path
    finally:
        process.terminate()
        process.wait(timeout=10)


def status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except OSError:
        return None


@pytest.mark.parametrize(("rate", "expected"), [("1", {500}), ("0.5", {200, 500}), ("0", {200})])
def test_fail_rate_fails_that_share_of_requests_but_never_the_health_check(tmp_path: Path, rate, expected):
    with running_app(tmp_path, FAIL_RATE=rate) as (url, _):
        pages = Counter(status(url + "/") for _ in range(60))
        assert set(pages) == expected  # 0.5: both (all 60 alike has a chance of 2**-59)
        if rate == "0.5":
            assert 10 <= pages[500] <= 50
        assert {status(url + "/health") for _ in range(20)} == {200}


def test_delay_ms_delays_pages_not_the_health_check(tmp_path: Path) -> None:
    with running_app(tmp_path, DELAY_MS="300") as (url, log):
        started = time.monotonic()
        assert status(url + "/") == 200
        assert time.monotonic() - started >= 0.3  # at least the delay (a bound, not a speed figure)
        assert "DELAY_MS 300" in log.read_text()


def test_an_unreadable_fault_is_ignored_and_said(tmp_path: Path) -> None:
    with running_app(tmp_path, FAIL_RATE="lots") as (url, log):
        assert {status(url + "/") for _ in range(5)} == {200}
        assert "ignoring FAIL_RATE='lots'" in log.read_text()
