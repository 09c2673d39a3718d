"""What the deploy lock and the deploy history cost in SSM requests (issue 13), counted by the environment's own
request counter (`environment.aws.requests`, "service.Operation") on moto's in-process mock_aws.

The lock: taking a free lock is one PutParameter, the chain's next steps cost nothing, releasing is one
GetParameter (still ours?) and one DeleteParameter. The history: an entry is one PutParameter whatever the
history's length; AWS (and moto) keep the last 100 versions of the parameter, so nothing is pruned by hand.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import pytest
from test_deploy_steps import client, make_environment

from deploy.aws.history import HISTORY_KEEP, entry, history_parameter, read_history, record
from deploy.environment import Environment
from deploy.views.history import show_history


@pytest.fixture
def environment(cloud: None, tmp_path: Any) -> Environment:
    return make_environment(tmp_path)


def spent(environment: Environment, action: Any) -> Counter[str]:
    """The requests ACTION sends, by operation."""
    before = Counter(environment.aws.requests)
    action()
    after = Counter(environment.aws.requests)
    after.subtract(before)
    return +after


def test_a_free_lock_held_for_a_chain_of_steps_costs_three_requests(environment):
    lock = environment.lock

    def chain() -> None:
        for step in ("build-app", "copy-over", "bake-primal", "bake-carnivore", "launch-asg", "wait-health"):
            lock.acquire(step, command="deploy")
        lock.update("finish")
        lock.release()

    assert spent(environment, chain) == {"ssm.PutParameter": 1, "ssm.GetParameter": 1, "ssm.DeleteParameter": 1}
    assert client("ssm").describe_parameters()["Parameters"] == []


def test_taking_the_lock_costs_one_request_and_releasing_two(environment):
    lock = environment.lock
    assert spent(environment, lambda: lock.acquire("setup", command="setup")) == {"ssm.PutParameter": 1}
    assert spent(environment, lambda: lock.acquire("status", command="setup")) == {}
    assert spent(environment, lock.release) == {"ssm.GetParameter": 1, "ssm.DeleteParameter": 1}
    assert spent(environment, lock.release) == {}  # nothing held: nothing sent


def test_recording_an_entry_is_one_request_whatever_the_history_holds(environment):
    """120 entries: each one PutParameter; the newest 100 remain (AWS drops older versions), newest first."""
    for number in range(120):
        item = entry("deploy", "promoted", f"ami-{number:017x}", f"asg-webapp-dev-{number}", 1.0, False, f"n{number}")
        assert spent(environment, lambda item=item: record(environment, item)) == {"ssm.PutParameter": 1}

    versions = client("ssm").get_parameter_history(Name=history_parameter("webapp-dev"), MaxResults=50)
    assert versions["Parameters"][0]["Version"] == 21  # the oldest kept: versions 1-20 are gone
    read: list[dict[str, Any]] = []
    assert spent(environment, lambda: read.extend(read_history(environment))) == {"ssm.GetParameterHistory": 2}
    assert len(read) == HISTORY_KEEP == 100
    assert [e["detail"] for e in read] == [f"n{number}" for number in range(119, 19, -1)]  # newest first
    assert [e["name"] for e in read] == list(range(120, 20, -1))  # each entry's version: a stable key

    raw, table = io.StringIO(), io.StringIO()
    show_history(environment, as_json=True, out=raw, limit=100)  # `inv history --json --limit 100`
    document = json.loads(raw.getvalue())
    assert set(document) == {"version", "env", "entries"}
    assert [e["image"] for e in document["entries"]] == [f"ami-{number:017x}" for number in range(119, 19, -1)]
    keys = {"time", "by", "action", "outcome", "image", "group", "seconds", "by_hand", "detail", "version", "name"}
    assert all(set(e) == keys for e in document["entries"])
    show_history(environment, as_json=False, out=table)  # `inv history`: the newest 20
    rows = table.getvalue().splitlines()
    assert len(rows) == 1 + 20
    assert f"ami-{119:017x}" in rows[1] and f"ami-{100:017x}" in rows[20]


def test_no_history_yet_reads_as_empty(environment):
    assert spent(environment, lambda: read_history(environment)) == {"ssm.GetParameterHistory": 1}
    assert read_history(environment) == []


def test_an_entry_with_a_long_detail_still_fits_one_parameter_value(environment):
    item = entry("deploy", "aborted", None, "asg-webapp-dev-1", 3.0, False, 'the "reason", said at length ' * 400)
    record(environment, item)
    [read] = read_history(environment)
    assert read["outcome"] == "aborted" and read["detail"].endswith("...")
    assert read["detail"].startswith('the "reason", said at length')
    assert len(client("ssm").get_parameter(Name=history_parameter("webapp-dev"))["Parameter"]["Value"]) <= 4096
