"""Group order by the name's stamp, never by the Promoted tag's clock; cleanup never retires the group a run
just promoted, nor one AWS is deleting. Pure: no AWS."""

from __future__ import annotations

import threading

from deploy.facts import Facts
from deploy.plans.cleanup import CleanupFacts, plan_cleanup
from deploy.plans.groups import name_stamp, outdated_groups, serving_group
from deploy.plans.model import DELETING, Group

OLD = "asg-webapp-dev01-20260101000000"
NEW = "asg-webapp-dev01-20260202000000"


def promoted(name: str, at: str) -> Group:
    return Group(name, desired=2, tags={"ManagedBy": "immutable-deploy", "Promoted": at})


def test_a_skewed_clock_tag_does_not_make_the_older_group_serve() -> None:
    # The new group was promoted from a machine whose clock is a year behind the old group's promoter.
    groups = [promoted(OLD, "2027-01-01T00:00:00Z"), promoted(NEW, "2026-02-02T00:05:00Z")]
    assert serving_group(groups).name == NEW
    assert serving_group(list(reversed(groups))).name == NEW


def test_the_promoted_tags_value_never_orders_any_value_will_do() -> None:
    groups = [promoted(NEW, "x"), promoted(OLD, "zzzz")]
    assert serving_group(groups).name == NEW


def test_a_stamp_orders_after_an_old_scripts_suffix_and_outdated_groups_come_oldest_first() -> None:
    legacy = Group("asg-webapp-dev01-v9", desired=2)
    assert name_stamp(legacy.name) == "" and name_stamp(NEW) == "20260202000000"
    assert serving_group([promoted(NEW, "a"), Group(legacy.name, tags={"Promoted": "b"})]).name == NEW
    assert [g.name for g in outdated_groups([Group(NEW), legacy, Group(OLD)], set())] == [legacy.name, OLD, NEW]


def facts(groups: list[Group], serving: Group | None, pinned: str | None) -> CleanupFacts:
    return CleanupFacts(
        groups=groups,
        serving=serving,
        serving_health=None,
        templates=[],
        template_images={},
        configurations=[],
        images=[],
        pinned=pinned,
    )


def test_cleanup_never_retires_the_pinned_group_even_when_another_looks_serving() -> None:
    groups = [promoted(OLD, "1"), promoted(NEW, "2")]
    # Whatever picked OLD as serving (a damaged tag, a bug), the group this run promoted stays.
    retired = [a.target for a in plan_cleanup(facts(groups, groups[0], pinned=NEW)) if a.op == "scale-in"]
    assert retired == []
    unpinned = [a.target for a in plan_cleanup(facts(groups, groups[0], pinned=None)) if a.op == "scale-in"]
    assert unpinned == [NEW]  # the check could fail: without the pin, NEW would go


def test_a_group_aws_is_deleting_is_not_retired_again() -> None:
    """A retirement force-deletes a group and goes on; for minutes AWS lists it as being deleted. The next deploy's
    cleanup must not plan to detach it and wait out its draining again."""
    dying = Group(OLD, desired=2, tags={"ManagedBy": "immutable-deploy", "Promoted": "1"}, status=DELETING)
    groups = [dying, promoted(NEW, "2")]
    retired = [a.target for a in plan_cleanup(facts(groups, groups[1], pinned=NEW)) if a.op == "scale-in"]
    assert retired == []
    alive = [Group(OLD, desired=2, tags=dying.tags), groups[1]]
    assert [a.target for a in plan_cleanup(facts(alive, alive[1], pinned=NEW)) if a.op == "scale-in"] == [OLD]


def test_threads_changing_one_fact_lose_no_change() -> None:
    """Retirements run in threads, each dropping its group from the run's memo of the groups."""
    known = Facts()
    known.put("groups", list(range(200)))
    threads = [
        threading.Thread(target=lambda n=n: known.update("groups", lambda items: [i for i in items if i != n]))
        for n in range(0, 200, 2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert known.get("groups") == list(range(1, 200, 2))
    known.update("absent", lambda _: 1)  # a fact not read yet stays unread
    assert not known.knows("absent")
