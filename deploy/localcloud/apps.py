"""What an instance of the embedded cloud runs: the apps images carry, their processes, and their end.

- An image baked by the tool's `local` Packer builder is tagged with the staged folder (LocalAppDir), the
  START_COMMAND (LocalAppStart) and the APP_PORT (LocalAppPort) it was baked with. When those tags are put on the
  image (Packer tags it right after CreateImage), the folder is copied into the cloud's own store (`AppStore`),
  keyed by image id: a later copy-over cannot change what an image runs.
- `AppProcess`: the app of one running instance, a process running START_COMMAND in its copy of the folder, with
  its own loopback PORT (and HOST=127.0.0.1, HEALTH_CHECK_PATH, app.env's settings, `read_app_env`).
- No app process outlives the cloud: each dies with the server's thread that started it (`die_with_parent`), and a
  `Watchdog` process (which learns every app's process group through a pipe) kills them when the server dies any
  other way (its end of the pipe closes).
- `Timing`: every AWS duration is multiplied by LOCAL_TIME_SCALE (the server's environment variable; the tool
  passes the environment's setting when it starts the cloud).

The supervisor that starts, restarts and stops these processes is runtime.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Modelled AWS durations, in seconds of the real cloud (multiplied by the time scale).
BOOT_S = 20.0  # from "running" until the app's service has started (EC2 boot + systemd)
STOP_GRACE_S = 90.0  # systemd's TimeoutStopSec: SIGTERM, then SIGKILL
RESTART_S = 2.0  # the unit's RestartSec
DEFAULT_SCALE = 1.0
STORE_CHECK_S = 1.0
TICK_S = 0.05  # how often the supervisor looks at the cloud (real seconds, not scaled)
MIN_GRACE_S = 0.5  # a scaled grace never below this: a loaded machine needs a moment to exit cleanly
SHUTDOWN_WAIT_S = 5.0

APP_DIR_TAG, APP_START_TAG, APP_PORT_TAG = "LocalAppDir", "LocalAppStart", "LocalAppPort"
INSTANCE_TAG = "LocalCloudApp"
NO_APP = "none: its image carries no app (a record only)"
RUNNING_STATES = ("running",)

WATCHDOG = r"""
import os, signal, sys, time
groups = set()
for line in sys.stdin:
    command, _, pgid = line.strip().partition(" ")
    if command == "add":
        groups.add(int(pgid))
    elif command == "del":
        groups.discard(int(pgid))
for number, sig in enumerate((signal.SIGTERM, signal.SIGKILL)):
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
    if groups and number == 0:
        time.sleep(float(sys.argv[1]))
"""


@dataclass(frozen=True)
class Timing:
    """AWS durations scaled by LOCAL_TIME_SCALE, and the clock everything reads (injected in tests)."""

    scale: float = DEFAULT_SCALE
    clock: Callable[[], float] = time.monotonic

    def seconds(self, aws_seconds: float, floor: float = 0.0) -> float:
        return max(float(aws_seconds) * self.scale, floor)

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Timing:
        value = (environ if environ is not None else os.environ).get("LOCAL_TIME_SCALE", "")
        try:
            scale = float(value) if value else DEFAULT_SCALE
        except ValueError:
            scale = DEFAULT_SCALE
        return cls(scale=scale if scale > 0 else DEFAULT_SCALE)


@dataclass(frozen=True)
class AppImage:
    """What an image carries: the stored copy of its staged folder, its START_COMMAND and APP_PORT."""

    folder: Path
    start_command: str
    app_port: int


def read_app_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them (comments and blank lines skipped, quotes removed)."""
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return values
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


class AppStore:
    """Copies of the staged folders images carry, keyed by image id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images: dict[str, AppImage] = {}
        self.lock = threading.Lock()

    def capture(self, image_id: str, tags: dict[str, str]) -> AppImage | None:
        source = tags.get(APP_DIR_TAG)
        if not source:
            return None
        folder = self.root / image_id / "app"
        try:
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(source, folder, symlinks=True)
            port = int(tags.get(APP_PORT_TAG) or 80)
        except (OSError, ValueError) as error:
            print(f"embedded cloud: image {image_id} carries no app: cannot copy {source}: {error}", flush=True)
            return None
        app = AppImage(folder=folder, start_command=tags.get(APP_START_TAG) or "python3 server.py", app_port=port)
        with self.lock:
            self.images[image_id] = app
        print(f"embedded cloud: image {image_id} carries the app of {source} (stored in {folder})", flush=True)
        return app

    def get(self, image_id: str | None) -> AppImage | None:
        with self.lock:
            return self.images.get(image_id or "")

    def forget_except(self, existing: set[str]) -> None:
        with self.lock:
            gone = [image_id for image_id in self.images if image_id not in existing]
            for image_id in gone:
                del self.images[image_id]
        for image_id in gone:
            shutil.rmtree(self.root / image_id, ignore_errors=True)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AppProcess:
    """The app of one instance: its process (None while booting or between restarts) and its stop."""

    instance_id: str
    app: AppImage
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    started: int = 0
    restart_at: float | None = None
    stop_requested: float | None = None
    terminated_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Watchdog:
    """A process of its own that kills every app process group once the server's end of its pipe closes."""

    def __init__(self, grace_s: float) -> None:
        self.lock = threading.Lock()
        self.process = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(grace_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a signal to the server's group must not take the watchdog with it
        )

    def tell(self, command: str, pgid: int) -> None:
        with self.lock:
            if self.process.stdin is None:
                return
            with contextlib.suppress(OSError, ValueError):
                self.process.stdin.write(f"{command} {pgid}\n".encode())
                self.process.stdin.flush()

    def close(self) -> None:
        with self.lock:
            if self.process.stdin is not None:
                with contextlib.suppress(OSError):
                    self.process.stdin.close()
                self.process.stdin = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=SHUTDOWN_WAIT_S)


def die_with_parent() -> None:
    """In the app's shell, before exec: SIGTERM when the server's thread that started it goes away."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
