"""Real traffic through real deploys: the embedded cloud runs the baked app, its load balancer forwards requests
to instances that pass real health checks, and requests keep flowing from before the first deploy to the end.

For both kinds of load balancer, with requests running throughout (in this process, through the environment's
URL, as `inv traffic` sends them): first deploy, second deploy, rollback, a deploy whose app fails its health
check (aborted), and a launch + wait-health step by step followed by `inv cleanup`. For each: zero failed
requests (for the first deploy: none once the site first answered); the new version is served only once its
group is healthy at the load balancer; the old version is no longer served once the run ended (retired); both
versions are served while the groups overlap. Expectations are AWS's: on the classic kind both groups stay
registered during the overlap (moto drops the old group on creating the new one and the tool re-registers it;
the branch fixing moto makes that unnecessary).

Another app, not the example: a static site served by `python3 -m http.server` on APP_PORT 8080, with its own
health path; its versions are told apart by the digest of the body.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import (
    REPO,
    RUN_TIMEOUT_S,
    TEST_ENV,
    ServerView,
    copy_example_app,
    image_of,
    instance_ids,
    run_inv,
    succeeded,
)

from deploy.naming import Names
from deploy.views.traffic import Result, Traffic

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

STACK = f"webapp-{TEST_ENV}"
DESIRED = 2
HEALTH_TIMEOUT = 4
BROKEN_HEALTH_TIMEOUT = 2  # the aborted deploy waits it out in full: no longer than it takes to prove the abort
RATE = 25.0  # requests a second, throughout
WATCH_INTERVAL_S = 0.02


@dataclass
class Sample:
    started: float
    in_service: frozenset[str]


@dataclass
class Phase:
    name: str
    started: float
    ended: float = 0.0
    old_ids: frozenset[str] = frozenset()
    new_ids: frozenset[str] = frozenset()
    output: str = ""


@dataclass
class Site(ServerView):
    kind: str = "classic"
    samples: list[Sample] = field(default_factory=list)

    def in_service(self) -> frozenset[str]:
        """Instances the load balancer reports in service (classic: InService; application: healthy)."""
        if self.kind == "classic":
            return frozenset(i for i, state in self.lb_states().items() if state == "InService")
        # Application: healthy in a target group the listener forwards to with a weight above 0 (each group has its
        # own target group; one at weight 0 is health checked but takes no request).
        elbv2 = self.client("elbv2")
        [alb] = elbv2.describe_load_balancers(Names=[f"alb-{STACK}"])["LoadBalancers"]
        [listener] = elbv2.describe_listeners(LoadBalancerArn=alb["LoadBalancerArn"])["Listeners"]
        action = listener["DefaultActions"][0]
        weighted = (action.get("ForwardConfig") or {}).get("TargetGroups") or [
            {"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}
        ]
        serving: set[str] = set()
        for group in weighted:
            if group.get("Weight", 1):
                found = elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])["TargetHealthDescriptions"]
                serving.update(d["Target"]["Id"] for d in found if d["TargetHealth"]["State"] == "healthy")
        return frozenset(serving)

    def lb_url(self) -> str:
        status = json.loads(succeeded(run_inv("status", "--env", TEST_ENV, "--json")))
        url = status["load_balancer"]["url"]
        assert url.startswith("http://127.0.0.1:"), url
        return url


@contextmanager
def background(step: Callable[[], None], interval: float) -> Iterator[None]:
    """STEP every INTERVAL seconds in a thread while the block runs (bounded by the run's timeout)."""
    done = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + 20 * RUN_TIMEOUT_S
        while not done.is_set() and time.monotonic() < deadline:
            step()
            done.wait(interval)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)


@contextmanager
def traffic_and_health(site: Site, url: str) -> Iterator[Traffic]:
    """Requests to URL at RATE a second, and the load balancer's in-service instances every 20 ms, meanwhile."""
    traffic = Traffic(url, seconds=20 * RUN_TIMEOUT_S, rate=RATE)
    sender = threading.Thread(target=traffic.run, daemon=True)

    def watch() -> None:
        started = time.monotonic()
        with contextlib.suppress(Exception):  # a read that failed says nothing about health
            site.samples.append(Sample(started, site.in_service()))

    sender.start()
    try:
        with background(watch, WATCH_INTERVAL_S):
            yield traffic
    finally:
        traffic.stop.set()
        sender.join(timeout=30)


