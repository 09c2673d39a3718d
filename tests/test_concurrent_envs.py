"""Two environments deployed at once from one checkout: each run stages into a folder of its own and bakes
exactly that, and the shared app folder is built and staged by one run at a time (issue 10).

In-process on mock_aws, the two deploys in two threads; the bakes use a slow FakePacker that reads what it
bakes only after a pause, as Packer reads the folder long after copy-over wrote it.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO
from operator_env import FakeClock
from test_account_truth import full_deploy
from test_deploy_steps import FakePacker, client, deployment_image, make_environment

import deploy.steps.baking
from deploy.aws.groups import environment_groups
from deploy.environment import Environment
from deploy.plans.groups import serving_group
from deploy.steps.setup import run_setup


class SlowPacker(FakePacker):
    """Waits before it reads the staged folder, then records which environment's app it found there."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()

    def __call__(self, template_path: Path, var_file: Path, builder: str, log_path: Path, **kwargs: Any) -> str:
        variables = json.loads(Path(var_file).read_text(encoding="utf-8"))
        if "app_dir" in variables:
            time.sleep(0.5)  # the other environment's run goes on meanwhile
            folder = Path(variables["app_dir"])
            settings = dict(line.split("=", 1) for line in (folder / "app.env").read_text().splitlines())
            built = json.loads((folder / "version.json").read_text())["env"]
            self.seen[variables["env"]] = {"app.env": settings["ENV"], "build": built, "folder": str(folder)}
        with self.lock:
            return super().__call__(template_path, var_file, builder, log_path, **kwargs)


@pytest.fixture
def cloud(cloud: None) -> None:
    client("route53").create_hosted_zone(Name="example.com", CallerReference="zone")


def environment_of(tmp_path: Path, env: str, app: Path) -> Environment:
    environment = make_environment(
        tmp_path / env,
        env,
        APP_DIR=str(app),
        BUILD_COMMAND="python3 build.py --env {env} && sleep 0.3",  # a build that takes a while
        SOURCE_AMI="local-base-*",
        SOURCE_AMI_OWNER="self",
        POLL_SECONDS="1",
    )
    clock = FakeClock()
    environment.clock, environment.sleep = clock, clock.sleep
    return environment


def test_two_environments_deployed_at_once_from_one_checkout_each_bake_their_own_app(cloud, tmp_path, monkeypatch):
    packer = SlowPacker()
    monkeypatch.setattr(deploy.steps.baking, "run_packer", packer)
    deployment_image("local-base-debian-12", env="none")
    app = tmp_path / "app"  # one checkout: one app folder, one work folder
    app.mkdir()
    for name in ("build.py", "server.py"):
        shutil.copy2(REPO / "example-app" / name, app / name)
    environments = {env: environment_of(tmp_path, env, app) for env in ("one", "two")}
    for environment in environments.values():
        run_setup(environment)
    failures: dict[str, BaseException] = {}

    def run(env: str) -> None:
        try:
            full_deploy(environments[env])
        except BaseException as error:
            failures[env] = error

    threads = [threading.Thread(target=run, args=(env,)) for env in environments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == {}
    assert packer.seen["one"]["app.env"] == packer.seen["one"]["build"] == "one"
    assert packer.seen["two"]["app.env"] == packer.seen["two"]["build"] == "two"
    assert packer.seen["one"]["folder"] != packer.seen["two"]["folder"]
    for env, environment in environments.items():
        serving = serving_group(environment_groups(environment))
        assert serving is not None, env
        [image] = client("ec2").describe_images(ImageIds=[serving.image_id])["Images"]
        assert {t["Key"]: t["Value"] for t in image["Tags"]}["Env"] == env
