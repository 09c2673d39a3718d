"""`inv build-app` and `inv copy-over`: build the application, then stage exactly what the server needs."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

from deploy.config import ROOT, work_dir
from deploy.environment import Environment
from deploy.errors import DeployError

BUILD_TIMEOUT_S = 1800
STOP_GRACE_S = 5  # an interrupted build gets this long to exit on SIGTERM
LOG_TAIL_LINES = 15
# What the server reads at start: never secrets, only what the app needs to know about its environment.
APP_SETTINGS = ("APP_NAME", "DOMAIN", "HEALTH_CHECK_PATH")


def app_dir(environment: Environment) -> Path:
    folder = ROOT / str(environment.config.app_dir)
    if not folder.is_dir():
        raise DeployError(f"APP_DIR {folder} does not exist: fix APP_DIR in env/{environment.env}.env.")
    return folder


def staging_dir() -> Path:
    return work_dir() / "tmp" / "appserver"


def tail(path: Path, count: int = LOG_TAIL_LINES) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(f"    {line}" for line in lines[-count:])


def build_app(environment: Environment) -> None:
    """Run BUILD_COMMAND ({env} replaced by the environment name) in APP_DIR, its output in the run log."""
    command = str(environment.config.build_command).replace("{env}", environment.env)
    folder = app_dir(environment)
    log_path = environment.log.file_for("build")
    environment.say(f"  $ {command}   (in {os.path.relpath(folder, ROOT)})")
    with log_path.open("w", encoding="utf-8") as log:
        # Its own process group: an interrupt or the timeout stops the whole build, not only the shell
        # (whose children would otherwise keep running, orphaned).
        process = subprocess.Popen(
            command, shell=True, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stop_build(process)
            raise DeployError(f"The app build did not finish within {BUILD_TIMEOUT_S}s. Log: {log_path}") from None
        except BaseException:  # Ctrl-C, SIGTERM
            stop_build(process)
            raise
    if returncode != 0:
        raise DeployError(
            f"The app build failed (exit {returncode}): {command}\n{tail(log_path)}\n  Full log: {log_path}"
        )


def stop_build(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the build's process group, SIGKILL to whatever is left after a grace period."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_GRACE_S)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def glob_base(pattern: str) -> Path:
    """The fixed directory part of a glob, before its first wildcard: `dist/*` → `dist`."""
    parts = Path(pattern).parts
    for index, part in enumerate(parts):
        if any(char in part for char in "*?["):
            return Path(*parts[:index])
    return Path(*parts[:-1])  # a plain path is staged under its own name


def matching_files(folder: Path, patterns: tuple[str, ...]) -> dict[Path, Path]:
    """{staged path: source path} of every file a glob matches, staged relative to the glob's fixed base.

    `dist/*` stages dist/server.py as server.py; a matched directory brings its files.
    """
    found: dict[Path, Path] = {}
    for pattern in patterns:
        base = folder / glob_base(pattern)
        for match in sorted(folder.glob(pattern)):
            files = sorted(p for p in match.rglob("*") if p.is_file()) if match.is_dir() else [match]
            for path in files:
                if path.is_file():
                    found[path.relative_to(base)] = path
    return dict(sorted(found.items()))


def tree_digest(folder: Path) -> str:
    """A digest of every file's path and bytes: equal digests mean the same staged app."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def copy_over(environment: Environment) -> Path:
    """Stage APP_FILES (relative to APP_DIR) plus the environment's settings into tmp/appserver, fresh."""
    source = app_dir(environment)
    patterns: tuple[str, ...] = environment.config.app_files  # type: ignore[assignment]
    files = matching_files(source, patterns)
    if not files:
        raise DeployError(
            f"APP_FILES ({', '.join(patterns)}) matched nothing in {source}: did the build run and write them?"
        )
    target = staging_dir()
    shutil.rmtree(target, ignore_errors=True)
    for relative, path in files.items():
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)
    settings = [f"ENV={environment.env}"] + [f"{key}={environment.config.value(key)}" for key in APP_SETTINGS]
    (target / "app.env").write_text("\n".join(settings) + "\n", encoding="utf-8")
    digest = tree_digest(target)
    environment.state.put("staged", {"dir": str(target), "digest": digest})
    environment.say(f"  staged {len(files)} files and app.env into {target} (digest {digest[:12]})")
    return target
