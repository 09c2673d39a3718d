"""Run Packer builds and read their machine-readable output.

Independent of invoke and of the configuration module: callers pass paths and values in.
Works with Debian's packer 1.6.6 and current packer with the amazon plugin (JSON templates).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

import jinja2

from deploy.errors import DeployError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
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
TEMPLATE_MARK = "{{"  # what starts a Go template action in any Packer string


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


def _json_default(value: Any) -> Any:
    # tojson would otherwise report a missing variable as "StrictUndefined is not JSON serializable".
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _b64(value: object) -> str:
    return base64.b64encode(str(value).encode("utf-8")).decode("ascii")


def render_var_file(template_name: str, context: Mapping[str, Any], dest_path: str | Path) -> Path:
    """Render templates/TEMPLATE_NAME with CONTEXT into the Packer variable file DEST_PATH.

    Packer evaluates `{{` in a variable's value (1.6.6 once when it reads the value and again where it is used),
    so free text (START_COMMAND) goes through the `b64` filter and its script decodes it; any other value holding
    `{{` is refused, naming it: nothing a user configures is ever evaluated by Packer.
    """
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": _json_default}
    environment.filters["b64"] = _b64
    try:
        text = environment.get_template(template_name).render(**context)
    except jinja2.TemplateNotFound as error:
        raise PackerError(f"Packer variable template {TEMPLATES_DIR / str(error)} does not exist.") from None
    except jinja2.UndefinedError as error:
        raise PackerError(f"Cannot render {template_name}: {error}.") from None
    # Packer 1.6.6 only takes strings in a var file; a None or number is a bug in the caller.
    for name, value in json.loads(text).items():
        if not isinstance(value, str):
            raise PackerError(f"Cannot render {template_name}: {name} must be a string, got {value!r}.")
        if TEMPLATE_MARK in value:
            raise PackerError(
                f"The Packer variable {name} ({value!r}) holds {TEMPLATE_MARK!r}, which Packer would evaluate as a"
                " template: rename or move what it names."
            )
    dest = Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text, encoding="utf-8")
    return dest


def render_template(source: str | Path, dest: str | Path, public_ip: bool) -> Path:
    """Write packer/ROLE.json as this bake runs it into DEST: its `aws` builder asks for a public IP (and ssh goes
    to it) only when PUBLIC_IP, since the subnet gives none; otherwise `associate_public_ip_address` stays unset.
    (Packer 1.6.6 read an explicit false as "the subnet's default", the current amazon plugin as "no public IP".)"""
    template = json.loads(Path(source).read_text(encoding="utf-8"))
    for builder in template["builders"]:
        if builder.get("name") == "aws" and public_ip:
            builder.update(associate_public_ip_address=True, ssh_interface="public_ip")
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(template, indent=2) + "\n", encoding="utf-8")
    return target


# Packer versions this tool runs: Debian's 1.6.6 up to 1.9 (the amazon builder built in), and 1.10 or later 1.x
# with the amazon plugin installed (Packer 1.10 stopped bundling it).
OLDEST_PACKER = (1, 6, 6)
UNBUNDLED_FROM = (1, 10, 0)
AMAZON_PLUGIN = "github.com/hashicorp/amazon"
PLUGIN_INSTALL = f"packer plugins install {AMAZON_PLUGIN}"
SUPPORTED_PACKER = f"Packer 1.6.6 to 1.9 or 1.10 and later 1.x with the amazon plugin (`{PLUGIN_INSTALL}`)"


def parse_packer_version(output: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of `packer version` output ("Packer v1.6.6"), or None."""
    found = re.search(r"Packer v?(\d+)\.(\d+)\.(\d+)", output)
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def packer_refusal(exe: str, version: tuple[int, int, int] | None, plugins: str | None) -> str | None:
    """Why this Packer cannot bake (one message with the install command), or None. PLUGINS: the output of
    `packer plugins installed` (asked only of 1.10 and later)."""
    if version is None or not OLDEST_PACKER <= version < (2, 0, 0):
        shown = "an unknown version" if version is None else "Packer " + ".".join(map(str, version))
        return f"{exe} is {shown}; this tool supports {SUPPORTED_PACKER}. {INSTALL_HINT}"
    if version >= UNBUNDLED_FROM and AMAZON_PLUGIN not in (plugins or ""):
        return (
            f"{exe} is Packer {'.'.join(map(str, version))}, which has no amazon plugin (Packer 1.10 and later ship"
            f" none): install it with `{PLUGIN_INSTALL}`, then run again."
        )
    return None


