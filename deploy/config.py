"""Environment configuration: env/defaults.env, then env/NAME.env, then real environment variables.

Everything is validated before the first AWS call, so a bad setting creates nothing.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO
from urllib.parse import urlparse

from dotenv import dotenv_values

from deploy.errors import ConfigError
from deploy.invocation import current_invocation
from deploy.settings import NAME_PART, ROOT, SETTINGS, SETTINGS_BY_KEY

DEFAULTS_FILE = "defaults.env"


def env_dir() -> Path:
    """Where the env files live: env/ of the repository, or DEPLOY_ENV_DIR."""
    return Path(os.environ.get("DEPLOY_ENV_DIR") or ROOT / "env")


def work_dir() -> Path:
    """Root of what runs leave behind (deploy/log, keys, state, tmp): the repository, or DEPLOY_WORK_DIR."""
    return Path(os.environ.get("DEPLOY_WORK_DIR") or ROOT)


FALLBACK_ENV = "staging"

# "elb-" + APP_NAME-ENV must fit the 32-character load balancer / target group limit.
MAX_STACK_NAME = 28
MAX_ENV_NAME = MAX_STACK_NAME - 2  # with the shortest APP_NAME, one character, and its hyphen

# The documented way to run an environment in a region other than its env file's (see shell_region).
REGION_OVERRIDE = "DEPLOY_REGION_OVERRIDE"


@dataclass(frozen=True)
class Config:
    """The validated settings of one environment: one typed field per key of SETTINGS (lower case)."""

    env: str
    app_name: str
    aws_account_id: str | None
    domain: str
    hosted_zone_id: str | None
    aws_region: str
    aws_endpoint_url: str | None
    local_cloud: bool
    instance_type: str
    min_capacity: int
    max_capacity: int
    desired_capacity: int
    source_ami: str
    source_ami_owner: str
    health_check_path: str
    load_balancer: str
    certificate_arn: str | None
    health_timeout: int
    poll_seconds: int
    ssh_cidr: str | None
    vpc_id: str | None
    subnet_ids: tuple[str, ...] | None
    lb_subnet_ids: tuple[str, ...] | None
    bake_subnet_id: str | None
    app_dir: str
    build_command: str
    app_files: tuple[str, ...]
    start_command: str
    app_port: int
    primal_packages: tuple[str, ...] | None
    primal_script: str | None
    carnivore_script: str | None
    local_time_scale: float
    primal_id: str | None
    image_id: str | None
    cleanup: bool
    packer_timeout: int
    build_timeout: int
    log_runs: int
    retain_images: int
    bake_ssh_cidr: str | None
    primal_retain: int
    traffic_steps: tuple[int, ...]
    step_seconds: int
    max_error_rate: float
    max_latency_ms: int | None
    min_requests: int
    alarm_names: tuple[str, ...] | None
    keep_previous_seconds: int
    fail_rate: float | None
    delay_ms: int | None
    # Where each key's value came from ("env/dev01.env", "the environment variable"), for messages.
    sources: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def region(self) -> str:
        return self.aws_region

    @property
    def endpoint_url(self) -> str | None:
        return self.aws_endpoint_url

    def aws_seconds(self, seconds: float) -> float:
        """A duration AWS takes, as this cloud runs it: an emulator (AWS_ENDPOINT_URL, the embedded cloud's or
        another) models AWS's durations LOCAL_TIME_SCALE times faster."""
        return seconds * self.local_time_scale if self.endpoint_url else seconds

    def value(self, key: str) -> object:
        """The value of setting KEY by its env-file name (for app.env and messages, where the key is data)."""
        return getattr(self, key.lower())

    def source_of(self, key: str) -> str:
        """Where KEY was set, for a message that says what to fix."""
        return self.sources.get(key, f"env/{self.env}.env")


