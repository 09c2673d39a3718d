"""Carrying out a plan (deploy/plans): the one place that retires or deletes a group, a launch template or
configuration, an image with its snapshots, a DNS record, a load balancer, a security group, a key pair, a bake's
leftover instance, an orphan snapshot.

Cleanup, an aborted deploy and destroy all come here, so each kind of deletion is written once. Every
action is safe to repeat (what is already gone is skipped), so a run interrupted half-way is finished by
the next one; every wait is bounded.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from deploy.aws import dns, groups, images, leftovers, network
from deploy.aws.groups import utc_time
from deploy.aws.health import has_served
from deploy.aws.history import ABORTED, entry, record
from deploy.aws.loadbalancers import DRAINING_TIMEOUT_S
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.plans.actions import Action
from deploy.plans.groups import serving_group
from deploy.plans.launch import plan_abort
from deploy.plans.model import Group
from deploy.plans.pending import Pending

RETIRE_TIMEOUT_S = 900  # connection draining is 300 s; termination takes a few minutes more
GROUP_DELETE_TIMEOUT_S = 900  # a force-deleted group's instances terminate within minutes
SECURITY_GROUP_TIMEOUT_S = 600  # a deleted load balancer's network interfaces linger for minutes on AWS
INSTANCE_TERMINATE_TIMEOUT_S = 600  # a Packer instance left behind terminates within minutes
LOAD_BALANCER_DELETE_TIMEOUT_S = 600  # an ALB is deleted within minutes


def _checkpoint(stop: threading.Event | None, group: str, done: str) -> None:
    if stop is not None and stop.is_set():
        raise DeployError(f"{group}: stopped after {done}; re-run `inv cleanup` to finish.")


def _wait(
    environment: Environment,
    timeout_s: float,
    check: Callable[[], tuple[bool, str]],
    what: str,
    stop: threading.Event | None = None,
    show: bool = False,
    again: str = "inv cleanup",
    first_after: float = 0.0,
) -> None:
    """Wait, bounded, until CHECK is done; else DeployError naming WHAT and the command that finishes the work
    (AGAIN). SHOW: a live progress line. FIRST_AFTER: seconds before the first check (see Waiter.until)."""
    shown = False

    def progress(status: str) -> None:
        nonlocal shown
        if show and status:
            environment.log.progress(f"  {status}")
            shown = True

    try:
        done, status = environment.waiter(timeout_s, stop=stop).until(check, progress, first_after)
    finally:
        if shown:
            environment.log.end_progress()
    if not done:
        _checkpoint(stop, what, "waiting")
        raise DeployError(
            f"{what} was not done after {timeout_s:.0f}s ({status.strip()}); run `{again}` again to finish."
        )


def delete_group(
    environment: Environment,
    name: str,
    force: bool = True,
    detach: bool = True,
    timeout_s: float = GROUP_DELETE_TIMEOUT_S,
    stop: threading.Event | None = None,
    again: str = "inv cleanup",
    drain: bool = False,
    wait_gone: bool = True,
) -> None:
    """Delete the group, retrying while AWS says its last scaling activity still runs.

    FORCE: with its instances, and wait until it is gone; DETACH it from the load balancer first (so that
    the load balancer drains it) unless the load balancer is gone already. DRAIN: a group that served live
    requests (an aborted deploy's): wait until the detachment is done, for at most the load balancer's
    draining time, before its instances are terminated. Without FORCE the group must be empty: AWS deletes it at
    once. WAIT_GONE: wait until AWS has deleted it (a retirement does not: its instances were drained, and a group
    being deleted is ignored by every later run, so nothing waits on it).
    """
    if force and detach:
        balancer = environment.load_balancer
        if not balancer.group_detached(name):
            balancer.detach_group(name)
        if drain:
            environment.say(f"  draining {name} (at most {DRAINING_TIMEOUT_S}s): its instances served requests")
            drained, _ = environment.waiter(DRAINING_TIMEOUT_S, stop=stop).until(
                lambda: (balancer.group_detached(name), "")
            )
            if not drained:
                environment.say(f"  {name} still drains after {DRAINING_TIMEOUT_S}s: deleting it now")

    def deleted() -> tuple[bool, str]:
        refused = groups.request_group_deletion(environment, name, force)
        return refused is None, f"{name}: {refused}" if refused else ""

    _wait(environment, timeout_s, deleted, f"Deleting {name}", stop, again=again)
    groups.forget_group(environment, name)
    if force and wait_gone:

        def gone() -> tuple[bool, str]:
            if groups.group_gone(environment, name):
                return True, ""
            return False, f"waiting: {name} is being deleted (its instances terminate)"

        _wait(environment, timeout_s, gone, f"Deleting group {name}", stop, show=True, again=again)


def keep_group(environment: Environment, name: str, retire_at: str) -> None:
    """The group the serving one replaced keeps its capacity, out of service, until RETIRE_AT (this cloud's clock):
    AWS sizes it 0 then (one scheduled action; put again by every run while the window lasts, so a run killed
    before it put it is made good by the next). Then it stops serving (classic: detached; an application load
    balancer gave it weight 0 already). A window that is over by now: sized 0 at once."""
    now = datetime.now(UTC)
    left = (utc_time(retire_at) - now).total_seconds()
    if left < 1:
        groups.scale_in(environment, name)
        return
    # AWS's time: an emulator runs an action (S - put) x LOCAL_TIME_SCALE after its put (local-cloud-retirement.md).
    unit = environment.aws_seconds(1.0) or 1.0
    groups.schedule_retirement(environment, name, now + timedelta(seconds=math.ceil(left / unit)))
    known = next((g for g in groups.environment_groups(environment) if g.name == name), None)
    environment.load_balancer.stand_by(name, known.raw if known is not None else {})


def _delete_security_group(environment: Environment, group_id: str, name: str) -> None:
    def attempt() -> tuple[bool, str]:
        if network.delete_security_group(environment, group_id) is None:
            return True, ""
        return False, f"waiting: {name} is still in use (the deleted load balancer's network interfaces linger)"

    _wait(
        environment,
        SECURITY_GROUP_TIMEOUT_S,
        attempt,
        f"Deleting security group {name}",
        show=True,
        again="inv destroy",
    )


def carry_out(
    environment: Environment, actions: list[Action], progress: bool = False, again: str = "inv cleanup"
) -> list[str]:
    """Do the plan's changes in order; return their lines. A `refuse` stops it before anything is done.

    PROGRESS: say "[n/N] done: …". AGAIN: the command that finishes the work if a wait runs out (`inv cleanup`,
    `inv destroy`).
    """
    refused = [a for a in actions if a.op == "refuse"]
    if refused:
        raise DeployError(f"{refused[0].done()}.")
    changes = [a for a in actions if a.changes]
    done: list[str] = []
    for number, action in enumerate(changes, start=1):
        _do(environment, action, again)
        if progress:
            environment.say(f"  [{number}/{len(changes)}] done: {action.line()}")
        elif action.op != "delete-target-group":  # the load balancer's `release` says it once done
            environment.say(f"  {action.done()}")
        done.append(action.line())
    return done


def _do(environment: Environment, action: Action, again: str) -> None:
    op, target = action.op, action.target
    if op == "delete-group":
        detach, drain = action.get("detach") is not False, bool(action.get("drain"))
        force = action.get("force") is not False
        delete_group(environment, target, force=force, detach=detach and force, drain=drain, again=again)
    elif op == "scale-in":
        groups.scale_in(environment, target)
    elif op == "delete-target-group":
        pass  # the load balancer's `release`, after the plan's other changes, takes it out of the listeners first
    elif op == "keep-group":
        keep_group(environment, target, str(action.get("retire_at")))
    elif op == "delete-launch-template":
        groups.delete_launch_template(environment, target)
    elif op == "delete-launch-configuration":
        groups.delete_launch_configuration(environment, target)  # gone already: nothing to do
    elif op == "delete-image":
        images.delete_image(environment, target, action.get("snapshots") or ())
    elif op == "delete-record":
        dns.delete_record(environment, action.get("zone_id"), action.get("record"))
    elif op == "delete-load-balancer":
        balancer = environment.load_balancer
        balancer.delete()
        # Bounded: its network interfaces are released within minutes (the security group waits on them).
        _wait(
            environment,
            LOAD_BALANCER_DELETE_TIMEOUT_S,
            lambda: (balancer.gone(), f"waiting: {target} is being deleted"),
            f"Deleting load balancer {target}",
            again=again,
        )
    elif op == "delete-security-group":
        _delete_security_group(environment, action.get("id"), target)
    elif op == "delete-key-pair":
        leftovers.delete_key_pair(environment, target)
    elif op == "terminate-instance":
        leftovers.terminate_instance(environment, target)
        _wait(
            environment,
            INSTANCE_TERMINATE_TIMEOUT_S,
            lambda: (leftovers.instance_gone(environment, target), f"waiting: {target} terminates"),
            f"Terminating {target}",
        )
    elif op == "delete-snapshot":
        leftovers.delete_snapshot(environment, target)
    elif op == "delete-file":
        Path(target).unlink(missing_ok=True)
    else:
        raise AssertionError(f"an action this executor does not know: {op}")


def take_back(environment: Environment, group: str) -> None:
    """Every request back to the serving group before GROUP (a new group being removed: an aborted step, a killed
    run's leftover) leaves: its target group may still carry weight, and its targets are about to drain."""
    serving = serving_group(groups.environment_groups(environment))
    if environment.load_balancer.take_back(serving.name if serving else None, group):
        environment.say(f"  all requests back to {serving.name if serving else 'the serving group'}")


def abort_new_group(
    environment: Environment,
    pending: Pending | None,
    reason: str,
    action: str = "deploy",
    steps: list[dict[str, Any]] | None = None,
) -> None:
    """Remove a new group that was never promoted, and its launch template; the serving group stays untouched and
    takes back every request first. A promoted one is never removed, and one that served drains first, for at most
    the load balancer's draining time (deploy/plans/launch.py `plan_abort`). The abort is recorded in the account's
    history (ACTION: the deploy or rollback it ends; STEPS: the traffic steps judged before)."""
    if not pending:
        return
    take_back(environment, pending.group)
    raw_group = groups.describe_group(environment, pending.group)
    group = Group.from_aws(raw_group) if raw_group is not None else None
    actions = plan_abort(pending, group, has_served(environment, group))
    if actions:
        environment.say(f"  removing the new group {pending.group} ({reason}); the previous group keeps serving")
        carry_out(environment, actions)
        for line in environment.load_balancer.release(None, [pending.group]):
            environment.say(f"  {line}")
        seconds = environment.log.elapsed()
        record(environment, entry(action, ABORTED, pending.image_id, pending.group, seconds, False, reason, steps))
