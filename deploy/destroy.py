"""`inv destroy`: remove everything an environment owns, and nothing else.

Three parts: `describe_for_destroy` reads what exists; `plan_destroy` (pure) decides, from names and
tags, what is this environment's and in which order it goes; `execute` carries the plan out. The
order makes each deletion possible on AWS: the DNS record first (the site stops resolving to the
load balancer), then the groups (detached, force-deleted with their instances, awaited), their launch
templates and configurations, the load balancer, the images this tool baked and their snapshots, the
security groups (retried while the load balancer's network interfaces linger), the key pair, and
last the local key and state files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from invoke.exceptions import Exit

from deploy.aws.clients import collect, error_code
from deploy.cleanup import launch_configurations, launch_templates
from deploy.config import load_config
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.groups import describe_group, environment_groups
from deploy.health import Waiter
from deploy.images import images_used_elsewhere, snapshot_ids
from deploy.naming import MANAGED_BY
from deploy.setup import key_path
from deploy.status import environment_images, host_record, load_balancer_summary

GROUP_DELETE_TIMEOUT_S = 900  # instances terminate within minutes
SECURITY_GROUP_TIMEOUT_S = 600  # a deleted load balancer's network interfaces linger for minutes on AWS
PROTECTED_ENV = "production"


@dataclass(frozen=True)
class Action:
    """One step of a destroy: OP on TARGET (`keep` entries only explain what is left alone, and why)."""

    op: str
    target: str
    detail: str = ""
    data: tuple[tuple[str, Any], ...] = ()

    def line(self) -> str:
        verb = {
            "delete-record": "delete DNS record",
            "delete-group": "delete group",
            "delete-launch-template": "delete launch template",
            "delete-launch-configuration": "delete launch configuration",
            "delete-load-balancer": "delete load balancer",
            "delete-image": "deregister image",
            "delete-security-group": "delete security group",
            "delete-key-pair": "delete key pair",
            "delete-file": "delete local file",
            "keep": "keep",
        }[self.op]
        return f"{verb} {self.target}" + (f" ({self.detail})" if self.detail else "")

    def get(self, key: str) -> Any:
        return dict(self.data).get(key)


def _tags(items: list[dict[str, Any]] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in items or []}


def _belongs(tags: dict[str, str], app: str, env: str) -> bool:
    """Tags do not say the resource is another app's or environment's (legacy resources carry none)."""
    return tags.get("App", app) == app and tags.get("Env", env) == env


def _alias_of_balancer(alias: str | None, balancer: dict[str, Any]) -> bool:
    """Whether an ALIAS target is this environment's load balancer (by its DNS name, or its name when gone)."""
    if not alias:
        return False
    target = alias.lower().rstrip(".").removeprefix("dualstack.")
    if balancer.get("dns_name"):
        return target == str(balancer["dns_name"]).lower().rstrip(".").removeprefix("dualstack.")
    return target.startswith(f"{str(balancer['name']).lower()}-")


def describe_for_destroy(environment: Environment) -> dict[str, Any]:
    """Read everything destroy decides about (reads only; a dry run runs exactly this)."""
    names = environment.names
    ec2 = environment.aws.ec2
    balancer = environment.load_balancer
    refuse_kind_switch = getattr(balancer, "refuse_kind_switch", None)
    if refuse_kind_switch is not None:
        # A load balancer of the other kind would keep the security groups in use: say how to proceed.
        refuse_kind_switch()
    host = host_record(environment)
    record = None
    if host.get("record") is not None:
        found = environment.aws.route53.list_resource_record_sets(
            HostedZoneId=host["zone_id"], StartRecordName=host["name"], StartRecordType="A", MaxItems="1"
        )["ResourceRecordSets"]
        record = found[0] if found else None
    groups = [
        {"name": group.name, "tags": dict(group.tags), "instances": list(group.instance_ids)}
        for group in environment_groups(environment)
    ]
    images = [
        {
            "id": image["ImageId"],
            "name": image.get("Name"),
            "tags": _tags(image.get("Tags")),
            "snapshots": snapshot_ids(image),
        }
        for image in environment_images(environment)
    ]
    # Any VPC: the environment's groups stay its own even if VPC_ID changed since setup.
    wanted = [names.instance_security_group, names.lb_security_group]
    security_groups = [
        {"id": group["GroupId"], "name": group["GroupName"], "tags": _tags(group.get("Tags"))}
        for group in collect(
            ec2, "describe_security_groups", "SecurityGroups", Filters=[{"Name": "group-name", "Values": wanted}]
        )
        if group["GroupName"] in wanted
    ]
    try:
        pairs = ec2.describe_key_pairs(KeyNames=[names.key_pair])["KeyPairs"]
    except ClientError as error:
        if error_code(error) != "InvalidKeyPair.NotFound":
            raise
        pairs = []
    key_file = key_path(environment.env)
    files = [key_file, key_file.with_suffix(".pub"), environment.state.path]
    return {
        "app": names.app,
        "env": environment.env,
        "host": host["name"],
        "zone_id": host.get("zone_id"),
        "record": record,
        "load_balancer": load_balancer_summary(environment),
        "groups": groups,
        "launch_templates": launch_templates(environment),
        "launch_configurations": [c["LaunchConfigurationName"] for c in launch_configurations(environment)],
        "images": images,
        "images_used_elsewhere": sorted(images_used_elsewhere(environment, [i["id"] for i in images])),
        "security_groups": security_groups,
        "key_pair": {"name": pairs[0]["KeyName"], "tags": _tags(pairs[0].get("Tags"))} if pairs else None,
        "files": [str(path) for path in files if path.exists()],
    }