def _ask(exe: str, *args: str) -> str:
    try:
        result = subprocess.run(
            [exe, *args],
            cwd=ROOT,
            env=_packer_env(None),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=VALIDATE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise PackerError(f"`{exe} {' '.join(args)}` did not answer within {VALIDATE_TIMEOUT_S:g}s.") from None
    except OSError as error:
        raise PackerError(
            f"{exe} could not be run ({error.strerror or error}): is it the Packer program? {INSTALL_HINT}"
        ) from None
    return result.stdout + result.stderr if result.returncode == 0 else ""


_checked: set[str] = set()


def check_packer(packer_bin: str = "packer") -> None:
    """Read `packer version` (and, for 1.10 and later, its installed plugins) once per run, before the first
    bake: an unsupported Packer is refused before anything is created."""
    exe = _find_packer(packer_bin)
    if exe in _checked:
        return
    version = parse_packer_version(_ask(exe, "version"))
    plugins = _ask(exe, "plugins", "installed") if version is not None and version >= UNBUNDLED_FROM else None
    refusal = packer_refusal(exe, version, plugins)
    if refusal:
        raise PackerError(refusal)
    _checked.add(exe)


def _find_packer(packer_bin: str) -> str:
    found = shutil.which(packer_bin)
    if found is None:
        raise PackerError(f"Packer ({packer_bin}) was not found on PATH. {INSTALL_HINT}")
    return found


def _packer_env(extra: Mapping[str, str] | None) -> dict[str, str]:
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


# The watchdog: a process of its own session that learns Packer's process group through a pipe. When the pipe
# closes without "done" (the tool died, however: kill -9 included), it interrupts the whole group as Ctrl-C would
# (Packer deletes what it made), and kills what is left of it after the grace. A parent-death signal alone reaches
# only `packer`, not its plugin processes, and Packer held in a silent wait may never act on it.
WATCHDOG = r"""
import os, signal, sys, time
pgid, grace = None, float(sys.argv[1])
for line in sys.stdin:
    command, _, value = line.strip().partition(" ")
    pgid = int(value) if command == "watch" else None
def members():
    found = 0
    for entry in os.listdir("/proc"):
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found += fields[0] != "Z" and int(fields[2]) == pgid
    return found
if pgid is not None:
    deadline = time.monotonic() + grace
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except OSError:
            break
        while members() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not members():
            break
"""


class _Watchdog:
    def __init__(self, grace_s: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(grace_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or signal to the tool's group must not end it first
            text=True,
        )

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()

    def close(self) -> None:
        """Packer has ended: the watchdog ends without acting."""
        self.tell("done")
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


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

    def stop_after(self, seconds: float, reason: str) -> None:
        self._later(seconds, self.stop, reason)

    def stop(self, reason: str) -> None:
        if self.reason is None and self.process.poll() is None:
            self.reason = reason
            self._signal(signal.SIGINT)
            self._later(self.grace_s, self._signal, signal.SIGKILL)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._signal(signal.SIGKILL)  # only if still running, e.g. after a second Ctrl-C
        self.process.wait()


def _stream(
    process: subprocess.Popen[str], log: TextIO, lines: list[str], on_progress: Callable[[str], Any] | None
) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        log.write(line)
        log.flush()
        lines.append(line)
        if on_progress is not None and (message := progress_message(line)) is not None:
            on_progress(message)


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
) -> str:
    """Build BUILDER of the template and return the AMI id; the raw output goes to LOG_PATH.

    ENV adds variables (e.g. credentials) to this process's environment for packer.
    """
    exe = _find_packer(packer_bin)
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
        watchdog = _Watchdog(cleanup_grace_s)
        try:
            process = _start(
                command,
                cwd=ROOT,
                env=_packer_env(env),
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
        try:
            try:
                _stream(process, log, lines, on_progress)
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
    exe = _find_packer(packer_bin)
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
        command = [exe, "validate", f"-var-file={var_file}", str(template_path)]
        try:
            result = subprocess.run(
                command,
                cwd=ROOT,
                env=_packer_env(None),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=VALIDATE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise PackerError(
                f"packer validate {template_path} did not finish within {VALIDATE_TIMEOUT_S:g}s."
            ) from None
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()
        raise PackerError(f"Packer template {template_path} is invalid:\n{output}")
