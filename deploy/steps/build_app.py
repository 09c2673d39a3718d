"""`inv build-app`: run BUILD_COMMAND in APP_DIR, its output in the run log."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

from deploy.config import app_folder
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.packer import MAX_QUOTE_CHARS, quote_tail
from deploy.plans.stages import Build, Made, Request
from deploy.settings import ROOT
from deploy.steps.staging import hold_app_folder

STOP_GRACE_S = 5  # an interrupted build gets this long to exit on SIGTERM
LOG_TAIL_LINES = 15


def tail(path: Path, count: int = LOG_TAIL_LINES) -> str:
    """The last COUNT lines of the log, at most MAX_QUOTE_CHARS of them (a build may write megabytes)."""
    with path.open("rb") as log:
        log.seek(max(0, path.stat().st_size - 4 * MAX_QUOTE_CHARS))
        lines = log.read().decode("utf-8", errors="replace").splitlines()
    return quote_tail("\n".join(f"    {line}" for line in lines[-count:]))


def decide_build(environment: Environment, request: Request, made: Made) -> Build:
    """BUILD_COMMAND ({env} replaced by the environment name), run in APP_DIR."""
    command = str(environment.config.build_command).replace("{env}", environment.env)
    return Build(command=command, folder=app_folder(environment.config))


def act_build(environment: Environment, decision: Build, made: Made) -> Made:
    build_app(environment, decision)
    return made


def build_app(environment: Environment, decision: Build | None = None) -> None:
    """Run the build DECISION names (default: as decided now), its output in the run log."""
    decision = decision or decide_build(environment, Request(), Made())
    command, folder = decision.command, decision.folder
    # Held until copy-over staged the build's files: another environment's build from this checkout waits.
    timeout = environment.config.build_timeout
    hold_app_folder(environment, folder, timeout)
    log_path = environment.log.file_for("build")
    environment.say(f"  $ {command}   (in {os.path.relpath(folder, ROOT)})")
    with log_path.open("w", encoding="utf-8") as log:
        # Its own process group: an interrupt or the timeout stops the whole build, not only the shell
        # (whose children would otherwise keep running, orphaned).
        process = subprocess.Popen(
            command, shell=True, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_build(process)
            raise DeployError(
                f"The app build did not finish within {timeout}s (BUILD_TIMEOUT). Log: {log_path}"
            ) from None
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
