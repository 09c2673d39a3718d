"""Run Packer builds and read their machine-readable output.

Independent of invoke and of the configuration module: callers pass paths and values in.
Works with Debian's packer 1.6.6 and current packer with the amazon plugin (JSON templates).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from deploy.errors import DeployError
from deploy.watchdog import GroupWatchdog

ROOT = Path(__file__).resolve().parent.parent
LOG_TAIL_LINES = 15
# After an interrupt packer terminates its instance and deletes its key pair and security group;
# on AWS that takes a minute or two. Only then is it killed.
CLEANUP_GRACE_S = 180.0
VALIDATE_TIMEOUT_S = 60.0
INSTALL_HINT = (
    "Install it with `apt-get install packer` (Debian/Ubuntu) or from"
    " https://developer.hashicorp.com/packer/install (then `packer plugins install"
    " github.com/hashicorp/amazon` for packer 1.10 and later), or put it on PATH."
)
PACKER_COMMA = "%!(PACKER_COMMA)"


class PackerError(DeployError):
    """Packer is missing, failed, timed out or produced no image."""


class PackerTransientError(PackerError):
    """A build that failed on throttling or a server-side fault of AWS: worth running again. CAUSE names it."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause


# Answers of AWS that say "later", not "no": throttling and 5xx faults, by code or by HTTP status.
TRANSIENT = re.compile(
    r"\b(RequestLimitExceeded|Throttling(?:Exception)?|RequestThrottled|TooManyRequestsException|InternalError"
    r"|InternalFailure|ServiceUnavailable|Unavailable|status code: 5\d\d)\b"
)


def transient_cause(lines: list[str]) -> str | None:
    """The first throttling or 5xx answer named in Packer's output, or None."""
    for line in lines:
        found = TRANSIENT.search(line)
        if found:
            return found.group(1)
    return None


def _decode(text: str) -> str:
    """Undo packer's machine-readable escaping of commas and newlines."""
    return text.replace(PACKER_COMMA, ",").replace("\\n", "\n").replace("\\r", "")


def parse_artifact_id(lines: Iterable[str]) -> str | None:
    """The AMI id from `TIMESTAMP,BUILDER,artifact,0,id,REGION:ami-…` lines, or None.

    With several regions the id reads `r1:ami-1,r2:ami-2` (commas escaped): the first is returned.
    """
    for line in lines:
        fields = line.rstrip("\r\n").split(",", 5)
        if len(fields) == 6 and fields[2] == "artifact" and fields[4] == "id":
            first = _decode(fields[5]).split(",")[0].strip()
            ami = first.split(":", 1)[-1]
            if ami:
                return ami
    return None


def progress_message(line: str) -> str | None:
    """A human-readable line for a `ui` say/message line of machine-readable output, else None."""
    fields = line.rstrip("\r\n").split(",", 4)
    if len(fields) != 5 or fields[2] != "ui" or fields[3] not in ("say", "message"):
        return None
    message = _decode(fields[4]).strip("\n").rstrip()
    return message or None


def _readable(line: str) -> str:
    """A log line for people: the message of ui lines; other machine-readable lines repeat ui ones."""
    fields = line.rstrip("\r\n").split(",", 4)
    if len(fields) >= 3 and fields[0].isdigit():
        return _decode(fields[4]).strip("\n").rstrip() if len(fields) == 5 and fields[2] == "ui" else ""
    return _decode(line.rstrip("\r\n"))  # e.g. a plugin's plain stderr


MAX_QUOTE_CHARS = 1200  # an error message quotes at most this much of a tool's output; the log has it all


def quote_tail(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """TEXT, or its last LIMIT characters after a mark saying the rest is in the log."""
    return text if len(text) <= limit else "    … (earlier output in the log)\n" + text[-limit:]


def _log_tail(lines: list[str], count: int = LOG_TAIL_LINES) -> str:
    readable = [part for line in lines[-count * 4 :] for part in _readable(line).splitlines() if part.strip()]
    return quote_tail("\n".join("    " + part for part in readable[-count:]))


def find_packer(packer_bin: str) -> str:
    found = shutil.which(packer_bin)
    if found is None:
        raise PackerError(f"Packer ({packer_bin}) was not found on PATH. {INSTALL_HINT}")
    return found


def packer_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    # No version check against checkpoint-api.hashicorp.com: builds must not depend on the internet.
    return {**os.environ, "CHECKPOINT_DISABLE": "1", **(extra or {})}


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_tool(tool_pid: int) -> Callable[[], None]:
    """What the child runs between fork and exec: the kernel sends it SIGINT when the tool dies, however it dies
    (kill -9 included), so Packer never outlives it (it gets an interrupt as from Ctrl-C and stops; whatever it
    cannot delete then is found by its tags and removed by the next deploy, cleanup or destroy)."""

    def set_up() -> None:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)
        if os.getppid() != tool_pid:  # the tool died before the prctl took effect
            os._exit(1)

    return set_up


