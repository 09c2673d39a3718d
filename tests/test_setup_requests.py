"""Issue 13, request budgets: a second `inv setup` that changes nothing sends at most 12 AWS requests, lock
included, on either kind of load balancer; the embedded cloud's seed sends only what the run needs. Counted as
the issue counts them: from the run's per-call logs (deploy/log/ENV/latest/NNNN-STEP-SERVICE-Operation.json),
through the real CLI against the embedded cloud's server."""

from __future__ import annotations

import io
import re
from collections import Counter
from pathlib import Path

import pytest
from conftest import TEST_ENV, ServerSite, make_image, succeeded

from deploy.aws.clients import Aws
from deploy.config import load_config
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.logs import RunLog
from deploy.steps.bake_primal import source_image

ENV = "budget"
CALL = re.compile(r"\d+-(?P<step>.+)-(?P<service>[a-z0-9]+)-(?P<operation>[A-Za-z0-9]+)\.json")
BUDGET = 12
# The deploy lock: created, read back (the takeover check), released.
LOCK = Counter({"ssm.PutParameter": 1, "ssm.GetParameter": 1, "ssm.DeleteParameter": 1})
# What a second setup reads, once each; it writes nothing.
SHARED = Counter(
    {
        "route53.ListHostedZonesByName": 1,  # the zone (on the embedded cloud, also the seed's only read)
        "route53.ListResourceRecordSets": 1,  # the host's records
        "ec2.DescribeSubnets": 1,  # the default subnets, which name their VPC
        "ec2.DescribeSecurityGroups": 1,  # NAME-lb and NAME-web at once
        "ec2.DescribeKeyPairs": 1,
    }
)
SECOND_SETUP = {
    "classic": SHARED + Counter({"elb.DescribeLoadBalancers": 1, "elb.DescribeLoadBalancerAttributes": 1}),
    "application": SHARED
    + Counter(
        {
            "elbv2.DescribeLoadBalancers": 1,
            "elbv2.DescribeTargetGroups": 1,
            "elbv2.DescribeTargetGroupAttributes": 1,
            "elbv2.DescribeListeners": 1,
        }
    ),
}


def calls(site: ServerSite) -> list[tuple[str, str]]:
    """(step, service.Operation) of every AWS call of the newest run, in order."""
    run = (site.work_dir / "deploy" / "log" / ENV / "latest").resolve()
    found = [CALL.fullmatch(path.name) for path in sorted(run.glob("*.json"))]
    return [(m["step"], f"{m['service']}.{m['operation']}") for m in found if m]


def by_step(made: list[tuple[str, str]], step: str) -> Counter[str]:
    return Counter(operation for made_in, operation in made if made_in == step)


@pytest.mark.parametrize("kind", ["classic", "application"])
def test_a_second_setup_that_changes_nothing_sends_at_most_12_requests(moto_server: str, tmp_path: Path, kind: str):
    site = ServerSite.create(moto_server, ENV, tmp_path, LOAD_BALANCER=kind)
    first = succeeded(site.inv("setup"))
    assert "embedded cloud: created the public hosted zone example.test" in first
    seeded = by_step(calls(site), "setup")
    assert seeded["route53.ListHostedZonesByName"] == 1  # the zone lookup is the seed's lookup too
    assert seeded["route53.CreateHostedZone"] == 1
    assert not {"ec2.DescribeImages", "ec2.RunInstances", "ec2.CreateImage"} & set(seeded)  # no base image: no bake

    second = succeeded(site.inv("setup"))
    assert f"nothing to change: webapp-{ENV} is already set up" in second
    made = calls(site)
    assert by_step(made, "setup") == SECOND_SETUP[kind], [operation for _, operation in made]
    assert {step for step, _ in made} == {"run", "setup"}  # the lock's calls, setup's, nothing else (no seed)
    assert by_step(made, "run") == LOCK, "the deploy lock sends more than PutParameter, GetParameter, DeleteParameter"
    assert len(made) <= BUDGET


def test_a_deploy_of_a_given_image_seeds_nothing(moto_server: str, tmp_path: Path):
    """With --image-id nothing is baked: no base image is needed, and the zone is setup's."""
    site = ServerSite.create(moto_server, ENV, tmp_path)
    succeeded(site.inv("setup"))
    # A deploy that bakes needs the base image, which no run has seeded yet: its plan says bake-primal seeds it.
    baking = succeeded(site.inv("deploy", "--dry-run"))
    assert "embedded cloud: would create the base image local-base-debian-12" in baking
    assert "hosted zone" not in baking
    tags = {"ManagedBy": "immutable-deploy", "App": "webapp", "Env": ENV, "Role": "carnivore"}
    image = make_image(site.client("ec2"), "given-by-hand", tags)  # made here (and its base): not in the CLI's log
    assert "embedded cloud" not in succeeded(site.inv("deploy", "--dry-run", "--image-id", image))

    succeeded(site.inv("deploy", "--image-id", image))

    made = calls(site)
    assert made and not [step for step, _ in made if step == "bake-primal"]
    seeding = {"route53.ListHostedZonesByName", "route53.CreateHostedZone", "ec2.RunInstances", "ec2.CreateImage"}
    assert not seeding & {operation for _, operation in made}
    assert not [operation for step, operation in made if step == "run" and not operation.startswith("ssm.")]


def test_bake_primal_seeds_the_base_image_from_its_own_lookup(env_dir: Path, fresh_cloud: str, tmp_path: Path):
    """SOURCE_AMI is resolved once (DescribeImages); only when nothing matches does the embedded cloud make it."""

    def environment(name: str, dry_run: bool = False) -> Environment:
        config = load_config(TEST_ENV)
        log = RunLog(TEST_ENV, root=tmp_path / name, out=io.StringIO())
        return Environment(config=config, log=log, aws=Aws(config, log, dry_run=dry_run))

    def operations(name: str) -> list[str]:
        return [path.stem.rsplit("-", 1)[1] for path in sorted((tmp_path / name).rglob("*.json"))]

    with pytest.raises(DeployError, match="No available image named 'local-base-debian-12'"):
        source_image(environment("plan", dry_run=True))  # a dry run creates nothing (the deploy's plan says it)
    assert operations("plan") == ["DescribeImages"]

    seeded = source_image(environment("first"))
    assert operations("first") == [
        "DescribeImages",
        "DescribeImages",
        "RunInstances",
        "CreateImage",
        "TerminateInstances",
    ]
    assert source_image(environment("second")) == seeded
    assert operations("second") == ["DescribeImages"]
