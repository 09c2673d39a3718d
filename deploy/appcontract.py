"""The app contract: what any app gets, on AWS and on the embedded cloud, and what a bake needs to know of it.

An app is a folder (APP_FILES staged by copy-over, plus app.env) and START_COMMAND, run in the installed
folder with PORT=APP_PORT, HEALTH_CHECK_PATH and app.env's settings. The primal image gets PRIMAL_PACKAGES;
the environment's own PRIMAL_SCRIPT / CARNIVORE_SCRIPT run after the tool's provisioning and are checked with
shellcheck, like the tool's own scripts, before anything is baked.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from deploy.config import Config
from deploy.errors import DeployError
from deploy.settings import ROOT

NO_USER_SCRIPT = ROOT / "packer" / "scripts" / "no-user-script.sh"
SHELLCHECK_TIMEOUT_S = 60
SCRIPT_KEYS = {"primal": "PRIMAL_SCRIPT", "carnivore": "CARNIVORE_SCRIPT"}


def user_script(config: Config, role: str) -> Path | None:
    """The environment's own script for ROLE (primal or carnivore), or None."""
    value = config.value(SCRIPT_KEYS[role])
    return (ROOT / str(value)).resolve() if value else None


def check_user_script(config: Config, role: str, say: Callable[[str], None] = print) -> None:
    """shellcheck the environment's script for ROLE before a bake: a finding is refused, naming the script."""
    script = user_script(config, role)
    if script is None:
        return
    key = SCRIPT_KEYS[role]
    if not script.is_file():
        raise DeployError(f"{key} {script} does not exist: fix it in {config.source_of(key)}.")
    if shutil.which("shellcheck") is None:
        say(f"  warning: shellcheck is not installed; {key} {script} is baked unchecked (apt-get install shellcheck)")
        return
    result = subprocess.run(
        ["shellcheck", "-x", str(script)], capture_output=True, text=True, timeout=SHELLCHECK_TIMEOUT_S
    )
    if result.returncode != 0:
        findings = (result.stdout + result.stderr).strip()
        raise DeployError(f"{key} {script} does not pass shellcheck; fix it before baking:\n{findings}")


def packer_variables(config: Config, role: str) -> dict[str, str]:
    """The variables of packer/ROLE.json that the app contract fills in (every value a string)."""
    script = str(user_script(config, role) or NO_USER_SCRIPT)
    if role == "primal":
        return {"primal_packages": " ".join(config.primal_packages or ()), "primal_script": script}
    return {"start_command": config.start_command, "app_port": str(config.app_port), "carnivore_script": script}


def local_app_tags(config: Config, role: str, variables: dict[str, str]) -> dict[str, str]:
    """What an image baked on an emulator carries for the embedded cloud to run (deploy/localcloud/apps.py): the
    staged folder, START_COMMAND and APP_PORT, byte for byte."""
    if role != "carnivore":
        return {}
    folder, start, port = variables["app_dir"], config.start_command, str(config.app_port)
    return {"LocalAppDir": folder, "LocalAppStart": start, "LocalAppPort": port}


def bake_inputs(config: Config, role: str) -> dict[str, str]:
    """What, besides the template and the source image, makes an image of ROLE differ: a recorded image baked
    from other inputs is not reused."""
    digest = hashlib.sha256()
    for name, value in sorted(packer_variables(config, role).items()):
        digest.update(f"{name}={value}\0".encode())
    script = user_script(config, role)
    if script is not None and script.is_file():
        digest.update(script.read_bytes())
    return {"contract": digest.hexdigest()}
