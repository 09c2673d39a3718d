"""Progressive delivery end to end (issue 19): the real CLI deploys releases in steps on the embedded cloud, with
real requests through the load balancer (25 a second) from before each deploy to after it.

One environment (application kind, one instance a group), deployed once first (nothing serves yet: no steps); then,
with TRAFFIC_STEPS=10,50,100:
- a good release: promoted after its steps, none of the requests failed, and in each step the new version's share
  of the requests is within 10 points of the step's weight (Done 1);
- a release failing half of its requests (FAIL_RATE=0.5): aborted in its first step, at most 10 % of the requests
  failed, none after the abort, the old version alone serves after it (Done 2);
- a slow release (DELAY_MS above MAX_LATENCY_MS) aborted the same way; an alarm set to ALARM during step 2 rolls back
  (Done 3: the bound of one poll interval is asserted on a fake clock in tests/test_shift_traffic.py);
- the report.html of the good and of the failing run, rendered in headless Chromium (Done 7).
Then another environment set up in the earlier layout (its group serving through the shared tg-NAME) deploys with
TRAFFIC_STEPS=10,100: no failed request, no shared target group left in the listener (Done 5).

The listener's weights are watched from here every 20 ms: each request is given the weight in force when it started.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, TEST_ENV, ServerSite, make_alarm, server_client, subprocess_env, succeeded, wait_until
from headless import open_page

from deploy.naming import Names
from deploy.plans.traffic import current_weights
from deploy.views.traffic import Result, Traffic

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

RATE = 25.0  # requests a second
STACK = f"webapp-{TEST_ENV}"
SETTINGS = {
    "LOAD_BALANCER": "application",
    "DESIRED_CAPACITY": "1",
    "TRAFFIC_STEPS": "10,50,100",
    "STEP_SECONDS": "800",  # 4 s at the session's LOCAL_TIME_SCALE (0.005): 100 requests, 10 of them at 10 %
    "MIN_REQUESTS": "3",
    "MAX_LATENCY_MS": "150",
    "KEEP_PREVIOUS_SECONDS": "0",
}
ALARM = "canary-5xx"
MARGIN_S = 0.1  # requests this close to a weight change are not counted for either weight
ROWS = "[...document.querySelectorAll('table.steps tr.step')].map(r => r.innerText)"  # each step's row as shown
RUNS: dict[str, Path] = {}  # the good and the failing run's log folders, for the report's test


def target_group_of(group: str) -> str:
    return Names(app="webapp", env=TEST_ENV, domain="").group_target_group(group)


@dataclass
class Watch:
    """The listener's weights ({target group name: weight}) as sampled, with the time (monotonic) of each sample."""

    url: str
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        elbv2 = server_client(self.url, "elbv2")
        deadline = time.monotonic() + 600
        while not self.stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                [alb] = elbv2.describe_load_balancers(Names=[f"alb-{STACK}"])["LoadBalancers"]
                listeners = elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
                weights = current_weights(next(x for x in listeners if x["Port"] == 80)["DefaultActions"])
                self.samples.append((started, {arn.split("/")[1]: w for arn, w in weights.items()}))
            except Exception:  # a read that failed says nothing about the weights
                pass
            self.stop.wait(0.02)

    def weight(self, target_group: str, at: float) -> int | None:
        """TARGET_GROUP's weight at AT, if the samples on both sides agree (None near a change)."""
        before = [w for t, w in self.samples if t <= at - MARGIN_S]
        after = [w for t, w in self.samples if t >= at + MARGIN_S]
        if not before or not after:
            return None
        first, last = before[-1].get(target_group, 0), after[0].get(target_group, 0)
        return first if first == last else None

    def first(self, target_group: str, weight: int, since: float = 0.0) -> float:
        """When TARGET_GROUP was first seen at WEIGHT (after SINCE)."""
        return min(t for t, w in self.samples if t >= since and w.get(target_group, 0) == weight)


@dataclass
class Run:
    """One deploy under traffic: its output, exit code, the requests meanwhile, and the weights seen."""

    started: float
    ended: float
    code: int
    output: str
    results: list[Result]
    watch: Watch

    def during(self) -> list[Result]:
        return [r for r in self.results if self.started <= r.started <= self.ended]


