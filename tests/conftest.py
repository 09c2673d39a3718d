"""Shared fixtures: a moto server on a free loopback port, isolated env/work folders, and the real CLI.

Tests never write into the repository's own env/ or deploy/ folders: `env_dir` points DEPLOY_ENV_DIR and
DEPLOY_WORK_DIR at temporary folders, for in-process code and (through os.environ) for `run_inv`.

Helpers are plain functions, imported by the test modules: `from conftest import free_port, run_inv`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
TEST_ENV = "test"
SERVER_START_TIMEOUT_S = 30.0
INV_TIMEOUT_S = 90.0

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
# Variables of the outer shell that would change what a test sees: a profile, an env chosen by
# DEPLOY_ENV/NODE_ENV, or a setting that overrides the env files (AWS_REGION, APP_NAME, ...).
STRAY_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "DEPLOY_ENV", "NODE_ENV")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll PREDICATE until it holds or TIMEOUT seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def subprocess_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """os.environ (as the fixtures patched it) without AWS_PROFILE; OVERRIDES set keys, or unset them with None."""
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_DEFAULT_PROFILE", None)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_inv(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    timeout: float = INV_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`python -m invoke ARGS`) in the repository root; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _settings_keys() -> tuple[str, ...]:
    from deploy.config import SETTINGS_BY_KEY

    return tuple(SETTINGS_BY_KEY)


@pytest.fixture
def aws_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region; nothing from the outer shell that would pick an env or override a setting."""
    for key in (*STRAY_VARIABLES, *_settings_keys()):
        monkeypatch.delenv(key, raising=False)
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def shared_service_models() -> Iterator[None]:
    """One botocore loader for every boto3 session of the test process.

    deploy.aws.Aws makes a new boto3 session per environment, and each session parses the service
    models (megabytes of JSON) again: ~0.5 s per in-process environment. Sharing the loader changes
    nothing else.
    """
    import functools

    import botocore.loaders
    import botocore.session

    shared = functools.lru_cache(maxsize=None)(botocore.loaders.create_loader)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture(autouse=True)
def forget_open_environments() -> Iterator[None]:
    """Each in-process test opens its environments afresh (deploy.environment caches them per process)."""

    def forget() -> None:
        module = sys.modules.get("deploy.environment")
        if module is not None:
            module.forget_open_environments()

    forget()
    yield
    forget()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server of this test session on a free loopback port; yields its URL (http://127.0.0.1:PORT)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    env = {key: value for key, value in os.environ.items() if key not in STRAY_VARIABLES}
    env.update(FAKE_CREDENTIALS)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.motoserver", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )
    try:
        started = wait_until(lambda: process.poll() is not None or _answers(url), SERVER_START_TIMEOUT_S)
        if not started or process.poll() is not None:
            pytest.fail(f"moto server did not answer at {url}: {log_path.read_text(errors='replace')[-2000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def fresh_cloud(moto_server: str) -> str:
    """The session's moto server, emptied (POST /moto-api/reset) so that each test starts from a new account."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    return moto_server


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """What DEPLOY_WORK_DIR points at: runs leave deploy/log, keys, state and local-cloud here."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def write_env_folder(folder: Path, files: Mapping[str, str]) -> Path:
    """FOLDER with a copy of the repository's env/defaults.env and FILES ({"NAME.env": text})."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "env" / "defaults.env", folder / "defaults.env")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def local_env_text(endpoint: str, **extra: str) -> str:
    """An env file for the embedded cloud at ENDPOINT, like env/local.env; EXTRA adds or overrides keys."""
    values = {
        "LOCAL_CLOUD": "true",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "DOMAIN": "example.test",
        "SOURCE_AMI": "local-base-debian-12",
        "SOURCE_AMI_OWNER": "self",
        "POLL_SECONDS": "1",
        "HEALTH_TIMEOUT": "30",
        **extra,
    }
    return "".join(f"{key}={value}\n" for key, value in values.items())


@pytest.fixture
def env_dir(
    tmp_path: Path, work_dir: Path, fresh_cloud: str, aws_environ: None, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A temporary env folder: defaults.env plus test.env on the (fresh) moto server with LOCAL_CLOUD=true.

    DEPLOY_ENV_DIR and DEPLOY_WORK_DIR point at the temporary folders, for this process and for `run_inv`.
    Add keys by appending lines to env_dir / "test.env" (the last value of a key wins).
    """
    folder = write_env_folder(tmp_path / "env", {f"{TEST_ENV}.env": local_env_text(fresh_cloud)})
    monkeypatch.setenv("DEPLOY_ENV_DIR", str(folder))
    monkeypatch.setenv("DEPLOY_WORK_DIR", str(work_dir))
    return folder


@pytest.fixture
def cloud_client(fresh_cloud: str) -> Callable[[str], object]:
    """boto3 clients of the moto server: cloud_client("elb").describe_load_balancers()."""
    import boto3

    def make(service: str):
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=fresh_cloud,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return make
