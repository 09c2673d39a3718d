"""The embedded cloud runs what was baked: every running instance of an image that carries an app is a process.

- Each running instance of an image that carries an app (apps.py: what an image carries, how its app runs) gets,
  after a modelled boot delay, a process running START_COMMAND in its copy of the folder, with its own loopback
  PORT. The instance "listens" on APP_PORT: the load balancer's health checks and traffic for that port reach PORT.
- A stopped or terminated instance's process finishes the requests a load balancer still has in flight to it
  (bounded by the draining time), then gets SIGTERM, then SIGKILL after a grace period. A process that exits on
  its own is restarted, like systemd's Restart=always.
- No app process outlives the cloud: a graceful stop stops them all; the watchdog (apps.py) kills them when the
  server dies any other way.
- Instances of images that carry no app are records, as moto has them; each instance is tagged LocalCloudApp with
  what runs on it (`inv status` shows it).

The supervisor (`Runtime`) also drives the load balancers (balancers.py) and Auto Scaling's own work: scheduled
actions at their time, scaled-in instances terminated once drained (scaling_fixes.py). Run in the server by `running()`
(server.py), which makes it the active runtime the moto hooks (hooks.py) answer from.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from moto.ec2.models import ec2_backends

from deploy.localcloud.apps import (
    BOOT_S,
    INSTANCE_TAG,
    MIN_GRACE_S,
    NO_APP,
    RESTART_S,
    RUNNING_STATES,
    SHUTDOWN_WAIT_S,
    STOP_GRACE_S,
    STORE_CHECK_S,
    TICK_S,
    AppImage,
    AppProcess,
    AppStore,
    Timing,
    Watchdog,
    die_with_parent,
    free_loopback_port,
    read_app_env,
)
from deploy.localcloud.backends import backends
from deploy.localcloud.balancers import Balancers
from deploy.localcloud.scaling_fixes import advance


class Runtime:
    """The supervisor: one thread that starts, restarts and stops app processes, and drives the balancers."""

    def __init__(self, root: Path, timing: Timing | None = None, keep_root: bool = True) -> None:
        self.timing = timing or Timing.from_environ()
        self.root = root
        self.keep_root = keep_root
        shutil.rmtree(root / "images", ignore_errors=True)  # a new cloud: no image of an earlier one exists
        (root / "apps").mkdir(parents=True, exist_ok=True)
        self.store = AppStore(root / "images")
        self.processes: dict[str, AppProcess] = {}
        self.first_seen: dict[str, float] = {}
        self.tagged: dict[str, str] = {}
        self.next_store_check = 0.0
        self.lock = threading.RLock()
        self.stop_event = threading.Event()
        self.watchdog = Watchdog(self.timing.seconds(STOP_GRACE_S, MIN_GRACE_S))
        self.balancers = Balancers(self)
        self.thread = threading.Thread(target=self._loop, name="embedded-cloud-runtime", daemon=True)

    # --- what balancers ask -----------------------------------------------------------------------

    def app_of(self, instance: Any) -> AppImage | None:
        """What INSTANCE runs: its process's app (its image may be deregistered since, as on AWS), else its image's."""
        with self.lock:
            current = self.processes.get(getattr(instance, "id", ""))
        return current.app if current is not None else self.store.get(getattr(instance, "image_id", None))

    def address_of(self, instance_id: str, port: int) -> int | None:
        """The loopback port where INSTANCE_ID answers on its port PORT, or None (nothing listens there)."""
        with self.lock:
            app = self.processes.get(instance_id)
            if app is None or app.stop_requested is not None or not app.alive() or app.app.app_port != int(port):
                return None
            return app.port

    # --- the loop ---------------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def _loop(self) -> None:
        # Bounded by the server's life: shutdown() sets the event. Processes are started from this one
        # long-lived thread, so their parent-death signal fires only when the server goes.
        while not self.stop_event.wait(TICK_S):
            try:
                self.tick()
            except Exception as error:  # one bad tick (moto changing under us) must not end the supervisor
                print(f"embedded cloud: runtime tick failed: {error!r}", flush=True)

    def instances(self) -> list[tuple[Any, Any]]:
        """(ec2 backend, instance) of every instance in the cloud."""
        found = []
        for backend in backends(ec2_backends):
            try:
                found += [(backend, instance) for instance in backend.all_instances()]
            except RuntimeError:  # changed while read: the next tick sees it
                continue
        return found

    def tick(self) -> None:
        now = self.timing.clock()
        instances = self.instances()
        existing: set[str] = set()
        if now >= self.next_store_check:  # images go rarely: look once a second, not every tick
            self.next_store_check = now + STORE_CHECK_S
            images: set[str] = set()
            for backend in backends(ec2_backends):
                with contextlib.suppress(RuntimeError):
                    images |= set(backend.amis)
            self.store.forget_except(images)
        for backend, instance in instances:
            existing.add(instance.id)
            app = self.app_of(instance)
            if app is None:
                self._tag(backend, instance.id, NO_APP)
                continue
            with self.lock:
                current = self.processes.get(instance.id)
            if instance.state in RUNNING_STATES:
                if current is None:
                    booted = self.first_seen.setdefault(instance.id, now) + self.timing.seconds(BOOT_S)
                    if now >= booted:
                        self._start(backend, instance.id, app)
                    else:
                        self._tag(backend, instance.id, "booting")
                elif current.stop_requested is None:
                    self._keep_running(current, now)
            else:
                self.first_seen.pop(instance.id, None)  # started again later: it boots again
                if current is not None:
                    self._request_stop(current, now)
        with self.lock:
            for instance_id, current in list(self.processes.items()):
                if instance_id not in existing:
                    self._request_stop(current, now)
                self._advance_stop(current, now)
        for seen in (self.first_seen, self.tagged):
            for instance_id in [i for i in seen if i not in existing]:
                del seen[instance_id]
        self.balancers.sync(now)
        advance(now, self.timing.scale)  # scheduled actions due; scaled-in instances drained: terminated

    def _tag(self, backend: Any, instance_id: str, value: str) -> None:
        if self.tagged.get(instance_id) == value:
            return
        self.tagged[instance_id] = value
        with contextlib.suppress(Exception):
            backend.create_tags([instance_id], {INSTANCE_TAG: value})

    def _environment(self, app: AppImage, port: int) -> dict[str, str]:
        settings = read_app_env(app.folder / "app.env")
        base = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TZ") if key in os.environ}
        return {
            **base,
            "HOME": str(app.folder),
            "PYTHONUNBUFFERED": "1",
            **settings,
            # What the unit sets after its EnvironmentFile: the port, and the check path the image was baked with.
            "HEALTH_CHECK_PATH": settings.get("HEALTH_CHECK_PATH", "/api/status/health"),
            "PORT": str(port),
            "HOST": "127.0.0.1",  # the embedded cloud binds nothing but loopback
        }

    def _start(self, backend: Any, instance_id: str, app: AppImage) -> None:
        port = free_loopback_port()
        current = AppProcess(instance_id, app, port, self.root / "apps" / f"{instance_id}.log")
        with self.lock:
            self.processes[instance_id] = current
        self._spawn(current)
        self._tag(backend, instance_id, f"pid {current.pid}, port {app.app_port} at 127.0.0.1:{port}")

    def _spawn(self, current: AppProcess) -> None:
        with current.log_path.open("ab") as log:
            log.write(f"--- {current.app.start_command} (PORT={current.port})\n".encode())
            log.flush()
            current.process = subprocess.Popen(
                ["/bin/sh", "-c", current.app.start_command],
                cwd=current.app.folder,
                env=self._environment(current.app, current.port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole, as systemd stops a unit
                preexec_fn=die_with_parent,
            )
        current.started += 1
        current.restart_at = None
        self.watchdog.tell("add", current.process.pid)

    def _keep_running(self, current: AppProcess, now: float) -> None:
        if current.alive():
            return
        if current.restart_at is None:
            if current.process is not None:
                self.watchdog.tell("del", current.process.pid)
            current.restart_at = now + self.timing.seconds(RESTART_S)
        elif now >= current.restart_at:
            self._spawn(current)

    def _request_stop(self, current: AppProcess, now: float) -> None:
        if current.stop_requested is None:
            current.stop_requested = now

    def _advance_stop(self, current: AppProcess, now: float) -> None:
        """Finish in-flight requests (up to the longest draining time), then SIGTERM, then SIGKILL after the grace."""
        if current.stop_requested is None:
            return
        process = current.process
        if process is None or process.poll() is not None:
            if process is not None:
                self.watchdog.tell("del", process.pid)
            del self.processes[current.instance_id]
            return
        if current.terminated_at is None:
            draining = self.balancers.in_flight(current.instance_id) > 0
            if draining and now < current.stop_requested + self.balancers.longest_draining():
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            current.terminated_at = now
        elif now >= current.terminated_at + self.timing.seconds(STOP_GRACE_S, MIN_GRACE_S):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    # --- the end ----------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop everything this cloud runs: endpoints, probes, and every app (SIGTERM, then SIGKILL)."""
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout=SHUTDOWN_WAIT_S)
        self.balancers.close()
        with self.lock:
            running = [p.process for p in self.processes.values() if p.process is not None]
            self.processes.clear()
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + min(self.timing.seconds(STOP_GRACE_S, MIN_GRACE_S), SHUTDOWN_WAIT_S)
        for process in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(deadline - time.monotonic(), 0.01))
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1)
            self.watchdog.tell("del", process.pid)
        self.watchdog.close()
        shutil.rmtree(self.root / "images", ignore_errors=True)
        if not self.keep_root:
            shutil.rmtree(self.root, ignore_errors=True)


