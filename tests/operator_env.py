"""Helpers of the operator-command tests (status, destroy, dry run, ssh, progress), in-process on mock_aws.

Environments are built directly (as tests/test_setup.py does), on real-AWS settings (no endpoint),
so that moto's in-process mock answers every call. A "deployed" environment has a tagged image baked
without Packer, a launch template and group launched by the tool's own code, and the group promoted.
"""

from __future__ import annotations

import functools
import io
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from conftest import REGION, make_image, new_run, server_client, write_env_folder

from deploy.aws.clients import Aws
from deploy.config import load_config
from deploy.environment import Environment
from deploy.localcloud.seed import seed
from deploy.logs import RunLog
from deploy.steps.launch_asg import launch_group
from deploy.steps.setup import run_setup
from deploy.steps.shift_traffic import promote

ANY_IMAGE = "ami-12345678"  # moto runs an instance of any image id


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def create_zone(name: str = "example.com") -> str:
    return client("route53").create_hosted_zone(Name=name, CallerReference=f"test-{name}")["HostedZone"]["Id"]


def make_environment(
    tmp_path: Path,
    env: str = "staging",
    kind: str = "classic",
    extra: str = "",
    dry_run: bool = False,
    clock: FakeClock | None = None,
) -> Environment:
    """An Environment of ENV with LOAD_BALANCER=KIND, its progress lines in a StringIO (not a terminal)."""
    folder = write_env_folder(
        tmp_path / "env" / env, {f"{env}.env": f"DOMAIN=example.com\nLOAD_BALANCER={kind}\nPOLL_SECONDS=1\n{extra}"}
    )
    config = load_config(env, folder=folder, environ={})
    log = RunLog(env, root=tmp_path / "log", out=io.StringIO(), **({"clock": clock} if clock else {}))
    return Environment(config=config, log=log, aws=Aws(config, log, dry_run=dry_run))


def output(environment: Environment) -> str:
    return environment.log.out.getvalue()  # type: ignore[attr-defined]


def bake_image(env: str, role: str = "carnivore", app: str = "webapp", managed: bool = True) -> str:
    """An image as a bake leaves it (tagged ManagedBy, App, Env, Role), made without Packer."""
    tags = {"App": app, "Env": env, "Role": role, **({"ManagedBy": "immutable-deploy"} if managed else {})}
    return make_image(client("ec2"), f"{app}-{env}-{role}-image", tags, base=ANY_IMAGE)


def deploy(environment: Environment, image_id: str | None = None, by_hand: bool = False) -> tuple[str, str]:
    """Launch a group with a (new) image and promote it, as a successful deploy does; (group, image). BY_HAND: the
    image is given by hand (--image-id)."""
    image_id = image_id or bake_image(environment.env)
    new_run(environment)
    group = launch_group(environment, image_id=image_id, by_hand=by_hand)
    promote(environment, group, image_id)
    new_run(environment)  # what follows is another command: it reads the account afresh
    return group, image_id


def on_server(env: str) -> Environment:
    """An Environment of env/ENV.env as the CLI would open it (DEPLOY_ENV_DIR), talking to its moto server,
    seeded as a real run seeds it; progress lines in a StringIO."""
    config = load_config(env)
    log = RunLog(env, out=io.StringIO())
    environment = Environment(config=config, log=log, aws=Aws(config, log))
    seed(config, environment.aws.ec2, environment.aws.route53, say=log.say)
    return environment


def deployed_on_server(env: str) -> tuple[Environment, str, str]:
    """ENV set up and deployed on its moto server by the tool's own code, with an image made without
    Packer (faster than `inv deploy`, same resources); (environment, group, image)."""
    environment = on_server(env)
    run_setup(environment)
    tags = {"App": "webapp", "Env": env, "Role": "carnivore", "ManagedBy": "immutable-deploy"}
    image_id = make_image(environment.aws.ec2, f"webapp-{env}-carnivore-test", tags, base=ANY_IMAGE)
    group, _ = deploy(environment, image_id)
    return environment, group, image_id


