"""Safe under failure, end to end: the real CLI as subprocesses, real Packer, the session's moto server.

Two deploys at once, Ctrl-C (SIGINT) or SIGTERM at each slow step, kill -9 during the health wait
and a re-run, an interrupted cleanup and its re-run, rollback. One environment (`fail`, classic load
balancer) is set up and deployed once for the module; every test starts and ends with exactly one
serving group, which it reads from the cloud rather than assuming what an earlier test left.

A step is hit deterministically by making it slow: BUILD_COMMAND='sleep N' for build-app, a fake
`packer` first on PATH (one machine-readable line, then a long sleep) for the bakes, stopped
instances with a long HEALTH_TIMEOUT for wait-health, and an old group whose instances are
protected from scale-in for cleanup. Every process a test starts is killed in a finally.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conftest
import pytest
from botocore.exceptions import ClientError
from conftest import (
    REPO,
    RUN_TIMEOUT_S,
    ServerSite,
    image_of,
    instance_ids,
    instance_stopper,
    subprocess_env,
    tags_of,
    wait_until,
)

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

ENV = "fail"
STACK = f"webapp-{ENV}"
LOAD_BALANCER = f"elb-{STACK}"
LOCK_PARAMETER = f"/immutable-deploy/{STACK}/lock"
DESIRED = 2
HEALTH_TIMEOUT = 6
SLOW_HEALTH_TIMEOUT = "300"  # a wait that only an interrupt ends
MARKER_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 60.0


# --- helpers -------------------------------------------------------------------------------------


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


@dataclass
class Running:
    """A CLI run in the background; its stdout and stderr go to files that can be read at any time."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return read(self.stdout_path)

    def stderr(self) -> str:
        return read(self.stderr_path)

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def wait_for(self, text: str, timeout: float = MARKER_TIMEOUT_S) -> None:
        """Until TEXT is in its stdout; fails at once if the run ends first."""
        wait_until(lambda: text in self.stdout() or self.process.poll() is not None, timeout)
        assert text in self.stdout(), f"never saw {text!r} (exit {self.process.poll()}):\n{self.output()}"
        assert self.process.poll() is None, f"the run ended right after {text!r}:\n{self.output()}"

    def finish(self, timeout: float = EXIT_TIMEOUT_S) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the run did not end within {timeout:.0f}s:\n{self.output()}")

    def send(self, signum: int) -> None:
        assert self.process.poll() is None, self.output()
        self.process.send_signal(signum)


@dataclass
class Site(ServerSite):
    """The module's environment: its files, how to run the CLI on it, and its cloud."""

    _runs: itertools.count = field(default_factory=itertools.count, init=False, repr=False)

    @property
    def scratch(self) -> Path:
        """Where the output of background runs goes."""
        return self.root / "runs"

    @contextmanager
    def start(self, *args: str, env: dict[str, str | None] | None = None) -> Iterator[Running]:
        number = next(self._runs)
        stdout_path, stderr_path = self.scratch / f"run-{number}.out", self.scratch / f"run-{number}.err"
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "invoke", *args, "--env", ENV],
                cwd=REPO,
                env=subprocess_env(self.environ(env)),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )
        try:
            yield Running(process, stdout_path, stderr_path)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    def group(self, name: str) -> dict[str, Any] | None:
        return self.groups().get(name)

    def serving(self) -> dict[str, Any]:
        """The one group of the environment, promoted (every test starts and ends with exactly one)."""
        group = super().serving()
        assert "Promoted" in tags_of(group), f"{group['AutoScalingGroupName']} was never promoted"
        return group

    def lock(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.client("ssm").get_parameter(Name=LOCK_PARAMETER)["Parameter"]["Value"])
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ParameterNotFound"
            return None

    def packer_leftovers(self) -> list[str]:
        """Temporary resources a Packer build leaves when it is not allowed to clean up."""
        ec2 = self.client("ec2")
        keys = [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]
        groups = [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]]
        return [name for name in keys + groups if name.startswith("packer")]