def run_phase(site: Site, name: str, *args: str, env: dict[str, str] | None = None, ok: bool = True) -> Phase:
    before = site.groups()
    phase = Phase(name, time.monotonic(), old_ids=frozenset(i for g in before.values() for i in instance_ids(g)))
    result = run_inv(*args, "--env", TEST_ENV, env=env, timeout=RUN_TIMEOUT_S)
    phase.ended = time.monotonic()
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert (result.returncode == 0) == ok, output
    new_groups = {n: g for n, g in site.groups().items() if n not in before}
    phase.new_ids = frozenset(i for g in new_groups.values() for i in instance_ids(g))
    phase.output = output
    return phase


def during(results: list[Result], phase: Phase) -> list[Result]:
    return [r for r in results if phase.started <= r.started <= phase.ended]


def versions_until(results: list[Result], moment: float) -> set[str]:
    return {str(r.version) for r in results if r.ok and r.ended < moment}


def assert_no_failures(results: list[Result], since: float) -> None:
    failed = [r for r in results if r.started >= since and not r.ok]
    assert not failed, f"{len(failed)} failed requests, e.g. {[(r.status, r.error) for r in failed[:3]]}"


def assert_new_version_only_once_healthy(site: Site, results: list[Result], phase: Phase, new: str) -> None:
    """No response of the new version ended before a moment when the load balancer still reported none of the new
    group's instances in service (health only turns healthy once here, so that would be a response from an
    instance that was not healthy yet)."""
    first_new = min(r.ended for r in results if r.ok and r.version == new and r.started >= phase.started)
    out_of_service = [
        s.started for s in site.samples if s.started >= phase.started and not (s.in_service & phase.new_ids)
    ]
    first_healthy = min(
        (s.started for s in site.samples if s.started >= phase.started and s.in_service & phase.new_ids),
        default=float("inf"),
    )
    before_healthy = [t for t in out_of_service if t < first_healthy]
    assert before_healthy, "the watcher never saw the new group out of service"
    assert first_new >= max(before_healthy), "the new version was served before its group was healthy"


def check_switch(site: Site, traffic: Traffic, phase: Phase, old: str) -> str:
    """A deploy or rollback that replaced OLD: zero failures, the new version only once healthy, both during the
    overlap, and only the new one once the run ended. Returns the new version."""
    results = list(traffic.results)
    assert_no_failures(results, phase.started)
    in_phase = [r for r in during(results, phase) if r.ok]
    new_versions = {str(r.version) for r in in_phase} - {old}
    assert len(new_versions) == 1, f"{phase.name}: versions during the run: {sorted({r.version for r in in_phase})}"
    [new] = new_versions
    assert_new_version_only_once_healthy(site, results, phase, new)
    first_new = min(r.ended for r in in_phase if r.version == new)
    if site.kind == "classic":  # both groups registered during the overlap; an ALB switches by weight, at once
        assert any(r.version == old and r.started > first_new for r in in_phase), (
            f"{phase.name}: the old version was not served side by side with the new one"
        )
    return new


def wait_for_requests_after(traffic: Traffic, moment: float, count: int = 10) -> list[Result]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = [r for r in list(traffic.results) if r.started > moment]
        if len(after) >= count:
            return after
        time.sleep(0.05)
    raise AssertionError("no traffic after the run")


def assert_only(traffic: Traffic, phase: Phase, version: str) -> None:
    after = wait_for_requests_after(traffic, phase.ended)
    assert {r.version for r in after if r.ok} == {version}, f"after {phase.name}: {[r.version for r in after]}"
    assert all(r.ok for r in after)


def write_env(env_dir: Path, **settings: str) -> None:
    with (env_dir / f"{TEST_ENV}.env").open("a", encoding="utf-8") as env_file:
        env_file.write("".join(f"{key}={value}\n" for key, value in settings.items()))