def plan_destroy(described: dict[str, Any]) -> list[Action]:
    """Pure: what destroy deletes, in order, and what it keeps (and why), from DESCRIBED state."""
    app, env = described["app"], described["env"]
    actions: list[Action] = []
    balancer = described["load_balancer"]

    record = described.get("record")
    if record is not None:
        alias = (record.get("AliasTarget") or {}).get("DNSName")
        if _alias_of_balancer(alias, balancer):
            actions.append(
                Action(
                    "delete-record",
                    described["host"],
                    f"ALIAS A → {alias.rstrip('.')}",
                    (("zone_id", described["zone_id"]), ("record", record)),
                )
            )
        else:
            actions.append(
                Action(
                    "keep", f"DNS record {described['host']}", "it does not point at this environment's load balancer"
                )
            )

    for group in described["groups"]:
        if _belongs(group["tags"], app, env):
            actions.append(Action("delete-group", group["name"], f"{len(group['instances'])} instances, force-deleted"))
        else:
            actions.append(Action("keep", f"group {group['name']}", "its tags name another app or environment"))
    actions += [Action("delete-launch-template", name) for name in described["launch_templates"]]
    actions += [Action("delete-launch-configuration", name) for name in described["launch_configurations"]]

    if balancer["exists"]:
        actions.append(Action("delete-load-balancer", balancer["name"], balancer.get("kind", "")))

    elsewhere = set(described.get("images_used_elsewhere", []))
    for image in described["images"]:
        tags = image["tags"]
        if tags.get("ManagedBy") != MANAGED_BY or (tags.get("App"), tags.get("Env")) != (app, env):
            actions.append(Action("keep", f"image {image['id']}", "not baked by this tool for this environment"))
        elif image["id"] in elsewhere:
            actions.append(Action("keep", f"image {image['id']}", "another environment uses it"))
        else:
            snapshots = tuple(image["snapshots"])
            detail = f"{tags.get('Role', 'image')}, {len(snapshots)} snapshot(s)"
            actions.append(Action("delete-image", image["id"], detail, (("snapshots", snapshots),)))

    # The instances' group first: its rules name the load balancer's group.
    for group in sorted(described["security_groups"], key=lambda g: not g["name"].endswith("-web")):
        if _belongs(group["tags"], app, env):
            actions.append(Action("delete-security-group", group["name"], group["id"], (("id", group["id"]),)))
        else:
            actions.append(
                Action("keep", f"security group {group['name']}", "its tags name another app or environment")
            )

    pair = described.get("key_pair")
    if pair is not None:
        if _belongs(pair["tags"], app, env):
            actions.append(Action("delete-key-pair", pair["name"]))
        else:
            actions.append(Action("keep", f"key pair {pair['name']}", "its tags name another app or environment"))
    actions += [Action("delete-file", path) for path in described["files"]]
    return actions


def describe_plan(actions: list[Action]) -> list[str]:
    deletions = [a for a in actions if a.op != "keep"]
    kept = [a for a in actions if a.op == "keep"]
    lines = [f"{number:2d}. {action.line()}" for number, action in enumerate(deletions, start=1)]
    lines += [f"    {action.line()}" for action in kept]
    return lines or ["nothing to destroy"]


# --- carrying it out ------------------------------------------------------------------------------


def _wait(environment: Environment, timeout_s: float, check: Callable[[], tuple[bool, str]], what: str) -> None:
    """Bounded; a reading per poll (a live line on a terminal) while it is not done yet."""
    poll = float(environment.config.poll_seconds)  # type: ignore[arg-type]
    shown = False

    def progress(status: str) -> None:
        nonlocal shown
        if status and not status.startswith("done"):
            environment.log.progress(f"  {status}")
            shown = True

    try:
        done, status = Waiter(timeout_s, poll).until(check, progress)
    finally:
        if shown:
            environment.log.end_progress()
    if not done:
        raise DeployError(f"{what} was not done after {timeout_s:.0f}s ({status}); run `inv destroy` again to finish.")