def processes(*argv: str) -> list[int]:
    """Pids of live processes of this host whose command line is exactly ARGV."""
    wanted = [arg.encode() for arg in argv]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes().split(b"\0")[:-1] == wanted:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def assert_serves(site: Site, group: dict[str, Any]) -> None:
    """GROUP's instances are all InService at the load balancer, and nothing else is registered."""
    ids = instance_ids(group)
    assert len(ids) == DESIRED, group
    assert site.lb_states() == dict.fromkeys(ids, "InService")


def assert_clean_exit(output: str) -> None:
    assert "Traceback" not in output, output
    assert "Exception" not in output, output


def assert_untouched(site: Site, before: dict[str, Any]) -> None:
    """BEFORE still serves alone, unchanged; no new group or template is left; the lock is released."""
    name = before["AutoScalingGroupName"]
    assert sorted(site.groups()) == [name]
    after = site.serving()
    assert instance_ids(after) == instance_ids(before)
    assert after["LoadBalancerNames"] == [LOAD_BALANCER]
    assert_serves(site, after)
    assert site.templates() == [before["LaunchTemplate"]["LaunchTemplateName"]]
    assert site.lock() is None
    assert site.packer_leftovers() == []
    assert not site.state_path.exists()  # nothing is noted locally: the account holds what is pending


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """conftest's succeeded, and no exception named in the output either."""
    stdout = conftest.succeeded(result)
    assert_clean_exit(result.stdout + result.stderr)
    return stdout