class _Stopper:
    """Interrupts packer as Ctrl-C would, so it deletes its temporary resources, then kills it late."""

    def __init__(self, process: subprocess.Popen[str], grace_s: float) -> None:
        self.process = process
        self.grace_s = grace_s
        self.reason: str | None = None
        self._timers: list[threading.Timer] = []

    def _signal(self, sig: signal.Signals) -> None:
        # Packer runs in its own session: signal its group so plugin processes go too.
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def _later(self, seconds: float, action: Callable[..., None], *args: Any) -> None:
        timer = threading.Timer(seconds, action, args)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def stop_after(self, seconds: float, reason: str, grace_s: float | None = None) -> None:
        self._later(seconds, self.stop, reason, grace_s)

    def stop(self, reason: str, grace_s: float | None = None) -> None:
        if self.reason is None and self.process.poll() is None:
            self.reason = reason
            self._signal(signal.SIGINT)
            self._later(self.grace_s if grace_s is None else grace_s, self._signal, signal.SIGKILL)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._signal(signal.SIGKILL)  # only if still running, e.g. after a second Ctrl-C
        self.process.wait()


def _stream(
    process: subprocess.Popen[str],
    log: TextIO,
    lines: list[str],
    on_progress: Callable[[str], Any] | None,
    on_line: Callable[[str], Any] | None = None,
) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)
        log.flush()
        lines.append(line)
        if on_line is not None:
            on_line(line)
        if on_progress is not None and (message := progress_message(line)) is not None:
            on_progress(message)


