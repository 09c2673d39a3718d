"""The deploy lock: an SSM parameter created with Overwrite=False, in-process against moto's mock_aws.
(What it costs in requests: tests/test_ssm_requests.py.)

Holders are built by hand to stand for other runs: on another host, or on this host with a live,
dead or reused process id. The last test runs the real CLI to show that a failing task releases it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import asdict, replace
from typing import Any

import boto3
import pytest
from conftest import REGION, TEST_ENV, run_inv
from moto import mock_aws

from deploy.aws.lock import DeployLock, Holder, _process_start, is_stale_here, machine_id, parameter_name, this_process
from deploy.errors import DeployError
from deploy.steps.unlock import unlock

STACK = "webapp-dev"
NAME = parameter_name(STACK)


@pytest.fixture
def ssm(aws_environ) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name=REGION)


def new_lock(ssm: Any, said: list[str] | None = None) -> DeployLock:
    return DeployLock(ssm, STACK, "dev", say=(said if said is not None else []).append)


def stored(ssm: Any) -> dict[str, Any] | None:
    try:
        return json.loads(ssm.get_parameter(Name=NAME)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None


def plant(ssm: Any, holder: Holder) -> None:
    """The lock as another run left it."""
    ssm.put_parameter(Name=NAME, Value=json.dumps(asdict(holder)), Type="String", Overwrite=True)


def other_host(step: str = "wait-health") -> Holder:
    return Holder(
        host="build-box-7", user="alice", pid=4242, started="2024-05-01T10:00:00+00:00", step=step, process_start="1"
    )


@pytest.fixture
def live_process() -> Iterator[subprocess.Popen[bytes]]:
    """A process of this host that runs for the whole test: a holder that is alive."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)


def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"], stdin=subprocess.DEVNULL)
    process.wait(timeout=30)
    return process.pid


def here(pid: int, process_start: str | None = None, step: str = "bake-carnivore") -> Holder:
    start = _process_start(pid) if process_start is None else process_start
    return Holder(
        host=socket.gethostname(),
        user="bob",
        pid=pid,
        started="2024-05-01T10:00:00+00:00",
        step=step,
        process_start=start,
        machine=machine_id(),
    )


def test_acquire_creates_the_parameter_naming_this_process(ssm):
    lock = new_lock(ssm)
    lock.acquire("bake-primal")

    value = stored(ssm)
    assert value is not None
    me = this_process("bake-primal")
    assert (value["host"], value["user"], value["pid"], value["step"]) == (me.host, me.user, me.pid, "bake-primal")
    assert value["process_start"] == me.process_start != ""
    assert lock.mine is not None and lock.mine.pid == me.pid


def test_a_second_run_is_refused_naming_the_holder(ssm):
    plant(ssm, other_host(step="wait-health"))
    lock = new_lock(ssm)

    with pytest.raises(DeployError) as refused:
        lock.acquire("bake-primal")

    message = str(refused.value)
    assert "Another run of dev is running" in message  # an old lock value does not say its command
    assert "alice@build-box-7 pid 4242" in message
    assert "since 2024-05-01T10:00:00+00:00" in message
    assert "started at step wait-health" in message
    assert "inv unlock --env dev" in message
    assert lock.mine is None
    assert stored(ssm)["host"] == "build-box-7"  # untouched


def test_only_one_of_two_lock_objects_wins(ssm):
    first, second = new_lock(ssm), new_lock(ssm)
    first.acquire("setup")
    # Same process, but a different DeployLock: it does not hold the lock, and the holder is alive.
    with pytest.raises(DeployError, match="A setup of dev is running"):
        second.acquire("setup")
    assert second.mine is None


def test_release_removes_only_the_lock_this_run_holds(ssm):
    said: list[str] = []
    lock = new_lock(ssm, said)
    lock.acquire("launch-asg")
    lock.release()
    assert stored(ssm) is None
    assert lock.mine is None
    assert said == []

    lock.acquire("launch-asg")
    plant(ssm, other_host())  # someone ran `inv unlock` and another run took the lock
    lock.release()
    assert stored(ssm)["host"] == "build-box-7"
    assert lock.mine is None
    assert said == [
        "warning: the deploy lock of dev was removed (inv unlock) while this run held it; it is held by"
        " alice@build-box-7 pid 4242, since 2024-05-01T10:00:00+00:00, started at step wait-health, left as it is."
    ]

    lock.release()  # releasing what is not held is a no-op
    assert stored(ssm)["host"] == "build-box-7"


def test_a_lock_of_this_host_whose_process_is_gone_is_replaced_with_a_warning(ssm):
    stale = here(dead_pid(), process_start="12345")
    assert is_stale_here(stale)
    plant(ssm, stale)
    said: list[str] = []
    lock = new_lock(ssm, said)

    lock.acquire("bake-primal")

    assert stored(ssm)["pid"] == this_process("x").pid
    assert any(line.startswith("warning: removing a stale deploy lock of dev") for line in said), said
    assert any(f"bob@{stale.host} pid {stale.pid}" in line for line in said), said


