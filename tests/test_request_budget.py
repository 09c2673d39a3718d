"""Request budgets (issue 13), asserted operation by operation from the per-call logs of real CLI runs.

Every AWS call a run makes leaves one file in its log folder, deploy/log/ENV/RUN/NNNN-STEP-SERVICE-Operation.json,
so a run's requests are counted from what it recorded, as a user could count them. On the session's embedded cloud
(the real CLI, both load balancer kinds, two instances, the bakes skipped with --image-id):

- a second `inv setup` that changes nothing: at most 12 requests;
- a first deploy: at most 18;
- a deploy that retires one old group: at most 24;
- each health poll: at most 2 (a poll reads the group, then the load balancer; see deploy/aws/health.py).

Counts are deterministic but for one thing: how many polls wait-health makes before the new group is healthy (the
modelled boot races the first poll). The expected counts below are exact for every other operation; the two
operations of a poll are bounded by the number of polls, read from the same logs (the load balancer's health reads).
No timing is asserted. `tests/benchmark_deploy.py` prints the same figures beside their budgets.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import ServerSite, make_image, recorded_calls, succeeded, wait_until

ENV = "budget"
SETUP_AGAIN_BUDGET = 12
# The application kind's target group per group (issue 19): +6 requests on a first deploy (the new group's target
# group read, created, put into the listeners at weight 0 and then given every request; DescribeListeners, and the
# load balancer's own description instead of the shared target group's; setup's shared tg-NAME deleted), +8 on a
# deploy that retires one (the same 5, then the old group's target group read and deleted, one more ModifyListener).
FIRST_DEPLOY_BUDGET = {"classic": 18, "application": 24}
RETIRE_ONE_BUDGET = {"classic": 20, "application": 24}  # issue 20 (before it: 24 and 32)
DELETE_EMPTY_BUDGET = {"classic": 22, "application": 27}
POLL_BUDGET = 2

# The requests of one health poll, by load balancer kind: the group, then the load balancer's view of its instances.
POLL_GROUP = "autoscaling.DescribeAutoScalingGroups"
POLL_BALANCER = {"classic": "elb.DescribeInstanceHealth", "application": "elbv2.DescribeTargetHealth"}

# Every request but the polls', exactly. The lock: PutParameter (take), GetParameter + DeleteParameter (release).
LOCK = {"ssm.PutParameter": 1, "ssm.GetParameter": 1, "ssm.DeleteParameter": 1}
LAUNCH = {
    "ec2.DescribeImages": 1,  # the environment's images, once: the given image among them, then the cleanup's
    "ec2.DescribeInstanceTypeOfferings": 1,  # INSTANCE_TYPE offered, and where
    "ec2.DescribeSubnets": 1,
    "ec2.DescribeSecurityGroups": 1,  # the instances' security group
    "autoscaling.DescribeAutoScalingGroups": 1,  # the environment's groups, once (then remembered)
    "ec2.CreateLaunchTemplate": 1,
    "autoscaling.CreateAutoScalingGroup": 1,
    "autoscaling.CreateOrUpdateTags": 1,  # promoted
    "ec2.CreateTags": 1,  # the image: deployed, and given by hand
    # (the history entry is an ssm.PutParameter: counted with the lock's below)
}
BALANCER = {
    "classic": {"elb.DescribeLoadBalancers": 1, "elb.DescribeTags": 1},  # the tags: the embedded cloud's local URL
    "application": {
        "elbv2.DescribeLoadBalancers": 1,
        "elbv2.DescribeTags": 1,
        "elbv2.DescribeListeners": 1,
        "elbv2.DescribeTargetGroups": 1,  # the new group's own target group: not there yet
        "elbv2.CreateTargetGroup": 1,
        "elbv2.ModifyListener": 2,  # it joins at weight 0; it takes every request once the old groups are gone
    },
}
# A first deploy on a fresh application load balancer moves from setup's shared tg-NAME: deleted.
FIRST = {"classic": {}, "application": {"elbv2.DeleteTargetGroup": 1}}
# Issue 20: the deploy hands the group it replaced to AWS and returns. It stays with its capacity (ALB: at weight 0,
# the ModifyListener that gives the new group every request; classic: detached) for KEEP_PREVIOUS_SECONDS, and one
# scheduled action sizes it 0 at the window's end. Nothing is waited for, drained or deleted by the deploy.
RETIRE = {
    "classic": {
        "autoscaling.PutScheduledUpdateGroupAction": 1,
        "autoscaling.DetachLoadBalancers": 1,  # out of service, running
    },
    "application": {"autoscaling.PutScheduledUpdateGroupAction": 1},
}
# KEEP_PREVIOUS_SECONDS=0: the replaced group is sized 0 at once (AWS drains, terminates); the deploy after it deletes
# it once empty, with its template (ALB: and its target group).
SCALE_IN = {"autoscaling.UpdateAutoScalingGroup": 1}
DELETE_EMPTY = {
    "classic": {"autoscaling.DeleteAutoScalingGroup": 1, "ec2.DeleteLaunchTemplate": 1},
    "application": {
        "autoscaling.DeleteAutoScalingGroup": 1,
        "ec2.DeleteLaunchTemplate": 1,
        # Out of the listeners (the traffic stage gave the new group every request just before, in its own one).
        "elbv2.ModifyListener": 1,
        "elbv2.DeleteTargetGroup": 1,
    },
}
SETUP_AGAIN = {
    "classic": {
        "route53.ListHostedZonesByName": 1,
        "route53.ListResourceRecordSets": 1,
        "ec2.DescribeSubnets": 1,
        "ec2.DescribeSecurityGroups": 1,
        "ec2.DescribeKeyPairs": 1,
        "elb.DescribeLoadBalancers": 1,
        "elb.DescribeLoadBalancerAttributes": 1,
    },
    "application": {
        "route53.ListHostedZonesByName": 1,
        "route53.ListResourceRecordSets": 1,
        "ec2.DescribeSubnets": 1,
        "ec2.DescribeSecurityGroups": 1,
        "ec2.DescribeKeyPairs": 1,
        "elbv2.DescribeLoadBalancers": 1,
        # the shared tg-NAME (gone once the groups have their own), then the serving target groups' ports (kept open)
        "elbv2.DescribeTargetGroups": 2,
        "elbv2.DescribeListeners": 1,  # forwarding to the groups' target groups: kept as the deploys set them
    },
}


def plus(*counts: dict[str, int]) -> Counter[str]:
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return total


class Site(ServerSite):
    kind: str = "classic"  # LOAD_BALANCER

    def run_requests(self, env: dict[str, str], *args: str) -> list[tuple[str, str]]:
        succeeded(self.inv(*args, env=env))
        return recorded_calls(self.latest_run())

    def deployment_image(self, name: str) -> str:
        tags = {"ManagedBy": "immutable-deploy", "App": "webapp", "Env": ENV, "Role": "carnivore", "Name": name}
        return make_image(self.client("ec2"), name, tags)


def polls_of(calls: list[tuple[str, str]], kind: str) -> tuple[Counter[str], int]:
    """The wait-health polls' requests, and how many polls there were (each asks the load balancer once)."""
    polled = Counter(
        operation
        for step, operation in calls
        if step == "wait-health" and operation in (POLL_GROUP, POLL_BALANCER[kind])
    )
    return polled, polled[POLL_BALANCER[kind]]


