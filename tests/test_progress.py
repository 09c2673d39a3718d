"""Progress a person can follow: step lines with elapsed times, `n/N healthy` lines (live on a terminal,
plain otherwise), the deploy summary with its total time, and run log folders with pruning."""

from __future__ import annotations

import dataclasses
import io
import re
from pathlib import Path

import pytest
from conftest import TEST_ENV, run_inv
from operator_env import (
    FakeClock,
    bake_image,
    create_zone,
    deploy,
    deployed_on_server,
    make_environment,
    output,
    set_up,
)

from deploy.logs import RunLog, runs_to_prune
from deploy.steps.deploy import finish_deploy
from deploy.steps.launch_asg import launch_group
from deploy.steps.wait_health import wait_for_new_group

HEALTH_LINE = re.compile(
    r"^  (\d+)/(\d+) healthy \(group InService\+Healthy \d+, InService at load balancer \d+\)"
    r"( — steady \d+/\d+)?$"
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_step_prints_its_start_and_its_end_with_the_elapsed_time(tmp_path: Path) -> None:
    clock = FakeClock()
    log = RunLog("dev01", root=tmp_path, out=io.StringIO(), clock=clock)
    with log.step_context("launch-asg"):
        log.say("  created group asg-x")
        clock.now += 2.25
    with pytest.raises(RuntimeError), log.step_context("wait-health"):
        clock.now += 61
        raise RuntimeError("boom")
    assert log.out.getvalue().splitlines() == [
        "==> launch-asg",
        "  created group asg-x",
        "<== launch-asg done in 2.2s",
        "==> wait-health",
        "<== wait-health failed after 61.0s",
    ]
    lines = (log.dir / "run.log").read_text().splitlines()
    assert re.fullmatch(r"\S+ \[launch-asg\]   created group asg-x", lines[1])
    assert log.elapsed() == pytest.approx(63.25)


def test_progress_is_plain_lines_when_not_a_terminal(tmp_path: Path) -> None:
    log = RunLog("dev01", root=tmp_path, out=io.StringIO())
    for line in ("  0/2 healthy", "  1/2 healthy", "  2/2 healthy"):
        log.progress(line)
    log.end_progress()
    assert log.out.getvalue() == "  0/2 healthy\n  1/2 healthy\n  2/2 healthy\n"


def test_progress_rewrites_one_live_line_on_a_terminal(tmp_path: Path) -> None:
    log = RunLog("dev01", root=tmp_path, out=Terminal())
    log.progress("  0/2 healthy")
    log.progress("  2/2 healthy")
    log.end_progress()
    assert log.out.getvalue() == "\r\x1b[K  0/2 healthy\r\x1b[K  2/2 healthy\n"


def test_the_health_wait_prints_one_n_of_n_line_per_poll_in_ci_logs(cloud, tmp_path, monkeypatch):
    create_zone()
    environment = set_up(make_environment(tmp_path))
    deploy(environment)
    group = launch_group(environment, image_id=bake_image("staging"))
    clock = FakeClock()
    environment.clock, environment.sleep = clock, clock.sleep  # no real sleeps
    environment.config = dataclasses.replace(environment.config, poll_seconds=1)
    start = len(output(environment))

    assert wait_for_new_group(environment) == group

    lines = output(environment)[start:].splitlines()
    assert lines[0] == f"  waiting up to 900s for {group}"  # HEALTH_TIMEOUT of env/defaults.env
    polls = [line for line in lines if "healthy (" in line]
    # The first poll once the load balancer could count them healthy (threshold 2 x interval 30 s): all healthy.
    assert len(polls) == 1 and clock.now == 160.0
    assert all(HEALTH_LINE.match(line) for line in polls), polls
    assert [HEALTH_LINE.match(line).group(1, 2) for line in polls] == [("2", "2")]
    assert lines[-2] == f"  {group} is healthy"  # wait-health, then shift-traffic promotes it
    assert lines[-1].startswith(f"  promoted {group} (")
    assert "\r" not in output(environment) and "\x1b" not in output(environment)


def test_the_deploy_summary_has_image_group_count_url_logs_and_total_time(cloud, tmp_path):
    create_zone()
    clock = FakeClock()
    environment = set_up(make_environment(tmp_path, clock=clock))
    group, image = deploy(environment)
    clock.now += 754.25

    summary = finish_deploy(environment)

    assert summary["image"] == image and summary["group"] == group and summary["instances"] == 2
    assert summary["url"] == "http://staging.example.com/"
    assert summary["seconds"] == pytest.approx(754.2, abs=0.06)
    text = output(environment)
    assert f"deployed {image} as {group}: 2/2 instances healthy;" in text
    assert f"http://staging.example.com/  Logs: {summary['logs']}" in text
    assert f"  total time {summary['seconds']:.1f}s" in text


def test_runs_to_prune_keeps_the_newest_and_ignores_other_folders() -> None:
    runs = [f"2026010{day}T000000.000000Z" for day in range(1, 6)]
    assert runs_to_prune([*runs, "latest", "notes"], keep=2) == runs[:3]
    assert runs_to_prune(runs, keep=10) == []
    assert runs_to_prune(runs, keep=0) == runs[:4]  # the run being written is always kept


def test_old_runs_beyond_log_runs_are_pruned(tmp_path: Path) -> None:
    (tmp_path / "dev01" / "keep-me").mkdir(parents=True)
    made = [RunLog("dev01", root=tmp_path, out=io.StringIO(), keep=3).dir for _ in range(5)]
    left = sorted(p.name for p in (tmp_path / "dev01").iterdir())
    assert left == sorted([made[2].name, made[3].name, made[4].name, "keep-me", "latest"])
    assert (tmp_path / "dev01" / "latest").resolve() == made[-1].resolve()


def test_a_deploy_in_ci_prints_plain_progress_and_a_summary(env_dir, work_dir, fresh_cloud):
    """The real CLI, stdout a pipe (as in CI): step lines, one `n/N healthy` line per poll, the summary."""
    _, _, image = deployed_on_server(TEST_ENV)

    result = run_inv("deploy", "--env", TEST_ENV, "--image-id", image)  # the given image: no build, no bake

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    starts = [line[4:] for line in lines if line.startswith("==> ")]
    assert starts == ["bake-carnivore", "launch-asg", "wait-health", "shift-traffic", "finish"]
    for step in starts:
        assert any(re.fullmatch(rf"<== {step} done in \d+\.\ds", line) for line in lines), step
    polls = [line for line in lines if "healthy (" in line]
    assert polls and all(HEALTH_LINE.match(line) for line in polls), polls
    assert any(line.startswith(f"deployed {image} as asg-webapp-{TEST_ENV}-") for line in lines)
    # The URL that answers: the embedded cloud's load balancer endpoint (on AWS, http://HOST/).
    assert re.search(r" http://127\.0\.0\.1:\d+/  Logs: ", result.stdout), result.stdout
    assert re.search(r"^  total time \d+\.\ds$", result.stdout, re.MULTILINE)

    runs = work_dir / "deploy" / "log" / TEST_ENV
    latest = (runs / "latest").resolve()
    assert latest.parent == runs and re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z", latest.name)
    names = [path.name for path in sorted(latest.glob("*.json"))]
    assert any(name.endswith("-launch-asg-autoscaling-CreateAutoScalingGroup.json") for name in names), names
    assert (latest / "run.log").read_text().count("healthy (") == len(polls)
    assert str(latest.relative_to(work_dir)) in result.stdout or latest.name in result.stdout