def test_a_lock_whose_pid_now_belongs_to_another_process_is_stale(ssm, live_process):
    reused = here(live_process.pid, process_start="1")  # the pid is alive, but started at another time
    assert is_stale_here(reused)
    plant(ssm, reused)
    said: list[str] = []

    new_lock(ssm, said).acquire("bake-primal")

    assert stored(ssm)["pid"] == this_process("x").pid
    assert any("stale deploy lock" in line for line in said)


def test_a_live_holder_on_this_host_is_refused(ssm, live_process):
    alive = here(live_process.pid)
    assert not is_stale_here(alive)
    plant(ssm, alive)
    said: list[str] = []

    with pytest.raises(DeployError, match=f"bob@{socket.gethostname()} pid {live_process.pid}"):
        new_lock(ssm, said).acquire("bake-primal")

    assert said == []
    assert stored(ssm)["pid"] == live_process.pid


def test_a_holder_on_another_host_is_refused_even_if_its_pid_is_free_here(ssm):
    remote = replace(other_host(), pid=dead_pid())
    assert not is_stale_here(remote)  # this host cannot know whether that process still runs
    plant(ssm, remote)

    with pytest.raises(DeployError, match="alice@build-box-7"):
        new_lock(ssm).acquire("bake-primal")
    assert stored(ssm)["host"] == "build-box-7"


def test_an_unreadable_lock_value_is_refused_and_shown(ssm):
    ssm.put_parameter(Name=NAME, Value="not json at all", Type="String")

    with pytest.raises(DeployError, match="unreadable lock value 'not json at all'"):
        new_lock(ssm).acquire("bake-primal")
    assert ssm.get_parameter(Name=NAME)["Parameter"]["Value"] == "not json at all"


def test_the_lock_names_the_command_and_the_step_it_started_with_and_is_never_rewritten(ssm):
    lock = new_lock(ssm)
    lock.acquire("bake-primal", command="deploy")
    value = stored(ssm)
    lock.acquire("wait-health")  # the next step of the same run: kept, not a refusal, and no request
    lock.update("finish")
    assert stored(ssm) == value  # the lock itself is never rewritten by its holder
    assert lock.mine is not None and lock.mine.step == "finish"  # only this process's own holder moves on
    assert new_lock(ssm).read().step == "bake-primal"

    with pytest.raises(DeployError, match=r"A deploy of dev is running: .* started at step bake-primal\."):
        new_lock(ssm).acquire("destroy", command="destroy")
    assert [p["Name"] for p in ssm.describe_parameters()["Parameters"]] == [NAME]  # the lock, nothing else


def test_a_run_whose_lock_was_removed_under_it_says_so_at_release(ssm):
    said: list[str] = []
    lock = new_lock(ssm, said)
    lock.acquire("launch-asg")
    ssm.delete_parameter(Name=NAME)

    lock.update("wait-health")  # no request: the run goes on (`inv unlock` warned that it is unprotected)
    lock.release()

    assert said == ["warning: the deploy lock of dev was removed (inv unlock) while this run held it; it is free."]
    assert stored(ssm) is None


def test_unlock_removes_any_lock_and_names_its_holder(ssm):
    said: list[str] = []
    lock = new_lock(ssm, said)
    environment = types.SimpleNamespace(lock=lock, env="dev", say=said.append)

    unlock(environment)  # type: ignore[arg-type]
    assert said == ["  no deploy lock is held on dev"]

    plant(ssm, other_host(step="finish"))
    assert lock.force_unlock() == other_host(step="finish")
    assert stored(ssm) is None

    plant(ssm, other_host(step="finish"))
    unlock(environment)  # type: ignore[arg-type]
    assert stored(ssm) is None
    assert said[-1].startswith("warning: removed the deploy lock of dev held by alice@build-box-7 pid 4242")
    assert "no longer protected" in said[-1]


def test_a_failing_task_releases_the_lock_it_took(env_dir, work_dir, cloud_client):
    """Real CLI: `inv launch-asg` takes the lock at bake-carnivore, fails there (setup never ran), and releases it."""
    result = run_inv("launch-asg", "--env", TEST_ENV, "--image-id", "ami-0123456789abcdef0")

    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: bake-carnivore: ")
    assert "Traceback" not in result.stdout + result.stderr
    ssm = cloud_client("ssm")
    assert ssm.describe_parameters()["Parameters"] == []
    calls = sorted(p.name for p in (work_dir / "deploy" / "log" / TEST_ENV / "latest").resolve().iterdir())
    taken = [name for name in calls if name.endswith("ssm-PutParameter.json")]
    released = [name for name in calls if name.endswith("ssm-DeleteParameter.json")]
    assert taken and released, calls
    assert taken[0] < released[-1]  # numbered in call order