@contextmanager
def traffic(site: ServerSite) -> Iterator[tuple[Traffic, Watch]]:
    """Requests through the site's URL at RATE a second, and the listener's weights watched, meanwhile."""
    url = json.loads(succeeded(site.inv("status", "--json")))["load_balancer"]["url"]
    sender = Traffic(url, seconds=600, rate=RATE)
    watch = Watch(site.url)
    threads = [threading.Thread(target=sender.run, daemon=True), threading.Thread(target=watch.run, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        yield sender, watch
    finally:
        sender.stop.set()
        watch.stop.set()
        for thread in threads:
            thread.join(timeout=30)


def deploy(site: ServerSite, env: dict[str, str] | None = None, during: Any = None) -> Run:
    """`inv deploy` under traffic; DURING(watch), if given, runs in a thread meanwhile. Ends once the requests
    sent after the deploy ended are in."""
    with traffic(site) as (sender, watch):
        time.sleep(1)  # requests before the deploy
        helper = threading.Thread(target=during, args=(watch,), daemon=True) if during else None
        if helper:
            helper.start()
        started = time.monotonic()
        result = site.inv("deploy", env=env)
        ended = time.monotonic()
        time.sleep(1)  # requests after it
        if helper:
            helper.join(timeout=30)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    return Run(started, ended, result.returncode, output, list(sender.results), watch)


def history(site: ServerSite) -> list[dict[str, Any]]:
    return list(json.loads(succeeded(site.inv("history", "--json")))["entries"])


def serving_version(site: ServerSite) -> str:
    url = json.loads(succeeded(site.inv("status", "--json")))["load_balancer"]["url"]
    results = Traffic(url, seconds=1, rate=20).run()
    versions = {r.version for r in results}
    assert all(r.ok for r in results) and len(versions) == 1, results
    return str(versions.pop())


@pytest.fixture(scope="module")
def site(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> ServerSite:
    """The environment, deployed once (nothing served before: promoted at once), the alarm of ALARM_NAMES made."""
    site = ServerSite.create(moto_server, TEST_ENV, tmp_path_factory.mktemp("progressive"), **SETTINGS)
    make_alarm(site.client("cloudwatch"), ALARM)
    succeeded(site.inv("setup"))
    first = succeeded(site.inv("deploy"))
    assert "nothing serves yet" in first  # no steps: nothing to step from
    return site


def test_a_good_release_moves_in_steps_and_is_promoted_with_its_figures(site: ServerSite) -> None:
    old = serving_version(site)

    run = deploy(site, env={"ALARM_NAMES": ALARM})

    assert run.code == 0, run.output
    RUNS["good"] = site.latest_run()
    failed = [r for r in run.results if not r.ok]
    assert not failed, f"{len(failed)} failed requests, e.g. {[(r.status, r.error) for r in failed[:3]]}"
    new_group = site.serving()["AutoScalingGroupName"]
    for number, weight in ((1, 10), (2, 50), (3, 100)):
        assert f"step {number}/3: {weight} % to {new_group}: " in run.output
    own = target_group_of(new_group)
    shares = {}
    for weight in (10, 50, 100):
        seen = [r for r in run.during() if r.ok and run.watch.weight(own, r.started) == weight]
        assert len(seen) >= 20, (weight, len(seen))
        shares[weight] = 100 * sum(r.version != old for r in seen) / len(seen)
    assert all(abs(share - weight) <= 10 for weight, share in shares.items()), shares
    [latest, *_] = history(site)
    assert (latest["outcome"], latest["group"]) == ("promoted", new_group)
    steps = latest["steps"]
    assert [(s["weight"], s["outcome"]) for s in steps] == [(10, "ok"), (50, "ok"), (100, "ok")]
    assert all(s["requests"] >= 3 and s["error_rate"] == 0 for s in steps), steps


def test_a_release_failing_half_its_requests_is_aborted_in_its_first_step(site: ServerSite) -> None:
    old = serving_version(site)
    serving = site.serving()["AutoScalingGroupName"]

    run = deploy(site, env={"FAIL_RATE": "0.5"})

    RUNS["bad"] = site.latest_run()
    assert run.code != 0
    assert "step 1/3: 10 % to asg-" in run.output and "failed (5xx" in run.output, run.output
    assert f"All requests went back to {serving}" in run.output
    during = run.during()
    failed = [r for r in during if not r.ok]
    assert failed and len(failed) <= 0.10 * len(during), (len(failed), len(during))
    # The abort: the first sample, after step 1 began, where the serving group's target group has every request.
    own_old = target_group_of(serving)
    step_1 = min(t for t, w in run.watch.samples if t > run.started and w.get(own_old) == 90)
    back = run.watch.first(own_old, 100, since=step_1)
    assert all(r.ok for r in run.results if r.started > back + MARGIN_S), "a request failed after the abort"
    assert {r.version for r in run.results if r.started > back + MARGIN_S} == {old}
    assert serving_version(site) == old and site.serving()["AutoScalingGroupName"] == serving
    [latest, *_] = history(site)
    assert latest["outcome"] == "aborted" and latest["detail"].startswith("step 1/3 failed: 5xx")
    [step] = latest["steps"]
    assert step["weight"] == 10 and step["outcome"] == "failed" and 10 < step["error_rate"] <= 100


def test_a_slow_release_is_aborted_on_its_latency(site: ServerSite) -> None:
    old = serving_version(site)

    run = deploy(site, env={"DELAY_MS": "400"})

    assert run.code != 0
    assert "step 1/3: 10 % to asg-" in run.output and "above MAX_LATENCY_MS 150" in run.output, run.output
    assert not [r for r in run.results if not r.ok]  # slow, not failing
    assert serving_version(site) == old
    [latest, *_] = history(site)
    assert latest["outcome"] == "aborted" and "p99" in latest["detail"]


def test_an_alarm_in_alarm_during_step_2_rolls_back(site: ServerSite) -> None:
    old = serving_version(site)
    serving = site.serving()["AutoScalingGroupName"]
    own_old = target_group_of(serving)
    cloudwatch = server_client(site.url, "cloudwatch")

    def alarm_in_step_2(watch: Watch) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if watch.samples and watch.samples[-1][1].get(own_old) == 50:
                time.sleep(0.5)
                cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="test: step 2")
                return
            time.sleep(0.02)

    try:
        run = deploy(site, env={"ALARM_NAMES": ALARM}, during=alarm_in_step_2)
    finally:
        cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="test: over")

    assert run.code != 0
    assert "step 2/3: 50 % to asg-" in run.output and f"failed (alarm {ALARM} in ALARM)" in run.output, run.output
    assert not [r for r in run.results if not r.ok]
    assert serving_version(site) == old
    [latest, *_] = history(site)
    assert latest["outcome"] == "aborted" and [s["outcome"] for s in latest["steps"]] == ["ok", "failed"]


def test_the_reports_of_a_good_and_a_failing_release_show_each_step(site: ServerSite) -> None:
    with open_page((RUNS["good"] / "report.html").as_uri()) as page:
        good = [str(r) for r in page.evaluate(ROWS)]
        text = str(page.evaluate("document.body.innerText"))
    assert [row.split("\t")[1] for row in good] == ["10 %", "50 %", "100 %"]
    assert all(row.split("\t")[-1] == "ok" for row in good), good
    assert "promoted" in text and "step 2: 50 %" in text  # the step's bar in the timeline
    with open_page((RUNS["bad"] / "report.html").as_uri()) as page:
        [bad] = [str(r) for r in page.evaluate(ROWS)]
        text = str(page.evaluate("document.body.innerText"))
    cells = bad.split("\t")
    assert cells[1] == "10 %" and cells[-1].startswith("failed 5xx"), cells
    assert "aborted" in text and "step 1: 10 %" in text


def test_a_run_killed_during_its_steps_is_undone_by_the_next_one_with_no_failed_request(site: ServerSite) -> None:
    """kill -9 in step 2 (the new group has half of the requests, never promoted): the next deploy's launch-asg
    sends every request back to the serving group before it removes the leftover and deletes its target group."""
    serving = site.serving()["AutoScalingGroupName"]
    own_old = target_group_of(serving)
    command = [sys.executable, "-m", "invoke", "deploy", "--env", site.env]
    with traffic(site) as (sender, watch):
        time.sleep(1)
        killed = subprocess.Popen(
            command,
            cwd=REPO,
            env=subprocess_env(site.environ()),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert wait_until(lambda: bool(watch.samples) and watch.samples[-1][1].get(own_old) == 50, 120)
        finally:
            killed.kill()
            killed.wait(timeout=30)
        [leftover] = [name for name in site.groups() if name != serving]
        left = target_group_of(leftover)
        assert watch.samples[-1][1].get(left) == 50  # killed with half of the requests on it
        output = succeeded(site.inv("deploy", env={"TRAFFIC_STEPS": "100"}))
        time.sleep(1)
    failed = [r for r in sender.results if not r.ok]
    assert not failed, f"{len(failed)} failed requests, e.g. {[(r.status, r.error) for r in failed[:3]]}"
    assert "removing the leftover of an earlier run that did not finish" in output
    assert f"all requests back to {serving}" in output
    assert leftover not in site.groups()
    half = min(t for t, w in watch.samples if w.get(left) == 50)
    back = watch.first(left, 0, since=half)
    gone = min(t for t, w in watch.samples if t > back and left not in w)
    assert back < gone  # its weight went back to the serving group before its target group left the listener
    names = [g["TargetGroupName"] for g in site.client("elbv2").describe_target_groups()["TargetGroups"]]
    assert left not in names


def test_an_environment_of_the_earlier_layout_moves_to_target_groups_per_group_in_steps(
    moto_server: str, tmp_path: Path
) -> None:
    """Its group serves through the shared tg-NAME (as the earlier layout attached every group); the next deploy,
    TRAFFIC_STEPS=10,100, steps from it and leaves no shared target group in the listener."""
    site = ServerSite.create(moto_server, TEST_ENV, tmp_path, **{**SETTINGS, "TRAFFIC_STEPS": "10,100"})
    succeeded(site.inv("setup"))
    succeeded(site.inv("deploy"))
    earlier_layout(site)

    run = deploy(site)

    assert run.code == 0, run.output
    assert "step 1/2: 10 % to asg-" in run.output and "step 2/2: 100 % to asg-" in run.output
    failed = [r for r in run.results if not r.ok]
    assert not failed, f"{len(failed)} failed requests, e.g. {[(r.status, r.error) for r in failed[:3]]}"
    assert f"tg-{STACK}" not in run.watch.samples[-1][1]
    assert list(run.watch.samples[-1][1]) == [target_group_of(site.serving()["AutoScalingGroupName"])]
    names = [g["TargetGroupName"] for g in site.client("elbv2").describe_target_groups()["TargetGroups"]]
    assert f"tg-{STACK}" not in names


def earlier_layout(site: ServerSite) -> None:
    """Move the serving group to the shared tg-NAME, as the earlier layout had it: the shared target group made
    again, the group attached to it, healthy there, the listener forwarding to it alone, the group's own target
    group detached and deleted."""
    elbv2, autoscaling = site.client("elbv2"), site.client("autoscaling")
    group = site.serving()
    [alb] = elbv2.describe_load_balancers(Names=[f"alb-{STACK}"])["LoadBalancers"]
    [own] = elbv2.describe_target_groups(Names=[target_group_of(group["AutoScalingGroupName"])])["TargetGroups"]
    shared = elbv2.create_target_group(
        Name=f"tg-{STACK}",
        Protocol="HTTP",
        Port=own["Port"],
        VpcId=alb["VpcId"],
        HealthCheckPath=own["HealthCheckPath"],
        HealthCheckIntervalSeconds=own["HealthCheckIntervalSeconds"],
        HealthyThresholdCount=own["HealthyThresholdCount"],
    )["TargetGroups"][0]["TargetGroupArn"]
    [listener] = elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]

    def forward(weights: dict[str, int]) -> None:
        groups = [{"TargetGroupArn": arn, "Weight": weight} for arn, weight in weights.items()]
        elbv2.modify_listener(
            ListenerArn=listener["ListenerArn"],
            DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": groups}}],
        )

    forward({own["TargetGroupArn"]: 100, shared: 0})  # health checked from now on
    autoscaling.attach_load_balancer_target_groups(
        AutoScalingGroupName=group["AutoScalingGroupName"], TargetGroupARNs=[shared]
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = elbv2.describe_target_health(TargetGroupArn=shared)["TargetHealthDescriptions"]
        if health and all(h["TargetHealth"]["State"] == "healthy" for h in health):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the group never got healthy in the shared target group")
    forward({shared: 100})
    autoscaling.detach_load_balancer_target_groups(
        AutoScalingGroupName=group["AutoScalingGroupName"], TargetGroupARNs=[own["TargetGroupArn"]]
    )
    elbv2.delete_target_group(TargetGroupArn=own["TargetGroupArn"])
