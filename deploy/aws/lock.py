"""One deploy per environment at a time: a lock that is atomic in AWS itself.

The lock is an SSM parameter created with Overwrite=False: AWS lets exactly one creator win, so two
machines can never both hold it. Its value names the holder (host, user, pid, start time, step).
It is released on every exit path of the process that took it; after a crash (kill -9), a holder
on this same host whose process is gone is recognised as stale and replaced with a warning; any
other stale lock is removed by `inv unlock`.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy.aws.clients import or_none
from deploy.errors import DeployError


@dataclass(frozen=True)
class Holder:
    host: str
    user: str
    pid: int
    started: str
    step: str
    process_start: str = ""  # /proc start time: tells a reused pid from the holder itself
    machine: str = ""  # boot id + pid namespace: containers sharing a hostname cannot see each other's pids

    def describe(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid}, since {self.started}, at step {self.step}"

    @classmethod
    def parse(cls, text: str) -> Holder:
        try:
            data = json.loads(text)
            return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})
        except (ValueError, TypeError, KeyError):
            return cls(host="?", user="?", pid=0, started="?", step=f"unreadable lock value {text[:60]!r}")


def _process_start(pid: int) -> str:
    """The start time of PID in clock ticks since boot ('' when unknown or gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def machine_id() -> str:
    """This boot of this kernel and this pid namespace: where a pid means the same process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}/{namespace}"


def this_process(step: str) -> Holder:
    pid = os.getpid()
    return Holder(
        host=socket.gethostname(),
        user=getpass.getuser(),
        pid=pid,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        step=step,
        process_start=_process_start(pid),
        machine=machine_id(),
    )


def is_stale_here(holder: Holder, hostname: str | None = None) -> bool:
    """Pure-ish: a holder on this host whose process no longer runs (or whose pid was reused)."""
    if holder.host != (hostname or socket.gethostname()) or holder.pid <= 0:
        return False
    if not holder.machine or holder.machine != machine_id():
        return False  # same name, another machine or container: its pids are not ours to judge
    started = _process_start(holder.pid)
    return started == "" or (holder.process_start != "" and started != holder.process_start)


def parameter_name(stack: str) -> str:
    return f"/immutable-deploy/{stack}/lock"


class DeployLock:
    """The lock of one environment, as held (or not) by this process."""

    def __init__(self, ssm: Any, stack: str, env: str, say: Callable[[str], None] = print) -> None:
        self.ssm = ssm
        self.name = parameter_name(stack)
        self.env = env
        self.say = say
        self.mine: Holder | None = None

    def read(self) -> Holder | None:
        found = or_none(lambda: self.ssm.get_parameter(Name=self.name))
        return Holder.parse(found["Parameter"]["Value"]) if found else None

    def _create(self, holder: Holder) -> bool:
        # Overwrite=False: AWS lets exactly one creator win; every other gets ParameterAlreadyExists.
        created = or_none(
            lambda: self.ssm.put_parameter(
                Name=self.name,
                Value=json.dumps(asdict(holder)),
                Type="String",
                Overwrite=False,
                Description=f"immutable-deploy lock of {self.env}",
            ),
            "ParameterAlreadyExists",
        )
        return created is not None

    def acquire(self, step: str) -> None:
        if self.mine is not None:
            self.update(step)
            return
        holder = this_process(step)
        if self._create(holder):
            self.mine = holder
            return
        current = self.read()
        if current is not None and is_stale_here(current):
            self.say(
                f"warning: removing a stale deploy lock of {self.env}: {current.describe()} (that process is gone)"
            )
            self._delete()
            if self._create(holder):
                self.mine = holder
                return
            current = self.read()
        what = current.describe() if current else "a holder that just released it; try again"
        raise DeployError(
            f"Another deploy of {self.env} is running: {what}. Wait for it to finish; if it crashed,"
            f" remove its lock with `inv unlock --env {self.env}`."
        )

    def update(self, step: str) -> None:
        """Name the current step in the lock, so a refused run can tell where the holder is."""
        if self.mine is None or self.mine.step == step:
            return
        current = self.read()
        if current is None or (current.host, current.pid) != (self.mine.host, self.mine.pid):
            raise DeployError(f"The deploy lock of {self.env} was removed by someone else while this run held it.")
        self.mine = Holder(**{**asdict(self.mine), "step": step})
        self.ssm.put_parameter(Name=self.name, Value=json.dumps(asdict(self.mine)), Type="String", Overwrite=True)

    def release(self) -> None:
        if self.mine is None:
            return
        current = self.read()
        if current is not None and (current.host, current.pid) == (self.mine.host, self.mine.pid):
            self._delete()
        self.mine = None

    def _delete(self) -> None:
        or_none(lambda: self.ssm.delete_parameter(Name=self.name))

    def force_unlock(self) -> Holder | None:
        """`inv unlock`: remove whatever lock there is, returning its holder."""
        current = self.read()
        if current is not None:
            self._delete()
        return current
