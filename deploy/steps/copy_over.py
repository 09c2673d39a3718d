"""`inv copy-over`: stage exactly what the server needs (APP_FILES and the environment's settings), fresh."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from deploy.config import app_folder, control_character
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.stages import Made, Request, Staged, Staging
from deploy.steps.staging import hold_app_folder, release_app_folder, remove_older_stagings, staging_dir, staging_root

# What the server reads at start: never secrets, only what the app needs to know about its environment.
APP_SETTINGS = ("APP_NAME", "DOMAIN", "HEALTH_CHECK_PATH")
# The example app's faults (a bad release on purpose), staged only when set: without them app.env, and so the
# image a bake would reuse, is what it was.
FAULT_SETTINGS = ("FAIL_RATE", "DELAY_MS")


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


def app_env_text(settings: list[tuple[str, str]]) -> str:
    """app.env: one KEY=value line per setting. A value holding a line break or any other control character is
    refused (the configuration refuses them at load; this is the writer's own guarantee): no value can ever start a
    line of its own."""
    for key, value in settings:
        found = control_character(value)
        if found:
            raise DeployError(f"{key} holds {found}: refused, it would add a line to app.env.")
    return "".join(f"{key}={value}\n" for key, value in settings)


def decide_staging(environment: Environment, request: Request, made: Made) -> Staging:
    """APP_FILES into this run's own folder, tmp/appserver/ENV/RUN (a dry run's plan names it RUN: the next run's
    log folder name is not known yet)."""
    folder = staging_root(environment.env) / "RUN" if made.planned else staging_dir(environment)
    return Staging(files=tuple(environment.config.app_files), folder=folder)


def act_staging(environment: Environment, decision: Staging, made: Made) -> Made:
    return made.with_(staged=copy_over(environment, decision))


def copy_over(environment: Environment, decision: Staging | None = None) -> Staged:
    """Stage APP_FILES (relative to APP_DIR) plus the environment's settings into this run's own folder,
    tmp/appserver/ENV/RUN, holding the app folder (taken by build-app) until its files are copied; what it staged."""
    decision = decision or decide_staging(environment, Request(), Made())
    source = app_folder(environment.config)
    config = environment.config
    settings = [("ENV", environment.env)] + [(key, str(config.value(key))) for key in APP_SETTINGS]
    settings += [(key, str(value)) for key in FAULT_SETTINGS if (value := config.value(key)) is not None]
    app_env = app_env_text(settings)  # refused before anything is staged
    patterns = decision.files
    hold_app_folder(environment, source, environment.config.build_timeout)  # held since build-app, or taken now
    try:
        files = matching_files(source, patterns)
        if not files:
            raise DeployError(
                f"APP_FILES ({', '.join(patterns)}) matched nothing in {source}: did the build run and write them?"
            )
        target = decision.folder
        if "{{" in str(target):  # handed to Packer, which would evaluate it as a template (deploy/packer_inputs.py)
            raise DeployError(
                f"The staging folder {target} holds '{{{{', which Packer would evaluate: set DEPLOY_WORK_DIR (or move"
                " the checkout) to a path without it."
            )
        remove_older_stagings(environment)
        shutil.rmtree(target, ignore_errors=True)
        for relative, path in files.items():
            destination = target / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)
    finally:
        release_app_folder(environment, source)
    (target / "app.env").write_text(app_env, encoding="utf-8")
    digest = tree_digest(target)
    environment.say(f"  staged {len(files)} files and app.env into {target} (digest {digest[:12]})")
    return Staged(folder=target, digest=digest)