def check_deploy(calls: list[tuple[str, str]], kind: str, expected: Counter[str], budget: int) -> None:
    polled, polls = polls_of(calls, kind)
    assert polls >= 1
    # Per poll at most 2: the group at most once a poll, the load balancer exactly once.
    assert polled[POLL_GROUP] <= polls and sum(polled.values()) <= POLL_BUDGET * polls
    rest = Counter(operation for _, operation in calls) - polled
    assert rest == expected, (
        f"{kind}: {sorted((rest - expected).items())} more, {sorted((expected - rest).items())} fewer"
    )
    assert len(calls) <= budget, f"{kind}: {len(calls)} requests, budget {budget}: {calls}"


@pytest.fixture(params=["classic", "application"])
def site(request: pytest.FixtureRequest, moto_server: str, tmp_path: Path) -> Site:
    capacity = {"MIN_CAPACITY": "2", "DESIRED_CAPACITY": "2", "MAX_CAPACITY": "2"}
    window = {"KEEP_PREVIOUS_SECONDS": "900"}  # the default: the replaced group is kept (4.5 s at the scale)
    site = Site.create(moto_server, ENV, tmp_path, LOAD_BALANCER=request.param, **capacity, **window)
    site.kind = request.param
    return site


def test_deploys_and_a_second_setup_stay_within_their_budgets(site: Site) -> None:
    kind = site.kind
    succeeded(site.inv("setup"))

    first = site.requests_of("deploy", "--image-id", site.deployment_image("budget-a"))
    history = {"ssm.PutParameter": 1}
    check_deploy(first, kind, plus(LOCK, history, LAUNCH, BALANCER[kind], FIRST[kind]), FIRST_DEPLOY_BUDGET[kind])

    retire = site.requests_of("deploy", "--image-id", site.deployment_image("budget-b"))
    check_deploy(retire, kind, plus(LOCK, history, LAUNCH, BALANCER[kind], RETIRE[kind]), RETIRE_ONE_BUDGET[kind])
    assert len(site.groups()) == 2  # the old group is kept for its window, its retirement scheduled

    again = site.requests_of("setup")
    count = Counter(operation for _, operation in again)
    assert count == plus(LOCK, SETUP_AGAIN[kind]), f"{kind}: {sorted(count.items())}"
    assert len(again) <= SETUP_AGAIN_BUDGET


def test_a_deploy_that_deletes_an_emptied_group_stays_within_its_budget(site: Site) -> None:
    """KEEP_PREVIOUS_SECONDS=0: each deploy sizes the group it replaced 0 (AWS empties it); the next one deletes it."""
    kind = site.kind
    no_window = {"KEEP_PREVIOUS_SECONDS": "0"}
    succeeded(site.inv("setup"))
    succeeded(site.inv("deploy", "--image-id", site.deployment_image("budget-a"), env=no_window))
    first = list(site.all_groups())
    history = {"ssm.PutParameter": 1}

    scale = site.run_requests(no_window, "deploy", "--image-id", site.deployment_image("budget-b"))
    check_deploy(scale, kind, plus(LOCK, history, LAUNCH, BALANCER[kind], SCALE_IN), RETIRE_ONE_BUDGET[kind])
    wait_until(lambda: not site.all_groups()[first[0]]["Instances"], 30)  # the cloud drained and terminated it

    again = site.run_requests(no_window, "deploy", "--image-id", site.deployment_image("budget-c"))
    expected = plus(LOCK, history, LAUNCH, BALANCER[kind], SCALE_IN, DELETE_EMPTY[kind])
    check_deploy(again, kind, expected, DELETE_EMPTY_BUDGET[kind])
    assert first[0] not in site.all_groups()
