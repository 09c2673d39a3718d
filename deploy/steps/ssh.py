"""`inv ssh`: a shell on an instance of the serving group, with the environment's key from deploy/keys.

The command is built by a pure function (`ssh_command`) from the instance chosen by another
(`pick_instance`), so both are tested without AWS. The embedded cloud's instances are not machines
with an ssh server: there, the command can be printed but there is no host to reach.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

from invoke.exceptions import Exit

from deploy.aws.groups import environment_groups
from deploy.aws.instances import describe_instances
from deploy.aws.keys import key_path
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.groups import serving_group

SSH_USER = "admin"  # the login user of Debian's images (packer/*.json ssh_username)


def ssh_command(key: Path | str, address: str, user: str = SSH_USER) -> list[str]:
    """Pure: `ssh -i KEY -o IdentitiesOnly=yes USER@ADDRESS` (only the environment's key is offered)."""
    return ["ssh", "-i", str(key), "-o", "IdentitiesOnly=yes", f"{user}@{address}"]


def is_healthy(instance: dict[str, Any]) -> bool:
    return (
        instance.get("lifecycle") == "InService"
        and instance.get("health") == "Healthy"
        and instance.get("state") == "running"
        and instance.get("load_balancer") == "InService"
    )


def pick_instance(instances: list[dict[str, Any]], wanted: str | None = None) -> dict[str, Any]:
    """Pure: the instance WANTED (it must be one of INSTANCES), else the first healthy one by id."""
    ordered = sorted(instances, key=lambda instance: instance["id"])
    if wanted:
        for instance in ordered:
            if instance["id"] == wanted:
                return instance
        known = ", ".join(i["id"] for i in ordered) or "none"
        raise DeployError(f"{wanted} is not an instance of the serving group (its instances: {known}).")
    for instance in ordered:
        if is_healthy(instance):
            return instance
    known = ", ".join(f"{i['id']} ({i.get('lifecycle')}, {i.get('state')})" for i in ordered) or "none"
    raise DeployError(f"No healthy instance in the serving group; choose one with --instance: {known}.")


def serving_instances(environment: Environment) -> tuple[str, list[dict[str, Any]]]:
    """The serving group's name and its instances: lifecycle, health, EC2 state, load balancer state, addresses."""
    serving = serving_group(environment_groups(environment))
    if serving is None:
        raise DeployError(f"{environment.names.stack} has no serving group: run `inv deploy --env {environment.env}`.")
    members = serving.raw.get("Instances", [])
    ids = [i["InstanceId"] for i in members]
    described = describe_instances(environment, ids)
    try:
        lb_states = environment.load_balancer.serving_states(ids, serving.name)
    except DeployError:
        lb_states = {}
    instances = [
        {
            "id": member["InstanceId"],
            "lifecycle": member.get("LifecycleState"),
            "health": member.get("HealthStatus"),
            "state": described.get(member["InstanceId"], {}).get("State", {}).get("Name"),
            "load_balancer": lb_states.get(member["InstanceId"]),
            "public_ip": described.get(member["InstanceId"], {}).get("PublicIpAddress"),
            "private_ip": described.get(member["InstanceId"], {}).get("PrivateIpAddress"),
        }
        for member in members
    ]
    return serving.name, instances


def _display_path(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return relative if not relative.startswith("..") else str(path)


def build_command(environment: Environment, instance_id: str | None = None) -> list[str]:
    """The ssh command for an instance of the serving group; warnings about the key or port 22 are said."""
    group, instances = serving_instances(environment)
    instance = pick_instance(instances, instance_id)
    address = instance["public_ip"]
    if not address:
        address = instance["private_ip"]
        environment.say(f"  note: {instance['id']} has no public address; using its private one, {address}")
    if not address:
        raise DeployError(f"{instance['id']} has no IP address (state {instance.get('state')}).")
    key = key_path(environment.env)
    if not key.is_file():
        environment.say(f"  warning: the key {key} is missing here: run `inv setup --env {environment.env}`")
    if not environment.config.ssh_cidr:
        environment.say("  warning: SSH_CIDR is empty, so port 22 is closed: set it and run `inv setup`")
    environment.say(f"  {instance['id']} of {group} ({instance.get('lifecycle')}, {instance.get('state')})")
    return ssh_command(_display_path(key), address)


def no_host_reason(environment: Environment) -> str | None:
    """Why there is no machine to ssh into (the embedded cloud, any other endpoint than AWS's), or None."""
    config = environment.config
    if config.local_cloud or config.endpoint_url:
        return (
            f"the embedded cloud ({config.endpoint_url}) has no host to reach: its instances are not machines"
            " with an ssh server"
        )
    return None


def run_ssh(environment: Environment, instance_id: str | None, print_only: bool, out: Any) -> list[str]:
    """`inv ssh`: print the command (--print), or run it; on the embedded cloud, say there is no host."""
    command = build_command(environment, instance_id)
    text = shlex.join(command)
    reason = no_host_reason(environment)
    if print_only:
        if reason:
            environment.say(f"  note: {reason}")
        print(text, file=out, flush=True)
        return command
    if reason:
        raise DeployError(f"Cannot ssh: {reason}. The command would be: {text}")
    environment.say(f"  $ {text}")
    try:
        result = subprocess.run(command, check=False)
    except FileNotFoundError:
        raise DeployError("ssh is missing: install it with `apt-get install openssh-client`.") from None
    if result.returncode != 0:
        raise Exit(code=result.returncode)
    return command