@pytest.mark.parametrize("kind", ["classic", "application"])
def test_traffic_flows_through_deploys_rollback_an_aborted_deploy_and_cleanup(kind, env_dir, fresh_cloud, tmp_path):
    app = copy_example_app(tmp_path / "app")
    write_env(
        env_dir,
        LOAD_BALANCER=kind,
        DESIRED_CAPACITY=str(DESIRED),
        HEALTH_TIMEOUT=str(HEALTH_TIMEOUT),
        APP_DIR=os.path.relpath(app, REPO),
        RETAIN_IMAGES="2",
    )
    site = Site(fresh_cloud, TEST_ENV, kind=kind)
    succeeded(run_inv("setup", "--env", TEST_ENV, timeout=RUN_TIMEOUT_S))
    url = site.lb_url()

    with traffic_and_health(site, url) as traffic:
        # First deploy: nothing answers before it (503), then the first version, never a failure once served.
        first = run_phase(site, "first deploy", "deploy")
        assert f"{url.rstrip('/')}/" in first.output  # the summary prints the URL that answers
        results = list(traffic.results)
        first_ok = min(r.started for r in results if r.ok)
        assert_no_failures(results, first_ok)
        [v1] = {str(r.version) for r in results if r.ok}
        assert_new_version_only_once_healthy(site, results, first, v1)
        assert_only(traffic, first, v1)

        # Second deploy: a new build, served side by side with the first, which is then retired.
        second = run_phase(site, "second deploy", "deploy")
        v2 = check_switch(site, traffic, second, v1)
        assert v2 != v1
        assert_only(traffic, second, v2)

        # Rollback: the first image, and its version, come back the same way.
        rollback = run_phase(site, "rollback", "rollback")
        assert check_switch(site, traffic, rollback, v2) == v1
        assert_only(traffic, rollback, v1)

        # A release whose health endpoint fails: caught by wait-health, aborted; the old group serves on.
        broken = run_phase(
            site,
            "aborted deploy",
            "deploy",
            env={
                "START_COMMAND": "HEALTH_CHECK_PATH=/moved python3 server.py",
                "HEALTH_TIMEOUT": str(BROKEN_HEALTH_TIMEOUT),
            },
            ok=False,
        )
        assert f"was not healthy within {BROKEN_HEALTH_TIMEOUT}s" in broken.output
        assert "removing the new group" in broken.output
        seen = set().union(*(s.in_service for s in site.samples if broken.started <= s.started <= broken.ended))
        assert seen == broken.old_ids, "only the serving group was ever in service during the aborted deploy"
        assert_no_failures(list(traffic.results), broken.started)
        assert {r.version for r in during(list(traffic.results), broken) if r.ok} == {v1}
        assert_only(traffic, broken, v1)
        assert len(site.groups()) == 1

        # Step by step: a new group next to the serving one, healthy; shift-traffic promotes it; then cleanup retires
        # the old one.
        launch = run_phase(site, "launch-asg", "launch-asg")
        wait = run_phase(site, "wait-health", "wait-health")
        assert_no_failures(list(traffic.results), launch.started)
        healthy = wait_for_requests_after(traffic, wait.ended, count=20)
        if kind == "classic":
            v3 = ({str(r.version) for r in healthy if r.ok} - {v1}).pop()
            assert {r.version for r in healthy if r.ok} == {v1, v3}, "both groups serve until cleanup"
        else:  # healthy at weight 0: the serving group takes every request until shift-traffic moves them
            assert {r.version for r in healthy if r.ok} == {v1}
        shift = run_phase(site, "shift-traffic", "shift-traffic")
        both = wait_for_requests_after(traffic, shift.ended, count=20)
        if kind == "classic":
            assert {r.version for r in both if r.ok} == {v1, v3}, "both groups serve until cleanup"
        else:  # every request to the new group (TRAFFIC_STEPS=100); the old one, at weight 0, until cleanup
            v3 = ({str(r.version) for r in both if r.ok} - {v1}).pop()
            assert {r.version for r in both if r.ok} == {v3}
        cleanup = run_phase(site, "cleanup", "cleanup")
        assert_no_failures(list(traffic.results), launch.started)
        assert_only(traffic, cleanup, v3)
        assert len(site.groups()) == 1

    summary = traffic.results
    assert len(summary) > RATE * 10, f"too little traffic to prove anything ({len(summary)} requests)"