def app_folder(config: Config) -> Path:
    """APP_DIR as a folder (relative to the repository root), which must exist."""
    folder = ROOT / config.app_dir
    if not folder.is_dir():
        raise ConfigError(f"APP_DIR {folder} does not exist: fix APP_DIR in {config.source_of('APP_DIR')}.")
    return folder


def default_env_name(environ: Mapping[str, str] | None = None) -> str:
    """DEPLOY_ENV, then NODE_ENV (the original scripts' variable), then staging."""
    environ = os.environ if environ is None else environ
    return environ.get("DEPLOY_ENV") or environ.get("NODE_ENV") or FALLBACK_ENV


def available_envs(folder: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (folder or env_dir()).glob("*.env") if p.name != DEFAULTS_FILE)


def _read_env_file(path: Path, warnings: list[str] | None = None) -> dict[str, str | None]:
    """The file's KEY=value pairs. A BOM is refused by name; a key set twice is warned about (WARNINGS), with
    both lines (the later one wins)."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error}).") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(
            f"{path} starts with a byte order mark (BOM, bytes EF BB BF): save it as UTF-8 without a BOM."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: cannot be read ({error}).") from None
    seen: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        matched = re.match(r"^(export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", stripped)
        if not matched:
            raise ConfigError(f"{path}, line {number}: expected KEY=value, found {stripped[:60]!r}.")
        key = matched.group(2)
        _check_quotes(path, number, key, stripped[matched.end() :].lstrip())
        if key in seen and warnings is not None:
            warnings.append(
                f"{path.name}: {key} is set twice, on line {seen[key]} and line {number}; line {number} wins"
            )
        seen[key] = number
    return dict(dotenv_values(path, interpolate=False))


def _check_quotes(path: Path, number: int, key: str, value: str) -> None:
    """A value that opens a quote must close it on its line: dotenv would read on into the next lines."""
    if not value or value[0] not in "'\"":
        return
    quote, rest = value[0], value[1:]
    closed = re.search(r'(?<!\\)(?:\\\\)*"', rest) if quote == '"' else re.search("'", rest)
    if closed is None:
        raise ConfigError(
            f"{path}, line {number}: the value of {key} opens a quote ({quote}) that is not closed on that line:"
            f" close it, or remove it."
        )


# Characters no value may hold: they would start a new line (or end a string) in a file the tool writes.
LINE_BREAKS = {"\n": "a line break (LF)", "\r": "a carriage return (CR)", "\0": "a NUL character"}


def control_character(value: str) -> str | None:
    """The name of the first control or line-separator character of VALUE, or None."""
    for char in value:
        if char in LINE_BREAKS:
            return LINE_BREAKS[char]
        if unicodedata.category(char) == "Cc":
            return f"the control character U+{ord(char):04X}"
        if unicodedata.category(char) in ("Zl", "Zp"):
            return f"the line separator U+{ord(char):04X}"
    return None


def _check_characters(raw: Mapping[str, str], sources: Mapping[str, str], default: str) -> None:
    for key, value in raw.items():
        found = control_character(value)
        if found:
            raise ConfigError(
                f"{sources.get(key, default)}: {key} holds {found}; a value must be one line of printable text."
            )


def _line_of(path: Path, key: str) -> int | None:
    """The last line of PATH that sets KEY (the one that wins)."""
    found = None
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if re.match(rf"^\s*(export\s+)?{re.escape(key)}\s*=", line):
            found = number
    return found


def command_config(env: str | None = None) -> Config:
    """The configuration of ENV for this command line: loaded (and validated) once, however many of its tasks and
    steps ask for it (the invocation keeps it: deploy/invocation.py)."""
    name = env or default_env_name(os.environ)
    with current_invocation() as opened:
        return opened.open(("config", name), lambda: load_config(name), lambda _: None)


def load_config(
    env: str | None = None,
    folder: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read and validate the settings of one environment; raise ConfigError naming the file and key."""
    environ = os.environ if environ is None else environ
    folder = folder or env_dir()
    env = env or default_env_name(environ)
    if not NAME_PART.fullmatch(env):
        raise ConfigError(f"Environment name {env!r} may hold only letters, digits and inner hyphens.")
    if len(env) > MAX_ENV_NAME:  # checked before it names a file: the system refuses long file names
        raise ConfigError(
            f"Environment name {env[:40]!r}{'…' if len(env) > 40 else ''} has {len(env)} characters; at most"
            f" {MAX_ENV_NAME} fit, since APP_NAME-ENV may have at most {MAX_STACK_NAME} (AWS's 32-character load"
            " balancer names). Use a shorter environment name."
        )
    env_file = folder / f"{env}.env"
    if not env_file.is_file():
        known = ", ".join(available_envs(folder)) or "none"
        raise ConfigError(f"Unknown environment {env!r}: there is no {env_file}. Environments in {folder}: {known}.")

    raw: dict[str, str] = {}
    sources: dict[str, str] = {}
    warnings: list[str] = []
    for path in (folder / DEFAULTS_FILE, env_file):
        if not path.is_file():
            continue
        for key, value in _read_env_file(path, warnings).items():
            if key not in SETTINGS_BY_KEY:
                close = difflib.get_close_matches(key, SETTINGS_BY_KEY, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                warnings.append(f"{path.name}: {key} is not a setting this tool reads{hint}")
                continue
            raw[key] = (value or "").strip()
            shown = str(path.relative_to(folder.parent) if path.is_relative_to(folder.parent) else path)
            line = _line_of(path, key)
            sources[key] = f"{shown}, line {line}" if line else shown
    _check_characters(raw, sources, env_file.name)
    file_region = (raw.get("AWS_REGION", ""), sources.get("AWS_REGION", ""))
    for key in SETTINGS_BY_KEY:
        if key in environ:
            raw[key] = environ[key].strip()
            sources[key] = f"the environment variable {key}"
    _check_characters({key: raw[key] for key in SETTINGS_BY_KEY if key in environ}, sources, env_file.name)
    region = shell_region(file_region, environ)
    if region is not None:
        raw["AWS_REGION"], sources["AWS_REGION"] = region, REGION_OVERRIDE

    values: dict[str, object] = {}
    for setting in SETTINGS:
        where = sources.get(setting.key, env_file.name)
        value = raw.get(setting.key, "")
        if value == "":
            if setting.required:
                raise ConfigError(f"{where}: {setting.key} is missing or empty. {setting.help}")
            values[setting.key] = None
            continue
        try:
            values[setting.key] = setting.parse(value)
        except ValueError as error:
            raise ConfigError(f"{where}: {setting.key}={value!r} {error}.") from None

    fields = {key.lower(): value for key, value in values.items()}
    # One parser per key (deploy/settings.py) made each value of its field's type; mypy cannot see that.
    if fields.get("ssh_cidr") in ("0.0.0.0/0", "::/0"):
        warnings.append(
            f"{sources.get('SSH_CIDR')}: SSH_CIDR={fields['ssh_cidr']} opens port 22 of every instance to the whole"
            " internet; prefer your own address (/32)"
        )
    config = Config(env=env, sources=sources, warnings=tuple(warnings), **fields)  # type: ignore[arg-type]
    _check_relations(config)
    return config


def shell_region(file_region: tuple[str, str], environ: Mapping[str, str]) -> str | None:
    """The region is part of the environment: a shell's AWS_REGION / AWS_DEFAULT_REGION that differs from the
    env files' AWS_REGION is refused before any AWS call (a stray region builds a second stack and repoints the
    live record at it), unless REGION_OVERRIDE names that region. Returns the overriding region, or None.
    """
    region, source = file_region
    if not region:
        return None  # no env file sets it: the shell's AWS_REGION is the setting
    stray = {key: environ[key].strip() for key in ("AWS_REGION", "AWS_DEFAULT_REGION") if environ.get(key, "").strip()}
    differing = {key: value for key, value in stray.items() if value != region}
    if not differing:
        return None
    override = environ.get(REGION_OVERRIDE, "").strip()
    if override and set(differing.values()) == {override}:
        return override
    said = ", ".join(f"{key}={value}" for key, value in differing.items())
    wanted = next(iter(differing.values()))
    raise ConfigError(
        f"The shell sets {said}, but {source} sets AWS_REGION={region}: refused before any AWS call, since a"
        f" region other than the environment's would build a second stack and repoint its DNS record. Unset"
        f" {' and '.join(differing)}, change AWS_REGION in {source}, or set {REGION_OVERRIDE}={wanted} to use"
        f" {wanted} on purpose."
    )


def _check_relations(config: Config) -> None:
    """What no single key can check: capacities in order, name lengths, the certificate, the endpoint."""
    where = config.source_of
    low, desired, high = config.min_capacity, config.desired_capacity, config.max_capacity
    if not (low <= desired <= high):
        raise ConfigError(
            f"{where('DESIRED_CAPACITY')}: capacities must satisfy MIN_CAPACITY <= DESIRED_CAPACITY <= MAX_CAPACITY;"
            f" found {low} <= {desired} <= {high}."
        )
    stack = f"{config.app_name}-{config.env}"
    if len(stack) > MAX_STACK_NAME:
        room = MAX_STACK_NAME - len(config.app_name) - 1
        raise ConfigError(
            f"APP_NAME-ENV ({stack!r}) has {len(stack)} characters; at most {MAX_STACK_NAME} fit AWS's 32-character"
            f" load balancer names. The environment name {config.env!r} has {len(config.env)} characters; with"
            f" APP_NAME={config.app_name} ({where('APP_NAME')}) at most {max(room, 0)} fit: use a shorter environment"
            " name, or shorten APP_NAME."
        )
    certificate = config.certificate_arn
    if certificate and config.load_balancer != "application":
        raise ConfigError(
            f"{where('CERTIFICATE_ARN')}: CERTIFICATE_ARN needs LOAD_BALANCER=application (an HTTPS listener);"
            f" LOAD_BALANCER is {config.load_balancer}."
        )
    if certificate and certificate.split(":")[3] != config.region:
        raise ConfigError(
            f"{where('CERTIFICATE_ARN')}: the certificate is in {certificate.split(':')[3]}, but a load balancer"
            f" can only use an ACM certificate of its own region, AWS_REGION={config.region}."
        )
    if config.traffic_steps != (100,) and config.load_balancer != "application":
        steps = ",".join(str(step) for step in config.traffic_steps)
        raise ConfigError(
            f"{where('TRAFFIC_STEPS')}: TRAFFIC_STEPS={steps} needs LOAD_BALANCER=application (weighted target"
            f" groups); a {config.load_balancer} load balancer has no weights. Set TRAFFIC_STEPS=100, or use the"
            " application kind."
        )
    if config.local_cloud and not config.endpoint_url:
        raise ConfigError(f"{where('LOCAL_CLOUD')}: LOCAL_CLOUD is true but AWS_ENDPOINT_URL is empty.")
    if config.local_cloud:
        endpoint = urlparse(str(config.endpoint_url))
        host = endpoint.hostname or ""
        if host in ("127.0.0.1", "localhost") and endpoint.port is None:
            raise ConfigError(
                f"{where('AWS_ENDPOINT_URL')}: AWS_ENDPOINT_URL needs a port for the embedded cloud,"
                " such as http://127.0.0.1:5055."
            )
        if host not in ("127.0.0.1", "localhost"):
            raise ConfigError(
                f"{where('AWS_ENDPOINT_URL')}: AWS_ENDPOINT_URL must be http://127.0.0.1:PORT when LOCAL_CLOUD is"
                f" true (the embedded cloud listens on 127.0.0.1 only); found host {host!r}."
            )


def print_warnings(config: Config, stream: TextIO = sys.stderr) -> None:
    for warning in config.warnings:
        print(f"warning: {warning}", file=stream)