def test_one_command_line_with_a_locking_and_a_reading_task_releases_the_lock(env_dir, cloud_client):
    """Real CLI: `inv setup --env X status --env X` opens X twice (locked, then read-only): the lock that setup
    took is released when the command line ends, not lost with the first opening."""
    result = run_inv("setup", "--env", TEST_ENV, "status", "--env", TEST_ENV)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "started at step setup" in result.stdout  # status, in the same command line, sees setup's lock
    assert cloud_client("ssm").describe_parameters()["Parameters"] == []


def test_a_refusal_names_what_the_holder_is_doing(ssm):
    holder = new_lock(ssm)
    holder.acquire("destroy", command="destroy")

    with pytest.raises(DeployError, match=r"^A destroy of dev is running: .*, started at step destroy\."):
        new_lock(ssm).acquire("build-app", command="deploy")


def test_a_removed_holder_never_touches_a_new_holders_lock(ssm):
    """The lock was removed by hand (`inv unlock`) and another run took it while this run went on: naming its
    next step and releasing leave the new holder's lock as it is."""
    old = new_lock(ssm)
    old.acquire("launch-asg", command="deploy")
    ssm.delete_parameter(Name=NAME)
    new = new_lock(ssm)
    new.acquire("setup", command="setup")
    taken = stored(ssm)

    old.update("wait-health")
    old.release()

    assert stored(ssm) == taken
    assert new.mine is not None and new_lock(ssm).read().same_as(new.mine)


def delay_first_write_after_read(client: Any, read: threading.Event, until: threading.Event) -> list[str]:
    """Botocore hooks on CLIENT: once it has read the lock (GetParameter; READ is set then), its next
    PutParameter or DeleteParameter waits until UNTIL is set (bounded), as a slow network would hold it.
    Returns the operations it delayed."""
    delayed: list[str] = []

    def seen(**_: Any) -> None:
        read.set()

    def hold(model: Any, **_: Any) -> None:
        if read.is_set() and model.name in ("PutParameter", "DeleteParameter") and not delayed:
            delayed.append(model.name)
            assert until.wait(timeout=20), "the other run never took the lock"

    client.meta.events.register("after-call.ssm.GetParameter", seen)
    client.meta.events.register("before-call.ssm.*", hold)
    return delayed


def test_two_runs_taking_over_one_stale_lock_never_both_hold_it(aws_environ):
    """The issue's race: runs A and B both find a dead run's lock; B's first write is delayed until A holds the
    lock. Deleting and re-creating let B delete A's fresh lock and take its own: both held it. Now exactly one
    wins, whichever order the writes land in."""
    with mock_aws():
        stale = here(dead_pid(), process_start="12345")
        first, second = boto3.client("ssm", region_name=REGION), boto3.client("ssm", region_name=REGION)
        plant(first, stale)
        a_holds, b_read = threading.Event(), threading.Event()
        delayed = delay_first_write_after_read(second, b_read, a_holds)
        a, b = new_lock(first), new_lock(second)
        outcomes: dict[str, str] = {}

        def run_b() -> None:
            try:
                b.acquire("bake-primal", command="deploy")
                outcomes["b"] = "holds"
            except DeployError as error:
                outcomes["b"] = str(error)

        thread = threading.Thread(target=run_b)
        thread.start()
        assert b_read.wait(timeout=20)  # B has read the stale lock and is about to write
        a.acquire("bake-primal", command="deploy")
        a_holds.set()
        thread.join(timeout=30)

        assert delayed == ["PutParameter"]  # B's write was the one held back
        assert a.mine is not None and outcomes["b"] != "holds"
        assert "A deploy of dev is running" in outcomes["b"]
        assert b.mine is None
        assert Holder.parse(first.get_parameter(Name=NAME)["Parameter"]["Value"]).same_as(a.mine)


def test_a_takeover_does_not_replace_a_lock_released_and_taken_since_it_was_read(ssm):
    """A slow run that read a stale lock long ago wins the takeover marker only after the first taker released
    it (and deleted its marker), and a third run took the lock meanwhile: the slow run must not replace it."""
    stale_value = json.dumps(asdict(here(dead_pid(), process_start="12345")))
    ssm.put_parameter(Name=NAME, Value=stale_value, Type="String")
    third = new_lock(ssm)
    ssm.delete_parameter(Name=NAME)
    third.acquire("setup", command="setup")
    slow = new_lock(ssm)

    assert slow._take_over(stale_value, this_process("deploy", "deploy")) is False

    assert Holder.parse(ssm.get_parameter(Name=NAME)["Parameter"]["Value"]).same_as(third.mine)
    assert [p["Name"] for p in ssm.describe_parameters()["Parameters"] if "takeover" in p["Name"]] == []