def fake_packer(folder: Path, seconds: int) -> dict[str, str]:
    """A `packer` that says one line as Packer does (-machine-readable), then sleeps: PATH for it."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "packer"
    script.write_text(
        # `packer version` is read before the first bake: it answers as Debian's Packer does.
        '#!/bin/sh\n[ "$1" = version ] && echo "Packer v1.6.6" && exit 0\n'
        f'echo "$(date +%s),,ui,say,==> local: fake packer baking"\nexec sleep {seconds}\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def site(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = Site.create(
        moto_server,
        ENV,
        tmp_path_factory.mktemp("e2e-failures"),
        LOAD_BALANCER="classic",
        DESIRED_CAPACITY=str(DESIRED),
        HEALTH_TIMEOUT=str(HEALTH_TIMEOUT),
        POLL_SECONDS="1",  # RETAIN_IMAGES stays at its default, 2
    )
    site.scratch.mkdir()
    succeeded(site.inv("setup"))
    succeeded(site.inv("deploy"))
    assert_serves(site, site.serving())
    yield site


# --- one deploy at a time ------------------------------------------------------------------------


def test_two_deploys_started_together_one_proceeds_the_other_is_refused_naming_the_holder(site):
    before = site.serving()
    with site.start("deploy") as first, site.start("deploy") as second:
        codes = {first.pid: first.finish(RUN_TIMEOUT_S), second.pid: second.finish(RUN_TIMEOUT_S)}
        runs = {first.pid: first, second.pid: second}
    assert sorted(codes.values()) == [0, 1], {pid: run.output() for pid, run in runs.items()}
    winner = next(run for pid, run in runs.items() if codes[pid] == 0)
    loser = next(run for pid, run in runs.items() if codes[pid] == 1)

    refusal = loser.stderr().strip()
    assert refusal.startswith("error: ") and "\n" not in refusal, refusal
    assert f"A deploy of {ENV} is running:" in refusal
    assert f"@{socket.gethostname()} pid {winner.pid}, since " in refusal  # the holder is named
    assert "inv unlock --env fail" in refusal
    assert_clean_exit(loser.output())
    assert "==> launch-asg" not in loser.stdout()  # refused at its first step
    assert_clean_exit(winner.output())
    assert "deployed " in winner.stdout()

    after = site.serving()  # exactly one group: the winner's
    assert after["AutoScalingGroupName"] > before["AutoScalingGroupName"]
    assert_serves(site, after)
    assert site.templates() == [after["LaunchTemplate"]["LaunchTemplateName"]]
    assert site.lock() is None


# --- interrupted at each step --------------------------------------------------------------------


def test_sigint_during_build_app_stops_the_build_and_changes_nothing(site):
    before = site.serving()
    build = ("sleep", "37")
    with site.start("deploy", env={"BUILD_COMMAND": " ".join(build)}) as run:
        run.wait_for("==> build-app")
        assert wait_until(lambda: bool(processes(*build)), MARKER_TIMEOUT_S), run.output()
        run.send(signal.SIGINT)
        code = run.finish()

    assert code == 130, run.output()
    assert "error: build-app: interrupted." in run.stderr()
    assert_clean_exit(run.output())
    assert wait_until(lambda: not processes(*build), 10), "the build command was left running"
    assert_untouched(site, before)


@pytest.mark.parametrize("step", ["bake-primal", "bake-carnivore"])
def test_sigint_during_a_bake_stops_packer_and_changes_nothing(site, step, tmp_path):
    before = site.serving()
    seconds = 38 if step == "bake-primal" else 39
    environ = fake_packer(tmp_path / "bin", seconds)
    if step == "bake-primal":  # a new source image: the account knows no primal image baked from it
        environ["SOURCE_AMI"] = site.primal_image()
    with site.start("deploy", env=environ) as run:
        run.wait_for("fake packer baking")
        assert f"==> {step}" in run.stdout()
        run.send(signal.SIGINT)
        code = run.finish()

    assert code == 130, run.output()
    assert f"error: {step}: interrupted." in run.stderr()
    assert_clean_exit(run.output())
    assert not processes("sleep", str(seconds)), "packer was left running"
    assert_untouched(site, before)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_wait_health_removes_the_new_group_and_the_old_one_keeps_serving(site, signum):
    before = site.serving()
    old_name = before["AutoScalingGroupName"]
    with (
        instance_stopper(site, old_name, DESIRED) as new,
        site.start("deploy", env={"HEALTH_TIMEOUT": SLOW_HEALTH_TIMEOUT}) as run,
    ):
        run.wait_for(f"waiting up to {SLOW_HEALTH_TIMEOUT}s")
        assert wait_until(lambda: bool(new), MARKER_TIMEOUT_S), run.output()
        run.wait_for(f"0/{DESIRED} healthy")
        assert site.group(new["name"]) is not None
        run.send(signum)
        code = run.finish()

    assert code == 130, run.output()
    assert f"removing the new group {new['name']} (interrupted); the previous group keeps serving" in run.stdout()
    assert "error: wait-health: interrupted. Logs: " in run.stderr()
    assert_clean_exit(run.output())
    assert new["template"] not in site.templates()
    assert_untouched(site, before)


def test_sigint_during_cleanup_wait_stops_the_wait_and_a_rerun_finishes(site):
    serving = site.serving()
    old_name, _ = site.add_legacy_group(image_of(serving))
    # A window of 4000 s (20 s at the scale): the old group is kept, and `--wait` waits for its window's end.
    keep = {"KEEP_PREVIOUS_SECONDS": "4000"}
    succeeded(site.inv("deploy", env=keep))  # baked (an image given by hand would be protected from then on)
    new = next(name for name in site.groups() if name not in (old_name, serving["AutoScalingGroupName"]))

    with site.start("cleanup", "--wait", env=keep) as run:
        run.wait_for("until AWS has emptied")
        run.send(signal.SIGINT)
        code = run.finish()

    assert code == 130, run.output()
    assert "error: cleanup: interrupted." in run.stderr()
    assert_clean_exit(run.output())
    kept = site.group(serving["AutoScalingGroupName"])  # handed to AWS: kept until its window ends, then sized 0
    assert kept is not None and kept["LoadBalancerNames"] == []
    actions = site.client("autoscaling").describe_scheduled_actions(
        AutoScalingGroupName=serving["AutoScalingGroupName"]
    )
    assert [a["ScheduledActionName"] for a in actions["ScheduledUpdateGroupActions"]] == ["retire"]
    assert old_name not in site.groups()  # the original scripts' group: sized 0 at once
    still = site.groups()[new]  # the serving group was not touched
    assert still["LoadBalancerNames"] == [LOAD_BALANCER]
    assert site.lock() is None

    output = succeeded(site.inv("cleanup", "--wait", env=keep))  # the rerun waits the window out, then deletes

    assert f"deleted group {serving['AutoScalingGroupName']}" in output  # once AWS emptied it
    assert sorted(site.all_groups()) == [new]  # the original scripts' group too (emptied at once: the first run)
    configurations = site.client("autoscaling").describe_launch_configurations()["LaunchConfigurations"]
    assert [c for c in configurations if c["LaunchConfigurationName"].startswith(f"lc-{STACK}")] == []


# --- a crash, and the run after it ---------------------------------------------------------------


def test_kill_9_during_wait_health_then_a_rerun_converges_to_one_healthy_group(site):
    before = site.serving()
    old_name = before["AutoScalingGroupName"]
    with (
        instance_stopper(site, old_name, DESIRED) as new,
        site.start("deploy", env={"HEALTH_TIMEOUT": SLOW_HEALTH_TIMEOUT}) as run,
    ):
        run.wait_for(f"0/{DESIRED} healthy")
        assert new, run.output()
        run.send(signal.SIGKILL)
        assert run.finish() == -signal.SIGKILL
        killed = run.pid

    # The crash cleaned nothing: its lock, its group and its template are left.
    assert (site.lock() or {}).get("pid") == killed
    assert site.group(new["name"]) is not None
    assert new["template"] in site.templates()

    output = succeeded(site.inv("deploy"))

    assert f"warning: removing a stale deploy lock of {ENV}" in output
    assert f"pid {killed}" in output
    assert "removing the leftover of an earlier run that did not finish" in output
    assert f"deleted group {new['name']}" in output
    after = site.serving()  # exactly one group, promoted
    assert after["AutoScalingGroupName"] not in (old_name, new["name"])
    assert_serves(site, after)
    assert site.templates() == [after["LaunchTemplate"]["LaunchTemplateName"]]
    assert site.lock() is None


# --- rollback ------------------------------------------------------------------------------------


def test_rollback_after_two_deploys_puts_the_first_image_back(site):
    first_image = tags_of(site.serving())["Image"]
    succeeded(site.inv("deploy"))  # each build differs (version.json): a new image is baked
    second = site.serving()
    second_image = tags_of(second)["Image"]
    assert second_image != first_image
    assert site.image(first_image) is not None  # retained for a rollback (RETAIN_IMAGES=2)

    output = succeeded(site.inv("rollback"))

    assert f"rolling back from {second_image} to {first_image}" in output
    for step in ("build-app", "bake-primal", "bake-carnivore"):
        assert f"==> {step}" not in output
    after = site.serving()
    assert after["AutoScalingGroupName"] > second["AutoScalingGroupName"]
    assert tags_of(after)["Image"] == first_image
    assert_serves(site, after)
    assert site.templates() == [after["LaunchTemplate"]["LaunchTemplateName"]]
    assert site.image(second_image) is not None  # now itself the image to roll back to
    assert site.lock() is None


def test_rollback_with_nothing_retained_says_so_and_changes_nothing(site):
    before = site.serving()
    # With RETAIN_IMAGES=0 a cleanup deregisters every deployment image but the serving one.
    # --wait: the earlier groups, handed to AWS, are gone first (their images were in use until then).
    succeeded(site.inv("cleanup", "--wait", env={"RETAIN_IMAGES": "0"}))
    assert site.image(tags_of(before)["Image"]) is not None

    result = site.inv("rollback")

    assert result.returncode == 1, result.stdout + result.stderr
    assert_clean_exit(result.stdout + result.stderr)
    message = result.stderr.strip()
    assert message.startswith("error: rollback: Nothing to roll back to:"), message
    assert f"no earlier deployed image of {ENV} is retained (RETAIN_IMAGES=2)" in message
    assert "--to ami-" in message
    assert_untouched(site, before)