def _delete_group(environment: Environment, name: str, load_balancer_exists: bool) -> None:
    if load_balancer_exists:
        try:
            environment.load_balancer.detach_group(name)
        except (DeployError, ClientError) as error:
            environment.say(f"  note: could not detach {name} first ({error}); deleting it anyway")
    try:
        environment.aws.autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
    except ClientError as error:
        if "not found" not in str(error).lower() and "ScalingActivityInProgress" not in error_code(error):
            raise

    def gone() -> tuple[bool, str]:
        if describe_group(environment, name, include_deleting=True) is None:
            return True, "done"
        return False, f"waiting: {name} is being deleted (its instances terminate)"

    _wait(environment, GROUP_DELETE_TIMEOUT_S, gone, f"Deleting group {name}")


def _delete_security_group(environment: Environment, group_id: str, name: str) -> None:
    def attempt() -> tuple[bool, str]:
        try:
            environment.aws.ec2.delete_security_group(GroupId=group_id)
        except ClientError as error:
            if error_code(error) == "InvalidGroup.NotFound":
                return True, "done"
            if error_code(error) == "DependencyViolation":
                return False, f"waiting: {name} is still in use (the deleted load balancer's network interfaces linger)"
            raise
        return True, "done"

    _wait(environment, SECURITY_GROUP_TIMEOUT_S, attempt, f"Deleting security group {name}")


def execute(environment: Environment, actions: list[Action]) -> list[str]:
    """Carry out the plan in order; return what was deleted. Safe to run again after a failure."""
    aws = environment.aws
    done: list[str] = []
    balancer_exists = any(a.op == "delete-load-balancer" for a in actions)
    deletions = [a for a in actions if a.op != "keep"]
    for number, action in enumerate(deletions, start=1):
        if action.op == "delete-record":
            aws.route53.change_resource_record_sets(
                HostedZoneId=action.get("zone_id"),
                ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": action.get("record")}]},
            )
        elif action.op == "delete-group":
            _delete_group(environment, action.target, balancer_exists)
        elif action.op == "delete-launch-template":
            try:
                aws.ec2.delete_launch_template(LaunchTemplateName=action.target)
            except ClientError as error:
                if "NotFound" not in error_code(error):
                    raise
        elif action.op == "delete-launch-configuration":
            aws.autoscaling.delete_launch_configuration(LaunchConfigurationName=action.target)
        elif action.op == "delete-load-balancer":
            environment.load_balancer.delete()
        elif action.op == "delete-image":
            aws.ec2.deregister_image(ImageId=action.target)
            for snapshot_id in action.get("snapshots") or ():
                aws.ec2.delete_snapshot(SnapshotId=snapshot_id)
        elif action.op == "delete-security-group":
            _delete_security_group(environment, action.get("id"), action.target)
        elif action.op == "delete-key-pair":
            aws.ec2.delete_key_pair(KeyName=action.target)
        elif action.op == "delete-file":
            Path(action.target).unlink(missing_ok=True)
        environment.say(f"  [{number}/{len(deletions)}] done: {action.line()}")
        done.append(action.line())
    return done


# --- the command ----------------------------------------------------------------------------------


def refusal(env_flag: str | None, env: str, yes: bool, dry_run: bool) -> str | None:
    """Pure: why destroy refuses to run, or None. Production needs --yes and --env production, both."""
    if dry_run or env != PROTECTED_ENV:
        return None
    if not yes or env_flag != PROTECTED_ENV:
        return (
            "Refusing to destroy production: pass both --env production and --yes"
            " (the environment was not named, or not confirmed)."
        )
    return None


def run_destroy(
    environment: Environment,
    yes: bool = False,
    dry_run: bool = False,
    confirm: Callable[[str], str] = input,
) -> list[str]:
    """Describe, plan, show the plan; unless a dry run, confirm (or --yes) and carry it out."""
    actions = plan_destroy(describe_for_destroy(environment))
    heading = "plan (dry run: nothing is deleted)" if dry_run else f"destroying {environment.names.stack}:"
    environment.say(heading)
    for line in describe_plan(actions):
        environment.say(f"  {line}")
    if dry_run or not any(a.op != "keep" for a in actions):
        return []
    if not yes:
        try:
            answer = confirm(f"Type {environment.env} to delete all of this, anything else to cancel: ")
        except EOFError:
            answer = ""
        if answer.strip() != environment.env:
            raise DeployError("Not confirmed: nothing was deleted. (Type the environment name, or pass --yes.)")
    done = execute(environment, actions)
    environment.say(f"  destroyed {environment.names.stack}: {len(done)} deletions")
    return done


def destroy_task(env: str | None, yes: bool, dry_run: bool) -> list[str]:
    """`inv destroy`: refuse an unconfirmed production before anything is opened, then run as a locked step."""
    from deploy.cli import run_step  # late: the cli module builds on every step module

    try:
        config = load_config(env)
    except DeployError as error:
        raise Exit(f"error: {error}", code=1) from None
    why = refusal(env, config.env, yes, dry_run)
    if why:
        raise Exit(f"error: {why}", code=1)
    return run_step(
        "destroy",
        env,
        lambda e: run_destroy(e, yes=yes, dry_run=dry_run),
        locking=not dry_run,
        dry_run=dry_run,
    )
