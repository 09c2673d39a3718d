"""One deploy per environment at a time: a lock that is atomic in AWS itself.

The lock is an SSM parameter created with Overwrite=False: AWS lets exactly one creator win, so two
machines can never both hold it. Its value names the holder (host, user, pid, start time, the command,
the step it started with and a random token); it is written once and never changed by its holder.

Requests: acquiring a free lock is one PutParameter; the run's next steps cost none (`update` changes only
the holder this process keeps); releasing is one GetParameter (is it still ours? only `inv unlock` could
have removed it, and another run then taken it) and one DeleteParameter. A run whose lock was removed by
`inv unlock` learns it at release (a warning) and leaves the new holder's lock alone; `inv unlock` warns
that such a run is no longer protected.

Takeover. After a crash (kill -9), a holder on this same host whose process is gone is stale. Deleting its
lock and creating a new one is not atomic (run B could delete the lock run A just took), so a takeover
first creates, again with Overwrite=False, a marker `lock-takeover/DIGEST` named after the stale value it
replaces: for one stale value AWS lets exactly one run create it. Only that run overwrites the lock, and
only after reading the stale value still there (nothing else changes a lock whose holder is dead: creates
fail while it exists, and only its marker's owner may replace it). Every other contender is refused. Any
other stale lock is removed by `inv unlock`.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import uuid
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
    command: str = ""  # the command line's task (deploy, destroy, cleanup, ...), '' when unknown
    token: str = ""  # random, per acquisition: tells two holders apart even within one process

    def doing(self) -> str:
        """What the holder is doing, by its command line's task: "A destroy", "A deploy" ("Another run": unknown)."""
        return f"A {self.command}" if self.command else "Another run"

    def describe(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid}, since {self.started}, started at step {self.step}"

    def same_as(self, other: Holder) -> bool:
        if self.token or other.token:
            return self.token == other.token
        return (self.host, self.pid) == (other.host, other.pid)

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


def this_process(step: str, command: str = "") -> Holder:
    pid = os.getpid()
    return Holder(
        host=socket.gethostname(),
        user=getpass.getuser(),
        pid=pid,
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        step=step,
        process_start=_process_start(pid),
        machine=machine_id(),
        command=command,
        token=uuid.uuid4().hex,
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


def takeover_parameter(stack: str, stale_value: str) -> str:
    return f"/immutable-deploy/{stack}/lock-takeover/{hashlib.sha256(stale_value.encode()).hexdigest()[:40]}"


class DeployLock:
    """The lock of one environment, as held (or not) by this process."""

    def __init__(self, ssm: Any, stack: str, env: str, say: Callable[[str], None] = print) -> None:
        self.ssm = ssm
        self.stack = stack
        self.name = parameter_name(stack)
        self.env = env
        self.say = say
        self.mine: Holder | None = None
        self.marker: str | None = None  # the takeover marker this run created, deleted on release

    def _read_value(self) -> str | None:
        found = or_none(lambda: self.ssm.get_parameter(Name=self.name))
        return str(found["Parameter"]["Value"]) if found else None

    def read(self) -> Holder | None:
        """The holder (with the command and the step it started with), None when the lock is free: one request."""
        value = self._read_value()
        return Holder.parse(value) if value is not None else None

    def _create(self, name: str, value: str, what: str) -> bool:
        # Overwrite=False: AWS lets exactly one creator win; every other gets ParameterAlreadyExists.
        created = or_none(
            lambda: self.ssm.put_parameter(
                Name=name, Value=value, Type="String", Overwrite=False, Description=f"immutable-deploy {what}"
            ),
            "ParameterAlreadyExists",
        )
        return created is not None

    def acquire(self, step: str, command: str = "") -> None:
        if self.mine is not None:
            self.update(step)
            return
        holder = this_process(step, command or step)
        if self._create(self.name, json.dumps(asdict(holder)), f"lock of {self.env}"):
            self.mine = holder
            return
        stale_value = self._read_value()
        current = Holder.parse(stale_value) if stale_value is not None else None
        if stale_value is not None and current is not None and is_stale_here(current):
            self.say(
                f"warning: removing a stale deploy lock of {self.env}: {current.describe()} (that process is gone)"
            )
            if self._take_over(stale_value, holder):
                return
            current = self.read()  # another run took it over (or it was released): name who holds it now
        what = current.describe() if current else "a holder that just released it; try again"
        doing = current.doing() if current else "Another run"
        raise DeployError(
            f"{doing} of {self.env} is running: {what}. Wait for it to finish; if it crashed, remove its lock"
            f" with `inv unlock --env {self.env}`."
        )

    def _take_over(self, stale_value: str, holder: Holder) -> bool:
        """Replace the dead holder's lock, atomically: see the module's docstring. False: another run won."""
        marker = takeover_parameter(self.stack, stale_value)
        if not self._create(marker, holder.token, f"takeover of a stale lock of {self.env}"):
            return False  # another run is taking this stale lock over: it alone may
        if self._read_value() != stale_value:
            # Released, or taken over and released again, since it was read: not this marker's to replace.
            or_none(lambda: self.ssm.delete_parameter(Name=marker))
            return False
        self.ssm.put_parameter(Name=self.name, Value=json.dumps(asdict(holder)), Type="String", Overwrite=True)
        self.mine, self.marker = holder, marker
        return True

    def update(self, step: str) -> None:
        """The run's next step (another task of the same command line): the lock is kept as it is, no request.
        Only this process's own holder changes; the lock keeps naming the command and the step it started with."""
        if self.mine is not None and self.mine.step != step:
            self.mine = Holder(**{**asdict(self.mine), "step": step})

    def release(self) -> None:
        """Delete the lock if it is still this run's (nobody takes over a live holder's lock; only `inv unlock`
        could have removed it, and another run then taken it), then the takeover marker this run created."""
        if self.mine is None:
            return
        value = self._read_value()
        current = Holder.parse(value) if value is not None else None
        if current is not None and current.same_as(self.mine):
            self._delete(self.name)
        else:
            now = f"it is held by {current.describe()}, left as it is" if current else "it is free"
            self.say(f"warning: the deploy lock of {self.env} was removed (inv unlock) while this run held it; {now}.")
        if self.marker is not None:
            self._delete(self.marker)
        self.mine, self.marker = None, None

    def _delete(self, name: str) -> None:
        or_none(lambda: self.ssm.delete_parameter(Name=name))

    def force_unlock(self) -> Holder | None:
        """`inv unlock`: remove whatever lock there is, returning its holder."""
        current = self.read()
        if current is not None:
            self._delete(self.name)
        return current
