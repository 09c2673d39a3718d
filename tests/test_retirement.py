"""The retirement handed to AWS (issue 20) and the rollback by weight (issue 19), decided by pure functions
(deploy/plans/cleanup.py `plan_cleanup`, deploy/plans/groups.py `kept_group`, `weight_rollback`), and the bounded
wait of `inv cleanup --wait` / `inv deploy --wait-retirement` on a fake clock (mock_aws, in-process)."""

from __future__ import annotations

import pytest
from conftest import new_run
from operator_env import FakeClock, client, create_zone, deploy, make_environment, set_up

from deploy.errors import DeployError
from deploy.plans.cleanup import CleanupFacts, plan_cleanup
from deploy.plans.groups import kept_group, serving_group, weight_rollback
from deploy.plans.model import Group, Member
from deploy.steps.cleanup import cleanup

NOW = "2026-12-05T10:00:00Z"
LATER = "2026-12-05T10:15:00Z"
EARLIER = "2026-12-05T09:45:00Z"


def group(stamp: str, *, retire_at: str = "", size: int = 2, instances: int = 2, **tags: str) -> Group:
    all_tags = {"ManagedBy": "immutable-deploy", "Promoted": "yes", **tags}
    if retire_at:
        all_tags["RetireAt"] = retire_at
    members = tuple(Member(f"i-{stamp}-{n}", "InService", "Healthy") for n in range(instances))
    return Group(
        f"asg-webapp-dev-2026120{stamp}",
        desired=min(size, instances) if size else 0,
        max_size=size,
        instance_ids=tuple(m.id for m in members),
        members=members,
        launch_template=f"lt-webapp-dev-2026120{stamp}",
        image_id=tags.get("Image"),
        tags=all_tags,
    )


def facts(groups: list[Group], serving: Group, **changes: object) -> CleanupFacts:
    return CleanupFacts(
        groups=groups,
        serving=serving,
        serving_health=None,
        templates=sorted(g.launch_template or "" for g in groups),
        template_images={},
        configurations=[],
        images=[],
        now=NOW,
        **changes,  # type: ignore[arg-type]
    )


def ops(actions: list) -> list[tuple[str, str]]:
    return [(action.op, action.target) for action in actions]


def test_the_replaced_group_is_kept_older_ones_sized_0_empty_ones_deleted_with_their_target_groups() -> None:
    empty = group("10000000", size=0, instances=0)
    draining = group("20000000", size=0, instances=1)
    older = group("30000000", retire_at=LATER)  # its window lasts, but a newer group was promoted after it
    previous = group("40000000", retire_at=LATER)
    serving = group("50000000")
    everything = [empty, draining, older, previous, serving]
    own = {empty.name: "tgabc-10000000"}

    actions = plan_cleanup(facts(everything, serving, target_groups=own))

    assert ops(actions) == [
        ("keep", f"group {draining.name}"),  # AWS drains and terminates it
        ("scale-in", older.name),
        ("keep-group", previous.name),
        ("delete-group", empty.name),
        ("delete-target-group", "tgabc-10000000"),
        ("delete-launch-template", empty.launch_template),  # the others' templates stay with their groups
    ]
    [keep] = [a for a in actions if a.op == "keep-group"]
    assert keep.get("retire_at") == LATER and f"until {LATER}" in keep.line()


def test_a_window_that_is_over_sizes_the_group_0_and_the_serving_group_is_never_touched() -> None:
    previous = group("40000000", retire_at=EARLIER)
    serving = group("50000000", retire_at=LATER)  # a stale tag on the serving group (it was kept, then rolled back to)
    actions = plan_cleanup(facts([previous, serving], serving))
    assert ops(actions) == [("scale-in", previous.name)]


def test_a_dry_run_keeps_the_group_serving_now_for_the_window_the_promotion_to_come_opens() -> None:
    serving_now = group("40000000")
    new = Group("asg-webapp-dev-20261205000000")
    actions = plan_cleanup(facts([serving_now], new, windows={serving_now.name: LATER}))
    assert ops(actions) == [("keep-group", serving_now.name)]


def test_the_serving_group_is_the_newest_promoted_one_not_rolled_back_and_not_sized_0() -> None:
    rolled_back = group("50000000", RolledBack="2026-12-05T10:01:00Z")
    sized_0 = group("60000000", size=0, instances=1)
    kept = group("40000000", retire_at=LATER)
    assert serving_group([kept, rolled_back, sized_0]) == kept
    assert kept_group([kept, rolled_back, sized_0], kept.name, NOW) is None


def test_a_rollback_is_a_weight_change_only_within_the_window_to_a_group_fully_in_service() -> None:
    previous = group("40000000", retire_at=LATER, Image="ami-1")
    serving = group("50000000", Image="ami-2")
    decision, _ = weight_rollback([previous, serving], NOW)
    assert decision is not None and (decision.previous, decision.serving) == (previous, serving)
    assert (
        decision.lines()[0]
        == f"rollback: would delete the scheduled retirement of {previous.name} (kept until {LATER})"
    )

    assert weight_rollback([previous, serving], NOW, to="ami-1")[0] is not None
    none, why = weight_rollback([previous, serving], NOW, to="ami-9")
    assert none is None and "runs ami-1, not ami-9" in why
    over, why = weight_rollback([previous, serving], "2026-12-05T10:20:00Z")
    assert over is None and "window is over" in why
    half = group("40000000", retire_at=LATER, instances=1)  # desired 1 of 2 in service
    half = Group(**{**half.__dict__, "desired": 2})
    not_ready, why = weight_rollback([half, serving], NOW)
    assert not_ready is None and "1/2 instances in service" in why


@pytest.fixture
def cloud(cloud: None) -> None:
    create_zone()


def test_the_wait_ends_at_the_first_poll_that_finds_the_groups_emptied(cloud, tmp_path) -> None:
    environment = set_up(make_environment(tmp_path, kind="application", extra="KEEP_PREVIOUS_SECONDS=0\n"))
    clock = FakeClock()
    environment.clock, environment.sleep = clock, clock.sleep
    old, _ = deploy(environment)
    deploy(environment)
    polls: list[float] = []
    environment.aws.autoscaling.meta.events.register(
        "before-call.auto-scaling.DescribeAutoScalingGroups", lambda **_: polls.append(clock())
    )
    started = clock()

    cleanup(new_run(environment), wait=True)

    # In-process the cloud terminates a group sized 0 within the call: one poll sees it empty, no sleep.
    assert clock() == started
    assert old not in {
        g["AutoScalingGroupName"] for g in client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
    }
    # The environment's groups (one read), the serving group's health (before anything is retired), the wait's poll.
    assert len(polls) == 3


def test_the_wait_is_bounded_by_the_window_left_plus_the_retirement_timeout(cloud, tmp_path) -> None:
    environment = set_up(make_environment(tmp_path, kind="classic"))  # KEEP_PREVIOUS_SECONDS 900 (AWS: unscaled)
    clock = FakeClock()
    environment.clock, environment.sleep = clock, clock.sleep
    deploy(environment)
    deploy(environment)
    started = clock()

    with pytest.raises(DeployError, match=r"not emptied within (18\d\d|1799)s"):
        cleanup(new_run(environment), wait=True)  # in-process nothing runs the scheduled action: it never empties

    waited = clock() - started
    assert 1790 <= waited <= 1801, waited  # 900 s of window (less the run's own seconds) + 900 s, polled each second
