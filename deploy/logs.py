"""Run logs under deploy/log/ENV/STAMP/ and the progress lines a person reads.

Every AWS response is written to its own file, numbered and named after the step and the operation
(the original scripts kept one file per call); Packer and app builds write their full output beside them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from deploy.config import work_dir
from deploy.errors import DeployError

# Response fields that must never reach a log file.
SECRET_FIELDS = {"KeyMaterial", "SecretAccessKey", "SessionToken", "Password"}


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<redacted>" if k in SECRET_FIELDS else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return value


RUN_FOLDER = re.compile(r"\d{8}T\d{6}\.\d{6}Z")


def runs_to_prune(names: list[str], keep: int) -> list[str]:
    """Pure: the run folders beyond the KEEP newest (their names sort in time order); nothing else."""
    runs = sorted(name for name in names if RUN_FOLDER.fullmatch(name))
    return runs[: max(len(runs) - max(keep, 1), 0)]


def prune_runs(folder: Path, keep: int) -> list[str]:
    """Delete the oldest run folders of FOLDER beyond KEEP (LOG_RUNS); the newest run is always kept."""
    try:
        names = [path.name for path in folder.iterdir() if path.is_dir() and not path.is_symlink()]
    except OSError:
        return []
    doomed = runs_to_prune(names, keep)
    for name in doomed:
        shutil.rmtree(folder / name, ignore_errors=True)  # pruning must never fail a run
    return doomed


class RunLog:
    """One run's log folder plus the progress printer; deploy/log/ENV/latest points at the newest run."""

    def __init__(
        self,
        env: str,
        root: Path | None = None,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        keep: int | None = None,
        read_only: bool = False,
    ) -> None:
        self.env = env
        self.out = out or sys.stdout
        self.clock = clock
        self.started = clock()
        self.step = "run"
        self._counter = 0
        self._lock = threading.Lock()
        root = root or work_dir() / "deploy" / "log"
        when = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        self.dir = root / env / when
        self.unwritable: str | None = None  # why the log cannot be written, once it could not
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            if not read_only:
                raise DeployError(
                    f"Cannot write the run log under {root} ({error.strerror or error}): make the work folder"
                    " writable (DEPLOY_WORK_DIR), or free some space. Nothing was changed."
                ) from None
            # A run that only reads (status, history, a dry run) works without a writable work folder.
            self.dir = Path(tempfile.mkdtemp(prefix=f"immutable-deploy-{env}-"))
            self.unwritable = f"{root}: {error.strerror or error}"
            return
        latest = root / env / "latest"
        try:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            latest.symlink_to(self.dir.name)
        except OSError:
            pass  # a missing convenience link must never fail a deploy
        if keep is not None:
            prune_runs(root / env, keep)

    def elapsed(self) -> float:
        """Seconds since this run started."""
        return self.clock() - self.started

    def _next_path(self, name: str, suffix: str) -> Path:
        with self._lock:  # several groups are retired at once, each thread logging its calls
            self._counter += 1
            number = self._counter
        safe = re.sub(r"[^A-Za-z0-9_.-]", "-", name)
        return self.dir / f"{number:04d}-{self.step}-{safe}{suffix}"

    def record_call(self, service: str, operation: str, response: dict[str, Any]) -> None:
        body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
        path = self._next_path(f"{service}-{operation}", ".json")
        self._write(lambda: path.write_text(json.dumps(_redact(body), indent=2, default=str) + "\n", encoding="utf-8"))

    def _write(self, write: Callable[[], object]) -> None:
        """A log write is best effort: a full disk or a lost folder must not break a run half-way (the AWS calls
        matter, not their copies); it is said once."""
        try:
            write()
        except OSError as error:
            if self.unwritable is None:
                self.unwritable = f"{self.dir}: {error.strerror or error}"
                print(f"warning: the run log cannot be written ({self.unwritable}); going on", file=self.out)

    def file_for(self, name: str, suffix: str = ".log") -> Path:
        """A fresh numbered file of this step, for a tool's full output (Packer, the app build)."""
        return self._next_path(name, suffix)

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)
        self._append(message)

    def _append(self, message: str) -> None:
        line = f"{datetime.now(UTC).isoformat(timespec='seconds')} [{self.step}] {message}\n"

        def append() -> None:
            with (self.dir / "run.log").open("a", encoding="utf-8") as handle:
                handle.write(line)

        self._write(append)

    @contextmanager
    def step_context(self, name: str) -> Iterator[None]:
        """Print a step's start and end with its elapsed time; files written meanwhile carry its name."""
        outer, self.step = self.step, name
        started = self.clock()
        self.say(f"==> {name}")
        try:
            yield
        except BaseException:
            self.say(f"<== {name} failed after {self.clock() - started:.1f}s")
            raise
        else:
            self.say(f"<== {name} done in {self.clock() - started:.1f}s")
        finally:
            self.step = outer

    def progress(self, line: str) -> None:
        """A line of a wait: rewritten in place on a terminal, printed plainly otherwise (CI logs);
        run.log keeps every reading either way."""
        if self.out.isatty() if hasattr(self.out, "isatty") else False:
            print(f"\r\033[K{line}", end="", file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)
        self._append(line)

    def end_progress(self) -> None:
        if self.out.isatty() if hasattr(self.out, "isatty") else False:
            print(file=self.out, flush=True)

    def relative_dir(self) -> str:
        try:
            return os.path.relpath(self.dir)
        except ValueError:
            return str(self.dir)