def test_another_app_on_another_port_and_inv_traffic(env_dir, fresh_cloud, tmp_path):
    """Not the example app: a static site served by `python3 -m http.server` on APP_PORT 8080."""
    app = tmp_path / "static-site"
    app.mkdir()
    build = "mkdir -p dist && echo ok > dist/health.txt && (echo '<h1>static</h1>'; date +%s%N) > dist/index.html"
    write_env(
        env_dir,
        LOAD_BALANCER="application",
        DESIRED_CAPACITY="1",
        APP_DIR=os.path.relpath(app, REPO),
        BUILD_COMMAND=build,
        APP_FILES="dist/*",
        START_COMMAND='python3 -m http.server "$PORT" --bind "$HOST"',
        APP_PORT="8080",
        HEALTH_CHECK_PATH="/health.txt",
    )
    site = Site(fresh_cloud, TEST_ENV, kind="application")
    succeeded(run_inv("setup", "--env", TEST_ENV, timeout=RUN_TIMEOUT_S))
    [shared] = site.client("elbv2").describe_target_groups(Names=[f"tg-{STACK}"])["TargetGroups"]
    assert (shared["Port"], shared["HealthCheckPath"]) == (8080, "/health.txt")
    web = site.client("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{STACK}-web"]}])
    assert [p["FromPort"] for p in web["SecurityGroups"][0]["IpPermissions"]] == [8080]

    output = succeeded(run_inv("deploy", "--env", TEST_ENV, timeout=RUN_TIMEOUT_S))
    url = site.lb_url()
    assert url in output

    result = run_inv("traffic", "--env", TEST_ENV, "--seconds", "2", "--rate", "10", "--json", timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert (summary["url"], summary["failed"], summary["ok"]) == (url, 0, 20)
    [version] = summary["versions"]
    assert version.startswith("body ")  # no X-App-Version header: told apart by the body's digest
    assert "ok  10  failed   0" in result.stderr  # a line a second

    status = json.loads(succeeded(run_inv("status", "--env", TEST_ENV, "--json")))
    [serving] = status["groups"]
    assert serving["instances"][0]["app"].startswith("pid ")
    assert image_of(site.serving()) == serving["image"]

    # The first deploy moved from setup's shared tg-NAME to the group's own target group, on APP_PORT.
    elbv2 = site.client("elbv2")
    first = site.serving()["AutoScalingGroupName"]
    assert [
        (g["TargetGroupName"].startswith("tg"), g["Port"]) for g in elbv2.describe_target_groups()["TargetGroups"]
    ] == [(True, 8080)]

    # APP_PORT 8080 → 8081 on the application kind: refused until setup opens the port (nothing launched), then
    # deployed under traffic with 0 failed requests, the new group's target group on 8081.
    moved = {"APP_PORT": "8081"}
    refused = run_inv("deploy", "--env", TEST_ENV, "--image-id", image_of(site.serving()), env=moved)
    assert refused.returncode != 0 and "run `inv setup --env test` first" in refused.stderr, refused.stderr
    assert list(site.groups()) == [first]
    succeeded(run_inv("setup", "--env", TEST_ENV, env=moved, timeout=RUN_TIMEOUT_S))
    web = site.client("ec2").describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{STACK}-web"]}])
    assert sorted(p["FromPort"] for p in web["SecurityGroups"][0]["IpPermissions"]) == [8080, 8081]
    with traffic_and_health(site, url) as traffic:
        wait_for_requests_after(traffic, time.monotonic(), count=10)
        change = run_phase(site, "port change", "deploy", "--wait-retirement", env=moved)  # the old one deleted
        after = wait_for_requests_after(traffic, change.ended, count=10)
    assert_no_failures(list(traffic.results), 0.0)
    assert len(traffic.results) >= 20 and all(r.ok for r in after)
    [(name, port)] = [(g["TargetGroupName"], g["Port"]) for g in elbv2.describe_target_groups()["TargetGroups"]]
    assert port == 8081 and name == Names(app="webapp", env=TEST_ENV, domain="").group_target_group(
        site.serving()["AutoScalingGroupName"]
    )