def ask_packer(command: list[str]) -> subprocess.CompletedProcess[str]:
    """A short Packer command (validate, version), bounded; its output captured."""
    try:
        return subprocess.run(
            command,
            cwd=ROOT,
            env=packer_env(None),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=VALIDATE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise PackerError(f"`{' '.join(command)}` did not finish within {VALIDATE_TIMEOUT_S:g}s.") from None
    except OSError as error:
        raise PackerError(
            f"{command[0]} could not be run ({error.strerror or error}): is it the Packer program? {INSTALL_HINT}"
        ) from None


def _start(command: list[str], **options: Any) -> subprocess.Popen[str]:
    """Popen, with a program that cannot be run (not executable, not a program at all) said in one message."""
    try:
        return subprocess.Popen(command, **options)
    except OSError as error:
        raise PackerError(
            f"{command[0]} could not be run ({error.strerror or error}): is it the Packer program? {INSTALL_HINT}"
        ) from None


def run_packer(
    template_path: str | Path,
    var_file: str | Path,
    only_builder: str,
    log_path: str | Path,
    on_progress: Callable[[str], Any] = print,
    timeout_s: float = 3600,
    packer_bin: str = "packer",
    env: Mapping[str, str] | None = None,
    cleanup_grace_s: float = CLEANUP_GRACE_S,
    denied_grace_s: float = CLEANUP_GRACE_S,
) -> str:
    """Build BUILDER of the template and return the AMI id; the raw output goes to LOG_PATH.

    ENV adds variables (e.g. credentials) to this process's environment for packer. Once AWS refused Packer a
    permission the build cannot succeed: Packer gets DENIED_GRACE_S for its cleanup (which retries for ever
    when the same policy also refuses it the deletion), then is stopped as by Ctrl-C, and killed DENIED_GRACE_S
    later (it may ignore the interrupt while cleaning up).
    """
    exe = find_packer(packer_bin)
    # Absolute, because packer runs in the repository root, not in the caller's directory.
    template_path, var_file = Path(template_path).resolve(), Path(var_file).resolve()
    for path, what in ((template_path, "Packer template"), (var_file, "Packer variable file")):
        if not path.is_file():
            raise PackerError(f"{what} {path} does not exist.")
    command = [exe, "build", "-machine-readable", f"-only={only_builder}", f"-var-file={var_file}", str(template_path)]
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    what = f"packer build of {template_path.name} (builder {only_builder})"
    lines: list[str] = []
    with log_path.open("a", encoding="utf-8") as log:  # a retried build's attempts follow each other
        watchdog = GroupWatchdog(cleanup_grace_s)
        try:
            process = _start(
                command,
                cwd=ROOT,
                env=packer_env(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                start_new_session=True,  # a terminal Ctrl-C reaches us; we forward it and wait for cleanup
                preexec_fn=_die_with_tool(os.getpid()),  # only prctl and getppid: safe between fork and exec
            )
        except BaseException:
            watchdog.close()
            raise
        watchdog.tell(f"watch {process.pid}")  # its own session: its group id is its pid
        stopper = _Stopper(process, cleanup_grace_s)
        stopper.stop_after(timeout_s, "timeout")

        refused: list[str] = []

        def watch(line: str) -> None:
            if not refused and stopper.reason is None and _denial([line]):
                refused.append(line)
                stopper.stop_after(denied_grace_s, "denied", denied_grace_s)

        try:
            try:
                _stream(process, log, lines, on_progress, watch)
            except BaseException:
                # Ctrl-C or a failing callback: let packer delete its instance, key pair and group first.
                stopper.stop("interrupted")
                _stream(process, log, lines, None)
                raise
        finally:
            stopper.close()
            watchdog.close()
    tail = _log_tail(lines)
    if process.returncode != 0:
        if stopper.reason == "timeout":
            raise PackerError(
                f"The {what} did not finish within {timeout_s:g}s and was stopped. Temporary resources"
                f" (instance, key pair and security group named packer_*) may remain. Last lines of"
                f" {log_path}:\n{tail}"
            )
        denied = _denial(lines)
        if denied:  # a missing permission: one line naming it, the log for the rest
            raise PackerError(f"The {what} failed: AWS refused it: {denied}. Full log: {log_path}")
        failed = f"The {what} failed (exit code {process.returncode}). Last lines of {log_path}:\n{tail}"
        cause = None if stopper.reason else transient_cause(lines)
        if cause:
            raise PackerTransientError(failed, cause)
        raise PackerError(failed)
    ami = parse_artifact_id(lines)
    if ami is None:
        raise PackerError(f"The {what} succeeded but reported no image id. Last lines of {log_path}:\n{tail}")
    return ami


def _denial(lines: list[str]) -> str | None:
    """The first "... is not authorized to perform: SERVICE:ACTION" of Packer's output, or None."""
    for line in lines:
        found = re.search(r"(User: \S+ is )?not authorized to perform:? [a-z0-9-]+:[A-Za-z0-9]+", line)
        if found:
            return found.group(0)
    return None


def _dummy_value(name: str, scratch: Path) -> str:
    if name.endswith("_ami"):
        return "ami-00000000000000000"
    if name.endswith("_dir"):
        return str(scratch)  # the file provisioner checks that its source exists
    if name.endswith("_script"):
        script = scratch / "user-script.sh"  # the shell provisioner checks that its script exists
        script.write_text("#!/bin/sh\n", encoding="utf-8")
        return str(script)
    if name == "region":
        return "us-east-1"
    return "validate-only"


def validate_template(
    template_path: str | Path,
    packer_bin: str = "packer",
    var_file: str | Path | None = None,
) -> None:
    """Check the whole template with `packer validate` (offline, no credentials needed).

    `-syntax-only` does not catch unknown builder keys, so a full validate runs, with VAR_FILE or,
    without one, with placeholder values for the template's required variables.
    """
    exe = find_packer(packer_bin)
    template_path = Path(template_path).resolve()
    if var_file is not None:
        var_file = Path(var_file).resolve()
    with tempfile.TemporaryDirectory(prefix="packer-validate-") as scratch:
        if var_file is None:
            try:
                variables = json.loads(template_path.read_text(encoding="utf-8")).get("variables", {})
            except (OSError, ValueError) as error:
                raise PackerError(f"Cannot read Packer template {template_path}: {error}") from None
            dummies = {name: _dummy_value(name, Path(scratch)) for name, value in variables.items() if value is None}
            var_file = Path(scratch) / "validate.vars.json"
            var_file.write_text(json.dumps(dummies), encoding="utf-8")
        result = ask_packer([exe, "validate", f"-var-file={var_file}", str(template_path)])
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise PackerError(f"Packer template {template_path} is invalid:\n{output}")
