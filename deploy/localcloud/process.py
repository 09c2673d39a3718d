"""The embedded local cloud: a moto server on 127.0.0.1 that the tool starts itself.

Its state lives as long as the server process, so `inv setup --env local` and a later
`inv deploy --env local` see the same cloud. It is seeded with what an AWS account would already
have: the public hosted zone of DOMAIN and a base image usable as SOURCE_AMI.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import boto3
from botocore.config import Config as BotoConfig

from deploy.config import work_dir
from deploy.errors import DeployError
from deploy.settings import ROOT

# Raised whenever deploy/localcloud/fixes.py changes what the server does: a server this tool started before
# (it outlives tasks) runs the fixes it was started with, and is restarted rather than trusted.
SERVER_VERSION = 3  # 3: scheduled actions run; a scale-in drains before it terminates
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parsed = urlparse(url)
        if parsed.hostname not in ("127.0.0.1", "localhost") or parsed.port is None:
            raise DeployError(f"The embedded cloud needs an endpoint like http://127.0.0.1:5055, not {url}.")
        return cls("127.0.0.1", parsed.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _pid_file(endpoint: Endpoint, state_dir: Path) -> Path:
    return state_dir / f"moto-{endpoint.port}.pid"


def is_listening(endpoint: Endpoint) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((endpoint.host, endpoint.port)) == 0


def _answers_like_aws(endpoint: Endpoint) -> bool:
    client = boto3.client(
        "sts",
        region_name="us-east-1",
        endpoint_url=endpoint.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=BotoConfig(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    try:
        client.get_caller_identity()
        return True
    except Exception:
        return False


def start(
    url: str, state_dir: Path | None = None, say: Callable[[str], None] = print, time_scale: float | None = None
) -> Endpoint:
    """Make sure a moto server answers at URL, starting one in the background when nothing listens there.

    TIME_SCALE (LOCAL_TIME_SCALE) is given to a server this starts; one already running keeps its own.
    """
    endpoint = Endpoint.parse(url)
    state_dir = state_dir or work_dir() / "deploy" / "local-cloud"
    if is_listening(endpoint) and not _outdated(endpoint, state_dir) and _answers_like_aws(endpoint):
        return endpoint  # running already: nothing to start, nothing written
    # Two starts at once: the second waits for the first's server to answer, then finds it (one server, one pid file).
    with starting(endpoint.url, state_dir):
        return _start(endpoint, state_dir, say, time_scale)


@contextlib.contextmanager
def starting(url: str, state_dir: Path | None = None) -> Iterator[None]:
    """Hold the lock of the embedded cloud at URL that its starts (and `inv local-cloud`'s seeding) take in turn."""
    state_dir = state_dir or work_dir() / "deploy" / "local-cloud"
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / f"moto-{Endpoint.parse(url).port}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S + STOP_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise DeployError(f"Another run kept starting the embedded cloud for too long ({path}).") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _start(endpoint: Endpoint, state_dir: Path, say: Callable[[str], None], time_scale: float | None) -> Endpoint:
    if is_listening(endpoint) and _outdated(endpoint, state_dir):
        say(f"embedded cloud: {stop(endpoint.url, state_dir)} (an older version of the tool had started it)")
    if is_listening(endpoint):
        if not _answers_like_aws(endpoint):
            raise DeployError(
                f"Something that is not a moto server listens on {endpoint.url}. Stop it, or point"
                " AWS_ENDPOINT_URL in env/local.env at a free port."
            )
        return endpoint  # this tool's, or one started by hand with `python -m deploy.motoserver`
    log_path = state_dir / f"moto-{endpoint.port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.motoserver", "-H", endpoint.host, "-p", str(endpoint.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            start_new_session=True,  # outlives this task: later tasks see the same cloud
            # Where it keeps the apps its images carry and their logs, and how fast its modelled time runs.
            env={
                **os.environ,
                "LOCAL_CLOUD_DIR": str(state_dir),
                **({"LOCAL_TIME_SCALE": str(time_scale)} if time_scale else {}),
            },
        )
    _pid_file(endpoint, state_dir).write_text(f"{process.pid} {SERVER_VERSION}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeployError(f"The embedded cloud exited at start (code {process.returncode}); see {log_path}.")
        if is_listening(endpoint) and _answers_like_aws(endpoint):
            say(f"embedded cloud started at {endpoint.url} (pid {process.pid}, log {log_path})")
            return endpoint
        time.sleep(0.2)
    process.kill()
    raise DeployError(f"The embedded cloud did not answer within {START_TIMEOUT_S:.0f}s; see {log_path}.")


def stop(url: str, state_dir: Path | None = None) -> str:
    """Stop the server this tool started at URL, by the pid it recorded."""
    endpoint = Endpoint.parse(url)
    pid_file = _pid_file(endpoint, state_dir or work_dir() / "deploy" / "local-cloud")
    if not pid_file.is_file():
        return f"no embedded cloud started by this tool at {endpoint.url}"
    pid, _ = _recorded(pid_file)
    if not _is_our_server(pid):
        pid_file.unlink()
        return f"the embedded cloud at {endpoint.url} (pid {pid}) was not running; removed its stale pid file"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_file.unlink()
        return f"the embedded cloud at {endpoint.url} (pid {pid}) was not running"
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return f"stopped the embedded cloud at {endpoint.url} (pid {pid}); its state is gone"


def _recorded(pid_file: Path) -> tuple[int, int]:
    """(pid, server version) of a pid file; version 1 for files written before versions were recorded."""
    parts = pid_file.read_text().split()
    return int(parts[0]) if parts else 0, int(parts[1]) if len(parts) > 1 else 1


def _outdated(endpoint: Endpoint, state_dir: Path) -> bool:
    """Whether the server at ENDPOINT is one this tool started with other fixes than today's."""
    pid_file = _pid_file(endpoint, state_dir)
    if not pid_file.is_file():
        return False
    pid, version = _recorded(pid_file)
    return _is_our_server(pid) and version != SERVER_VERSION


def _is_our_server(pid: int) -> bool:
    """Whether PID is a moto server this tool started: a stale pid file must never kill another process."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"deploy.motoserver" in command


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # An exited server that nobody has reaped yet (a container's init may be slow to) is a zombie:
    # signal 0 still reaches it, but it is gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
