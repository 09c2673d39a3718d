"""The pure decisions of a deploy, tested without AWS."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from deploy.naming import Names
from deploy.plans.cleanup import images_to_delete
from deploy.plans.groups import next_stamp, outdated_groups, serving_group
from deploy.plans.health import assess
from deploy.plans.model import Group, Image
from deploy.steps.copy_over import glob_base, matching_files, tree_digest
from deploy.waiting import Waiter

NAMES = Names(app="webapp", env="dev01", domain="example.com")


def test_next_stamp_is_now_when_free() -> None:
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    assert next_stamp(now, [], NAMES) == "20261126100000"


def test_next_stamp_never_collides_within_one_second() -> None:
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    taken = ["asg-webapp-dev01-20261126100000"]
    assert next_stamp(now, taken, NAMES) == "20261126100001"


def test_next_stamp_sorts_after_a_group_from_a_clock_ahead() -> None:
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    taken = ["asg-webapp-dev01-20261126100500", "asg-other-dev01-20991231000000"]
    assert next_stamp(now, taken, NAMES) == "20261126100501"


def test_serving_group_is_the_newest_promoted_one() -> None:
    groups = [
        Group("asg-webapp-dev01-20260101000000", desired=2, tags={"Promoted": "2026-01-01T00:05:00Z"}),
        Group("asg-webapp-dev01-20260202000000", desired=2, tags={"Promoted": "2026-02-02T00:05:00Z"}),
        Group("asg-webapp-dev01-20260303000000", desired=2, tags={"ManagedBy": "immutable-deploy"}),
    ]
    assert serving_group(groups).name == "asg-webapp-dev01-20260202000000"


def test_a_never_promoted_group_of_this_tool_never_serves() -> None:
    leftover = Group("asg-webapp-dev01-20260303000000", desired=2, tags={"ManagedBy": "immutable-deploy"})
    assert serving_group([leftover]) is None
    assert serving_group([]) is None


def test_an_adopted_environment_serves_from_its_newest_legacy_group() -> None:
    groups = [
        Group("asg-webapp-dev01-20260101000000", desired=2),
        Group("asg-webapp-dev01-20260303000000", desired=0),
        Group("asg-webapp-dev01-20260202000000", desired=2),
    ]
    assert serving_group(groups).name == "asg-webapp-dev01-20260202000000"


def test_outdated_groups_keeps_the_serving_and_pending_ones() -> None:
    groups = [Group(f"asg-webapp-dev01-2026010{i}000000") for i in (3, 1, 2, 4)]
    kept = {"asg-webapp-dev01-20260104000000", "asg-webapp-dev01-20260103000000"}
    assert [g.name for g in outdated_groups(groups, kept)] == [
        "asg-webapp-dev01-20260101000000",
        "asg-webapp-dev01-20260102000000",
    ]


def _image(image_id: str, deployed: str = "") -> Image:
    return Image(image_id, tags={"Deployed": deployed} if deployed else {})


def test_images_in_use_or_protected_are_never_deleted() -> None:
    images = [_image("ami-1", "2026-01-01"), _image("ami-2", "2026-01-02"), _image("ami-3", "2026-01-03")]
    doomed = images_to_delete(images, in_use={"ami-3"}, protected={"ami-1"})
    assert [i.id for i in doomed] == ["ami-2"]


def test_images_to_delete_retains_the_most_recently_deployed_for_rollback() -> None:
    images = [_image(f"ami-{n}", f"2026-01-0{n}") for n in range(1, 6)] + [_image("ami-failed")]
    doomed = images_to_delete(images, in_use={"ami-5"}, protected=set(), retain=2)
    assert sorted(i.id for i in doomed) == ["ami-1", "ami-2", "ami-failed"]


def test_rollback_target_is_the_latest_deployed_image_before_the_live_one() -> None:
    from deploy.plans.groups import rollback_target

    images = [_image("ami-1", "2026-01-01"), _image("ami-3", "2026-01-03"), _image("ami-2", "2026-01-02")]
    assert rollback_target(images, serving_image="ami-3") == "ami-2"
    assert rollback_target([_image("ami-3", "2026-01-03"), _image("ami-x")], serving_image="ami-3") is None


def _raw_group(states: list[tuple[str, str, str]], desired: int) -> Group:
    raw = {
        "AutoScalingGroupName": "asg-webapp-dev-1",
        "DesiredCapacity": desired,
        "Instances": [{"InstanceId": i, "LifecycleState": s, "HealthStatus": h} for i, s, h in states],
    }
    return Group.from_aws(raw)


def test_assess_needs_group_and_load_balancer_health() -> None:
    raw = _raw_group(
        [("i-1", "InService", "Healthy"), ("i-2", "InService", "Healthy"), ("i-3", "Pending", "Healthy")], 3
    )
    health = assess(raw, {"i-1": "InService", "i-2": "OutOfService", "i-3": "InService"})
    assert (health.healthy_in_group, health.in_service_at_lb) == (2, 1)  # i-3 is not InService in its group yet
    assert health.ready == 1 and not health.done
    assert "1/3 healthy" in health.line()


def test_assess_done_when_every_desired_instance_is_ready() -> None:
    raw = _raw_group([("i-1", "InService", "Healthy"), ("i-2", "InService", "Healthy")], 2)
    assert assess(raw, {"i-1": "InService", "i-2": "InService"}).done
    assert not assess(raw, {"i-1": "InService", "i-2": "OutOfService"}).done
    assert not assess(_raw_group([], 0), {}).done  # an empty group is never "healthy"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_waiter_gives_up_at_the_deadline_without_sleeping_for_real() -> None:
    clock = FakeClock()
    seen: list[str] = []
    done, status = Waiter(timeout_s=30, poll_s=10, clock=clock, sleep=clock.sleep).until(
        lambda: (False, f"t={clock.now:.0f}"), seen.append
    )
    assert not done and status == "t=30"
    assert clock.sleeps == [10, 10, 10]
    assert seen == ["t=0", "t=10", "t=20", "t=30"]


def test_waiter_stops_as_soon_as_the_check_passes() -> None:
    clock = FakeClock()
    answers = iter([(False, "0/2"), (False, "1/2"), (True, "2/2")])
    done, status = Waiter(timeout_s=600, poll_s=5, clock=clock, sleep=clock.sleep).until(lambda: next(answers), print)
    assert done and status == "2/2" and clock.now == 10


def test_waiter_is_bounded_in_polls_even_if_the_clock_stands_still() -> None:
    calls = []
    done, _ = Waiter(timeout_s=3, poll_s=1, clock=lambda: 0.0, sleep=lambda s: None).until(
        lambda: (calls.append(1) or False, ""), lambda _: None
    )
    assert not done and len(calls) == 5


@pytest.mark.parametrize(
    ("pattern", "base"),
    [("dist/*", "dist"), ("dist/**/*.py", "dist"), ("server.py", "."), ("a/b/c.txt", "a/b"), ("*", ".")],
)
def test_glob_base(pattern: str, base: str) -> None:
    assert glob_base(pattern) == Path(base)


def test_matching_files_stage_relative_to_the_glob_base(tmp_path: Path) -> None:
    (tmp_path / "dist" / "static").mkdir(parents=True)
    (tmp_path / "dist" / "server.py").write_text("x")
    (tmp_path / "dist" / "static" / "app.css").write_text("y")
    (tmp_path / "notes.txt").write_text("not shipped")
    staged = matching_files(tmp_path, ("dist/*",))
    assert sorted(str(p) for p in staged) == ["server.py", "static/app.css"]
    assert staged[Path("static/app.css")] == tmp_path / "dist" / "static" / "app.css"


def test_tree_digest_changes_with_content_and_names(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("1")
    first = tree_digest(tmp_path)
    (tmp_path / "a").write_text("2")
    second = tree_digest(tmp_path)
    (tmp_path / "a").rename(tmp_path / "b")
    assert len({first, second, tree_digest(tmp_path)}) == 3


def test_steady_check_needs_consecutive_healthy_polls() -> None:
    from deploy.plans.health import GroupHealth, steady_check

    healthy, flapping = GroupHealth(2, 2, 2), GroupHealth(2, 2, 1)
    readings = iter([healthy, flapping, healthy, healthy])
    check = steady_check(lambda: next(readings), polls=2)
    assert [check()[0] for _ in range(4)] == [False, False, False, True]


def test_next_stamp_ignores_suffixes_that_are_not_stamps() -> None:
    now = datetime(2026, 11, 26, 10, 0, 0, tzinfo=UTC)
    taken = ["asg-webapp-dev01-v2", "asg-webapp-dev01-99"]  # the old scripts' own suffixes
    assert next_stamp(now, taken, NAMES) == "20261126100000"


def test_the_launch_reuses_only_an_unpromoted_leftover_of_the_same_image() -> None:
    from deploy.naming import Names
    from deploy.plans.launch import plan_launch
    from deploy.plans.pending import Pending

    names = Names(app="webapp", env="dev", domain="example.com")
    leftover = Pending("asg-webapp-dev-1", "lt-webapp-dev-1", "ami-1")
    raw = Group("asg-webapp-dev-1")
    promoted = Group("asg-webapp-dev-1", tags={"Promoted": "2026-01-01T00:00:00Z"})

    same = plan_launch(names, "20260101000002", "ami-1", leftover, raw)
    assert (same.reused, same.group, same.remove_first) == (True, "asg-webapp-dev-1", ())

    other = plan_launch(names, "20260101000002", "ami-2", leftover, raw)
    assert (other.reused, other.group) == (False, "asg-webapp-dev-20260101000002")
    assert [(a.op, a.target) for a in other.remove_first] == [
        ("delete-group", "asg-webapp-dev-1"),
        ("delete-launch-template", "lt-webapp-dev-1"),
    ]
    gone = plan_launch(names, "20260101000002", "ami-1", leftover, None)  # the group is gone: only its template
    assert [(a.op, a.target) for a in gone.remove_first] == [("delete-launch-template", "lt-webapp-dev-1")]
    # A leftover that was promoted (its run was killed right after) serves: never removed, never reused.
    kept = plan_launch(names, "20260101000002", "ami-1", leftover, promoted)
    assert (kept.reused, kept.remove_first) == (False, ())
