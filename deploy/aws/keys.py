"""The environment's ssh key: the private key in deploy/keys (mode 0600, never in git or logs) and its
EC2 key pair."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from deploy.aws.clients import or_none
from deploy.aws.context import AwsContext
from deploy.aws.converge import Changes
from deploy.config import work_dir
from deploy.errors import DeployError
from deploy.naming import tag_list


def key_path(env: str) -> Path:
    return work_dir() / "deploy" / "keys" / env


def ensure_local_key(path: Path, dry_run: bool = False) -> list[str]:
    """An ed25519 key at PATH with mode 0600, generated with ssh-keygen unless present."""
    changes = Changes(dry_run)
    if not path.is_file():
        changes.make(f"generated ssh key {path}", lambda: _generate_key(path))
    elif stat.S_IMODE(path.stat().st_mode) != 0o600:
        changes.make(f"set {path} to mode 0600", lambda: path.chmod(0o600))
    return list(changes)


def _generate_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    try:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        raise DeployError("ssh-keygen is missing: install it with `apt-get install openssh-client`.") from None
    except subprocess.CalledProcessError as error:
        raise DeployError(f"ssh-keygen failed: {error.stderr.strip()}") from None
    os.chmod(path, 0o600)


def public_key_of(path: Path) -> bytes:
    """The public half of the key at PATH: its .pub file, or derived from the private key when that is gone."""
    public = path.with_suffix(".pub")
    if public.is_file():
        return public.read_bytes()
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, timeout=30)
    if derived.returncode != 0:
        raise DeployError(f"Cannot read the ssh key {path}: {derived.stderr.decode(errors='replace').strip()}")
    public.write_bytes(derived.stdout)
    return derived.stdout


def describe_key_pair(environment: AwsContext) -> dict[str, Any] | None:
    found = or_none(lambda: environment.aws.ec2.describe_key_pairs(KeyNames=[environment.names.key_pair]))
    return found["KeyPairs"][0] if found and found["KeyPairs"] else None


def ensure_key_pair(environment: AwsContext, dry_run: bool = False) -> list[str]:
    ec2 = environment.aws.ec2
    name = environment.names.key_pair
    path = key_path(environment.env)
    in_aws = describe_key_pair(environment) is not None
    if in_aws and not path.is_file():
        # Never replace a key silently: instances launched with it would become unreachable.
        environment.say(
            f"warning: key pair {name} exists in AWS but its private key {path} is missing here;"
            f" ssh to the instances will not work from this machine. To replace it, delete the key pair"
            f" ({name}) in AWS and run setup again."
        )
        return []
    local = ensure_local_key(path, dry_run)
    changes = Changes(dry_run)
    if not in_aws:
        changes.make(
            f"imported key pair {name}",
            lambda: ec2.import_key_pair(
                KeyName=name,
                PublicKeyMaterial=public_key_of(path),
                TagSpecifications=[{"ResourceType": "key-pair", "Tags": tag_list(environment.names.tags())}],
            ),
        )
    return local + changes