_active: Runtime | None = None


def active() -> Runtime | None:
    return _active


def state_root(port: str | None) -> tuple[Path, bool]:
    """Where the cloud keeps images and app logs: LOCAL_CLOUD_DIR/port-PORT (kept), else a temporary folder."""
    configured = os.environ.get("LOCAL_CLOUD_DIR")
    if configured:
        return Path(configured) / f"port-{port or 'default'}", True
    return Path(tempfile.mkdtemp(prefix="embedded-cloud-")), False


def _port_of(argv: list[str]) -> str | None:
    for flag in ("-p", "--port"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return argv[argv.index(flag) + 1]
    return None


@contextlib.contextmanager
def running(argv: list[str]) -> Iterator[Runtime]:
    """Run the embedded cloud's runtime around the moto server; SIGTERM stops the server and everything it runs."""
    global _active
    root, keep = state_root(_port_of(argv))
    runtime = Runtime(root, keep_root=keep)
    _active = runtime

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # werkzeug's serve_forever ends on it; the finally below stops the apps

    previous = signal.signal(signal.SIGTERM, interrupt)
    runtime.start()
    print(f"embedded cloud: apps run with time scale {runtime.timing.scale:g}; state in {root}", flush=True)
    try:
        yield runtime
    finally:
        signal.signal(signal.SIGTERM, previous)
        _active = None
        runtime.shutdown()
