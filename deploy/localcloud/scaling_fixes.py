"""Where moto differs from AWS in what a retirement handed to AWS needs, fixed inside the embedded cloud (installed
by fixes.py's `patch_moto()`, like every fix): scheduled actions, and a scale-in that drains before terminating.
Each fix says what AWS does and what moto did.

moto stores scheduled actions and never runs them; the embedded cloud runs them (`advance`, called by the
runtime's loop in the server process: deploy/localcloud/runtime.py) at their time scaled as schedule.py says.
In-process tests on mock_aws run no loop: there an action is stored, validated and described, never run.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    FakeScheduledAction,
    InstanceState,
    autoscaling_backends,
)

from deploy.localcloud.backends import backends
from deploy.localcloud.schedule import as_utc, runs_at

Install = Callable[[type, str, Callable[[Any], Callable[..., Any]]], None]

TERMINATING = "_localcloud_terminating"  # on a backend: {instance id: its InstanceState}, scaled in, draining
DELETING = "_localcloud_deleting"  # on a group being deleted: its instances go at once
PUT_AT = "_localcloud_put_at"  # on a scheduled action: (runtime clock, wall clock) when it was put

# --- scheduled actions ------------------------------------------------------------------------------------
#
# AWS: a scheduled action belongs to its group (two groups may each have an action of the same name); putting one
# for a group that does not exist, with a StartTime in the past ("Given start time is in the past"), or without
# any of MinSize, MaxSize, DesiredCapacity is refused; deleting a group deletes its actions. At StartTime AWS
# updates the group's sizes as UpdateAutoScalingGroup would and removes a one-time action; DescribeScheduledActions
# then no longer lists it. Each action has a ScheduledActionARN, and Time (the deprecated alias of StartTime).
# moto: one namespace of action names for the whole region (an action of one group replaced another group's of
# the same name, and deleting it through either group worked), anything accepted, actions of deleted groups kept,
# no ARN, no Time, and no action ever run.
# Not modelled (refused, naming the emulator): recurring actions (Recurrence) and actions without StartTime.


def _key(group_name: str, action_name: str) -> str:
    return f"{group_name}/{action_name}"


def _put_action(original: Callable[..., Any]) -> Callable[..., FakeScheduledAction]:
    def put_scheduled_update_group_action(
        self: AutoScalingBackend,
        name: str,
        desired_capacity: Any,
        max_size: Any,
        min_size: Any,
        scheduled_action_name: str,
        start_time: Any,
        end_time: Any,
        recurrence: str | None,
        timezone: str | None,
    ) -> FakeScheduledAction:
        if name not in self.autoscaling_groups:
            raise ValidationError(f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found")
        if recurrence:
            raise ValidationError("The embedded cloud runs one-time scheduled actions only: Recurrence is not modelled")
        if start_time is None:
            raise ValidationError("The embedded cloud runs scheduled actions at their StartTime: give one")
        if desired_capacity is None and max_size is None and min_size is None:
            raise ValidationError("You must specify at least one of MinSize, MaxSize or DesiredCapacity")
        start = as_utc(start_time if isinstance(start_time, datetime) else datetime.fromisoformat(str(start_time)))
        wall = time.time()
        if start.timestamp() < int(wall):  # AWS compares whole seconds: this second is not the past yet
            raise ValidationError("Given start time is in the past")
        action: Any = original(
            self, name, desired_capacity, max_size, min_size, scheduled_action_name, None, end_time, None, timezone
        )
        self.scheduled_actions.pop(scheduled_action_name, None)  # moto's key: the action's name alone
        action.start_time = start.replace(tzinfo=None)  # moto's naive UTC
        action.time = action.start_time
        action.scheduled_action_arn = (
            f"arn:aws:autoscaling:{self.region_name}:{self.account_id}:scheduledUpdateGroupAction:{uuid.uuid4()}"
            f":autoScalingGroupName/{name}:scheduledActionName/{scheduled_action_name}"
        )
        setattr(action, PUT_AT, (time.monotonic(), wall))
        self.scheduled_actions[_key(name, scheduled_action_name)] = action  # putting it again replaces it
        return cast(FakeScheduledAction, action)

    return put_scheduled_update_group_action


def _delete_action(_: Callable[..., None]) -> Callable[..., None]:
    def delete_scheduled_action(
        self: AutoScalingBackend, auto_scaling_group_name: str, scheduled_action_name: str
    ) -> None:
        if self.scheduled_actions.pop(_key(auto_scaling_group_name, scheduled_action_name), None) is None:
            raise ValidationError("Scheduled action name not found")

    return delete_scheduled_action


def _forget_deleted_groups_actions(original: Callable[..., None]) -> Callable[..., None]:
    def delete_auto_scaling_group(self: AutoScalingBackend, group_name: str) -> None:
        group = self.autoscaling_groups.get(group_name)
        if group is not None:
            setattr(group, DELETING, True)
        original(self, group_name)
        for key in [k for k, a in self.scheduled_actions.items() if a.auto_scaling_group_name == group_name]:
            del self.scheduled_actions[key]

    return delete_auto_scaling_group


def run_due_actions(backend: AutoScalingBackend, now: float, scale: float) -> list[str]:
    """Run every scheduled action of BACKEND whose time (schedule.runs_at) has come at NOW on the runtime's clock,
    each once, removing it first (a one-time action); the names of the actions run."""
    ran = []
    for key, action in list(backend.scheduled_actions.items()):
        put_clock, put_wall = getattr(action, PUT_AT, (None, 0.0))
        if put_clock is None or now < runs_at(put_clock, put_wall, action.start_time, scale):  # type: ignore[arg-type]
            continue
        backend.scheduled_actions.pop(key, None)
        ran.append(key)
        if action.auto_scaling_group_name not in backend.autoscaling_groups:
            continue
        try:  # as UpdateAutoScalingGroup with the action's sizes only
            backend.update_auto_scaling_group(
                name=action.auto_scaling_group_name,
                availability_zones=[],
                desired_capacity=action.desired_capacity,
                max_size=action.max_size,
                min_size=action.min_size,
                launch_config_name=None,  # type: ignore[arg-type]  # what the API passes when not given
                launch_template={},
                vpc_zone_identifier=None,  # type: ignore[arg-type]
                health_check_period=None,  # type: ignore[arg-type]
                health_check_type=None,  # type: ignore[arg-type]
                mixed_instances_policy=backend.autoscaling_groups[
                    action.auto_scaling_group_name
                ].mixed_instances_policy,
            )
        except Exception as error:  # AWS records a failed scheduled activity; the action is gone all the same
            print(f"embedded cloud: scheduled action {key} failed: {error!r}", flush=True)
    return ran


# --- a scale-in drains before terminating ------------------------------------------------------------------
#
# AWS: when a group's desired capacity is lowered (UpdateAutoScalingGroup, SetDesiredCapacity, a scheduled
# action), each instance it removes goes to lifecycle state Terminating (still listed in the group, still
# running), is deregistered from the group's classic load balancers and target groups, and is terminated only
# when the deregistration is complete: once its requests in flight have finished (at once when none is in flight),
# at most the draining time / deregistration delay. Terminating instances do not count towards the desired
# capacity. moto: terminated the instances at once and deregistered them afterwards (a request in flight failed).
# Without the embedded cloud's runtime nothing is ever in flight, so the deregistration completes at once and the
# instance is terminated within the call; in the server, `deregistration_in_progress` answers from the load
# balancers' draining (hooks.py) and the runtime's loop terminates each instance when its draining is over.
# Not modelled: a group deleted with ForceDelete terminates its instances at once (as moto did).


def _terminating(backend: AutoScalingBackend) -> dict[str, InstanceState]:
    found = backend.__dict__.get(TERMINATING)
    if found is None:
        found = {}
        setattr(backend, TERMINATING, found)
    return found


def deregistration_in_progress(self: AutoScalingBackend, instance_id: str) -> bool:
    """Whether a load balancer is still draining INSTANCE_ID (moto alone: never; the runtime hooks this)."""
    return False


def _terminate(backend: AutoScalingBackend, states: list[InstanceState]) -> None:
    for state in states:
        group = state.auto_scaling_group
        group.instance_states = [s for s in group.instance_states if s is not state]
        _terminating(backend).pop(state.instance.id, None)
    ids = [state.instance.id for state in states]
    if ids:
        with contextlib.suppress(Exception):  # an instance reset or terminated meanwhile through EC2
            backend.ec2_backend.terminate_instances(ids)


def finish_scale_ins(backend: AutoScalingBackend) -> list[str]:
    """Terminate every scaled-in instance of BACKEND whose deregistration is complete; their ids."""
    pending = _terminating(backend)
    done = [state for i, state in list(pending.items()) if not backend.deregistration_in_progress(i)]  # type: ignore[attr-defined]
    _terminate(backend, done)
    return [state.instance.id for state in done]


def _drain_before_terminating(original: Callable[..., None]) -> Callable[..., None]:
    def set_desired_capacity(self: FakeAutoScalingGroup, new_capacity: int | None) -> None:
        backend = self.autoscaling_backend
        mine = [s for s in _terminating(backend).values() if s.auto_scaling_group is self]
        if getattr(self, DELETING, False) or self.mixed_instances_policy:
            _terminate(backend, mine)  # moto's own scale-in, with nothing of ours left in the group
            return original(self, new_capacity)
        target = self.min_size if new_capacity is None else new_capacity
        active = self.active_instances()
        leaving = [s for s in active if not s.protected_from_scale_in][: max(len(active) - (target or 0), 0)]
        for state in leaving:
            state.lifecycle_state = "Terminating"  # no longer InService: moto's count leaves them out
        original(self, new_capacity)  # no further change; re-syncs the attachments: deregisters (drains) them
        # Pending only once deregistered: the runtime's loop must not find one whose draining has not begun.
        _terminating(backend).update({state.instance.id: state for state in leaving})
        if leaving:
            finish_scale_ins(backend)

    return set_desired_capacity


def advance(now: float, scale: float) -> None:
    """The runtime's loop, every tick: run the scheduled actions due at NOW, terminate what has drained."""
    for backend in backends(autoscaling_backends):
        with contextlib.suppress(RuntimeError):  # changed while read: the next tick sees it
            run_due_actions(backend, now, scale)
            finish_scale_ins(backend)


def install_scaling_fixes(install: Install) -> None:
    """Install these fixes with fixes.py's INSTALL (once each, moto's method kept as __wrapped__)."""
    if not hasattr(AutoScalingBackend, "deregistration_in_progress"):
        AutoScalingBackend.deregistration_in_progress = deregistration_in_progress  # type: ignore[attr-defined]
    install(AutoScalingBackend, "put_scheduled_update_group_action", _put_action)
    install(AutoScalingBackend, "delete_scheduled_action", _delete_action)
    # Around fixes.py's own fix of the deletion (which _install would not wrap twice).
    current = AutoScalingBackend.delete_auto_scaling_group
    if not getattr(current, DELETING, False):
        wrapped = _forget_deleted_groups_actions(current)
        setattr(wrapped, DELETING, True)
        AutoScalingBackend.delete_auto_scaling_group = wrapped  # type: ignore[method-assign]
    install(FakeAutoScalingGroup, "set_desired_capacity", _drain_before_terminating)