def set_up(environment: Environment) -> Environment:
    run_setup(environment)
    return environment


# Objects moto's dump lists that reads create too: IAM's account summary grows as services are first
# called, and every DescribeTargetHealth answer is built from new health-status objects.
NOT_STATE = {("iam", "AccountSummary"), ("elbv2", "FakeHealthStatus")}


def prime_moto(url: str) -> None:
    """Make moto build its lazily created defaults (default VPC, built-in images) with reads, so that
    a later state comparison sees only what commands changed."""
    make = functools.partial(server_client, url)
    make("ec2").describe_images(Owners=["self"])
    make("ec2").describe_vpcs()
    make("elb").describe_load_balancers()
    make("elbv2").describe_load_balancers()
    make("autoscaling").describe_auto_scaling_groups()
    make("route53").list_hosted_zones()
    make("ssm").describe_parameters()


RUNTIME_NOTES = ("LocalCloudApp",)  # tags the embedded cloud's runtime writes as its apps boot: not the tool's doing


def _without_runtime_notes(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get("key") in RUNTIME_NOTES or value.get("Key") in RUNTIME_NOTES:
            return None
        return {k: _without_runtime_notes(v) for k, v in value.items() if k not in RUNTIME_NOTES}
    if isinstance(value, list):
        return [item for item in (_without_runtime_notes(v) for v in value) if item is not None]
    return value


def moto_state(url: str) -> dict[str, Any]:
    """The moto server's whole state (GET /moto-api/data.json), without empty collections."""
    import json

    with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=30) as response:
        data = _without_runtime_notes(json.load(response))
    return {
        service: {model: items for model, items in models.items() if items and (service, model) not in NOT_STATE}
        for service, models in data.items()
        if any(items for model, items in models.items() if (service, model) not in NOT_STATE)
    }


def described_cloud() -> dict[str, Any]:
    """What the in-process mock holds that any command of this tool could change, by describe calls."""
    ec2, autoscaling = client("ec2"), client("autoscaling")
    route53, ssm = client("route53"), client("ssm")
    zones = route53.list_hosted_zones()["HostedZones"]
    return {
        "instances": sorted(
            (i["InstanceId"], i["State"]["Name"])
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
        ),
        "images": sorted(
            (i["ImageId"], tuple(sorted((t["Key"], t["Value"]) for t in i.get("Tags", []))))
            for i in ec2.describe_images(Owners=["self"])["Images"]
        ),
        "security_groups": sorted(
            (g["GroupName"], str(sorted(map(str, g["IpPermissions"]))))
            for g in ec2.describe_security_groups()["SecurityGroups"]
        ),
        "key_pairs": sorted(k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]),
        "launch_templates": sorted(t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]),
        "groups": sorted(
            (g["AutoScalingGroupName"], g["DesiredCapacity"], tuple(sorted((t["Key"], t["Value"]) for t in g["Tags"])))
            for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
        ),
        "classic": sorted(
            lb["LoadBalancerName"] for lb in client("elb").describe_load_balancers()["LoadBalancerDescriptions"]
        ),
        "application": sorted(
            lb["LoadBalancerName"] for lb in client("elbv2").describe_load_balancers()["LoadBalancers"]
        ),
        "target_groups": sorted(g["TargetGroupName"] for g in client("elbv2").describe_target_groups()["TargetGroups"]),
        "records": sorted(
            (r["Name"], r["Type"], str(r.get("AliasTarget", r.get("ResourceRecords"))))
            for z in zones
            for r in route53.list_resource_record_sets(HostedZoneId=z["Id"])["ResourceRecordSets"]
        ),
        "parameters": sorted(p["Name"] for p in ssm.describe_parameters()["Parameters"]),
    }


def logged_operations(environment: Environment) -> list[str]:
    """The AWS operations of a run, from its log folder (one JSON file per call: NNNN-STEP-SERVICE-OPERATION.json)."""
    return [path.stem.rsplit("-", 1)[1] for path in sorted(environment.log.dir.glob("*.json"))]
