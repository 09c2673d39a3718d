"""Where a run stages its app, and the guard of an app folder while it is built and staged.

Each run stages into a folder of its own, `tmp/appserver/ENV/RUN` (RUN: the run's log folder name), and
Packer bakes exactly that folder: two environments deployed at once from one checkout never share one. The
app folder itself (APP_DIR, where BUILD_COMMAND writes) is shared by every environment of the checkout, so a
run holds a lock on it (an flock of a file under tmp/locks) from the start of its build until its files are
staged: another run's build waits, bounded, instead of overwriting the files being staged.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from deploy.config import work_dir
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.waiting import Waiter

LOCAL_POLL_S = 0.2


def staging_root(env: str) -> Path:
    return work_dir() / "tmp" / "appserver" / env


def staging_dir(environment: Environment) -> Path:
    """This run's own staging folder."""
    return staging_root(environment.env) / environment.log.dir.name


def remove_older_stagings(environment: Environment) -> None:
    """Earlier runs' staging folders of this environment (the deploy lock excludes a concurrent run of it)."""
    root = staging_root(environment.env)
    mine = staging_dir(environment)
    for folder in root.glob("*") if root.is_dir() else []:
        if folder != mine:
            shutil.rmtree(folder, ignore_errors=True)


class AppFolderLock:
    """An flock on a file named after the app folder: one build-and-stage at a time per app folder."""

    def __init__(self, folder: Path) -> None:
        digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
        self.path = work_dir() / "tmp" / "locks" / f"app-{digest}.lock"
        self.folder = folder
        self.fd: int | None = None

    def try_take(self) -> bool:
        if self.fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


# The locks this process holds, by (environment, app folder): released by copy-over once staged (or when the
# process ends, however it ends: the kernel drops an flock with its file).
_held: dict[tuple[str, str], AppFolderLock] = {}


def hold_app_folder(environment: Environment, folder: Path, timeout_s: float) -> AppFolderLock:
    """Take the app folder's lock for this environment's run; wait, bounded, while another run builds or stages
    from the same folder."""
    lock = _held.setdefault((environment.env, str(folder.resolve())), AppFolderLock(folder))
    if lock.try_take():
        return lock
    environment.say(f"  waiting for another run to finish building and staging {folder}")
    # Another local process's build: waited for on the real clock (not the run's AWS poll clock), polled often.
    done, _ = Waiter(timeout_s, LOCAL_POLL_S).until(lambda: (lock.try_take(), ""))
    if not done:
        raise DeployError(
            f"Another run kept building or staging {folder} for {timeout_s:.0f}s; try again when it is done."
        )
    return lock


def release_app_folder(environment: Environment, folder: Path) -> None:
    lock = _held.pop((environment.env, str(folder.resolve())), None)
    if lock is not None:
        lock.release()
