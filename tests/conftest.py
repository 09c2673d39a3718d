"""Shared fixtures: a moto server on a free loopback port, isolated env/work folders, and the real CLI.

Tests never write into the repository's own env/ or deploy/ folders: `env_dir` points DEPLOY_ENV_DIR and
DEPLOY_WORK_DIR at temporary folders, for in-process code and (through os.environ) for `run_inv`.

Helpers are plain functions, imported by the test modules: `from conftest import free_port, run_inv`.
In-process tests run on moto's mock_aws through the `cloud` fixture, with the embedded cloud's fixes of moto
(deploy/localcloud/fixes.py) applied once, at the import of this module: `patch_moto()` runs wherever moto runs
for the tool, in the embedded cloud's server process and here, so in-process moto behaves as the server does.
Images and groups are made directly in a cloud (either kind) by `make_image` and `legacy_group`. The end-to-end
modules share the last section: a view of one environment on the moto server (`ServerView`), an environment
in folders of its own (`ServerSite`), and background threads that watch or disturb a run.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest
from botocore.exceptions import ClientError

from deploy.facts import Facts
from deploy.localcloud.fixes import patch_moto
from deploy.localcloud.seed import create_base_image

patch_moto()  # moto as the embedded cloud's server runs it (see the module docstring); idempotent

REPO = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
TEST_ENV = "test"
SERVER_START_TIMEOUT_S = 30.0
INV_TIMEOUT_S = 90.0
RUN_TIMEOUT_S = 120.0  # an end-to-end run of the CLI (a deploy bakes with Packer)
# The session's embedded cloud models AWS's durations 200 times faster: boot 0.1 s, health checks every 0.15 s,
# draining 1.5 s (timeouts never below 0.5 s).
TEST_TIME_SCALE = "0.005"

FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
# Variables of the outer shell that would change what a test sees: a profile, an env chosen by
# DEPLOY_ENV/NODE_ENV, or a setting that overrides the env files (AWS_REGION, APP_NAME, ...).
STRAY_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "DEPLOY_ENV", "NODE_ENV")
# What a CLI run without any credentials gets: none in the environment, no files, no instance metadata.
NO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_SECURITY_TOKEN": None,
    "AWS_WEB_IDENTITY_TOKEN_FILE": None,
    "AWS_ROLE_ARN": None,
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None,
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll PREDICATE until it holds or TIMEOUT seconds pass; return whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def subprocess_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """os.environ (as the fixtures patched it) without AWS_PROFILE; OVERRIDES set keys, or unset them with None."""
    env = dict(os.environ)
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_DEFAULT_PROFILE", None)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_inv(
    *args: str,
    env: Mapping[str, str | None] | None = None,
    timeout: float = INV_TIMEOUT_S,
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (`python -m invoke ARGS`) in the repository root; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=REPO,
        env=subprocess_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _settings_keys() -> tuple[str, ...]:
    from deploy.settings import SETTINGS_BY_KEY

    return tuple(SETTINGS_BY_KEY)


@pytest.fixture
def aws_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region; nothing from the outer shell that would pick an env or override a setting."""
    for key in (*STRAY_VARIABLES, *_settings_keys()):
        monkeypatch.delenv(key, raising=False)
    for key, value in FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def shared_service_models() -> Iterator[None]:
    """One botocore loader for every boto3 session of the test process.

    deploy.aws.Aws makes a new boto3 session per environment, and each session parses the service
    models (megabytes of JSON) again: ~0.5 s per in-process environment. Sharing the loader changes
    nothing else.
    """
    import functools

    import botocore.loaders
    import botocore.session

    shared = functools.lru_cache(maxsize=None)(botocore.loaders.create_loader)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader", shared)
        yield


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server of this test session on a free loopback port; yields its URL (http://127.0.0.1:PORT)."""
    folder = tmp_path_factory.mktemp("moto")
    with embedded_cloud_server(folder, LOCAL_TIME_SCALE=TEST_TIME_SCALE, LOCAL_CLOUD_DIR=str(folder)) as url:
        yield url


@contextmanager
def embedded_cloud_server(folder: Path, **environ: str) -> Iterator[str]:
    """The embedded cloud's server (`python -m deploy.motoserver`, its fixes applied) on a free loopback port,
    with ENVIRON added to a clean environment, its log in FOLDER; stopped by its pid at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = folder / "server.log"
    env = {key: value for key, value in os.environ.items() if key not in STRAY_VARIABLES}
    env.update(FAKE_CREDENTIALS, **environ)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "deploy.motoserver", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )
    try:
        started = wait_until(lambda: process.poll() is not None or _answers(url), SERVER_START_TIMEOUT_S)
        if not started or process.poll() is not None:
            pytest.fail(f"moto server did not answer at {url}: {log_path.read_text(errors='replace')[-2000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def reset_cloud(url: str) -> None:
    """Empty the moto server at URL (POST /moto-api/reset): a new account."""
    request = urllib.request.Request(f"{url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


@pytest.fixture
def fresh_cloud(moto_server: str) -> str:
    """The session's moto server, emptied so that each test starts from a new account."""
    reset_cloud(moto_server)
    return moto_server


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """What DEPLOY_WORK_DIR points at: runs leave deploy/log, keys, state and local-cloud here."""
    path = tmp_path / "work"
    path.mkdir()
    return path


def write_env_folder(folder: Path, files: Mapping[str, str]) -> Path:
    """FOLDER with a copy of the repository's env/defaults.env and FILES ({"NAME.env": text})."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "env" / "defaults.env", folder / "defaults.env")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def local_env_text(endpoint: str, **extra: str) -> str:
    """An env file for the embedded cloud at ENDPOINT, like env/local.env; EXTRA adds or overrides keys."""
    values = {
        "LOCAL_CLOUD": "true",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "DOMAIN": "example.test",
        "SOURCE_AMI": "local-base-debian-12",
        "SOURCE_AMI_OWNER": "self",
        "POLL_SECONDS": "1",
        "HEALTH_TIMEOUT": "30",
        "LOCAL_TIME_SCALE": TEST_TIME_SCALE,  # the session's server runs at it: the tool's first waits match
        # A deploy sizes the group it replaced 0 at once (AWS retires it): tests of the window set it themselves.
        "KEEP_PREVIOUS_SECONDS": "0",
        **extra,
    }
    return "".join(f"{key}={value}\n" for key, value in values.items())


def use_env_folder(monkeypatch: pytest.MonkeyPatch, folder: Path, work_dir: Path) -> Path:
    """Point DEPLOY_ENV_DIR at FOLDER and DEPLOY_WORK_DIR at WORK_DIR, for this process and for `run_inv`."""
    monkeypatch.setenv("DEPLOY_ENV_DIR", str(folder))
    monkeypatch.setenv("DEPLOY_WORK_DIR", str(work_dir))
    return folder


@pytest.fixture
def env_dir(
    tmp_path: Path, work_dir: Path, fresh_cloud: str, aws_environ: None, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A temporary env folder: defaults.env plus test.env on the (fresh) moto server with LOCAL_CLOUD=true.

    DEPLOY_ENV_DIR and DEPLOY_WORK_DIR point at the temporary folders, for this process and for `run_inv`.
    Add keys by appending lines to env_dir / "test.env" (the last value of a key wins).
    """
    folder = write_env_folder(tmp_path / "env", {f"{TEST_ENV}.env": local_env_text(fresh_cloud)})
    return use_env_folder(monkeypatch, folder, work_dir)


@pytest.fixture
def cloud_client(fresh_cloud: str) -> Callable[[str], Any]:
    """boto3 clients of the moto server: cloud_client("elb").describe_load_balancers()."""
    return lambda service: server_client(fresh_cloud, service)


@pytest.fixture
def cloud(
    aws_environ: None, work_dir: Path, shared_service_models: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """moto's in-process mock_aws for the test, its runs writing into work_dir.

    Without moto's built-in images (the tests make the images they need): saves ~0.5 s a test.
    A module adds what all its tests need by overriding it: `def cloud(cloud): create a zone`.
    """
    from moto import mock_aws

    monkeypatch.setenv("DEPLOY_WORK_DIR", str(work_dir))
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        yield


# --- images and groups made directly in a cloud (in-process or on the moto server) --------------------


def make_alarm(cloudwatch: Any, name: str, threshold: float = 1) -> None:
    """A CloudWatch alarm on the load balancer's 5xx count (moto never evaluates it: tests set its state)."""
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="HTTPCode_Target_5XX_Count",
        Namespace="AWS/ApplicationELB",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=threshold,
        ComparisonOperator="GreaterThanThreshold",
    )


def local_base_image(ec2: Any) -> str:
    """The id of the local cloud's base image, local-base-debian-12: what bake-primal seeds the moto server with,
    made here the same way when no run has needed it yet (a setup or a deploy with --image-id seeds no image)."""
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["local-base-debian-12"]}])[
        "Images"
    ]
    return str(found[0]["ImageId"]) if found else create_base_image(ec2, "local-base-debian-12")


def make_image(ec2: Any, name: str, tags: Mapping[str, str] | None = None, base: str | None = None) -> str:
    """An image made without Packer: from an instance of BASE (default: local_base_image), then tagged TAGS."""
    base = base or local_base_image(ec2)
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]
    image_id = ec2.create_image(InstanceId=instance["InstanceId"], Name=name)["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    if tags:
        ec2.create_tags(Resources=[image_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return image_id


def legacy_group(
    autoscaling: Any,
    ec2: Any,
    stack: str,
    load_balancer: str,
    image_id: str,
    when: str = "20200101000000",
    protected: bool = False,
) -> tuple[str, str]:
    """A group as the original scripts made it: asg-STACK-WHEN with launch configuration lc-STACK-WHEN, tagged
    Name=STACK, one instance behind the classic LOAD_BALANCER (PROTECTED from scale-in); (group, configuration)."""
    configuration, name = f"lc-{stack}-{when}", f"asg-{stack}-{when}"
    autoscaling.create_launch_configuration(
        LaunchConfigurationName=configuration, ImageId=image_id, InstanceType="t3.micro"
    )
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"] if s["DefaultForAz"]]
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchConfigurationName=configuration,
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        VPCZoneIdentifier=",".join(subnets),
        LoadBalancerNames=[load_balancer],
        **({"NewInstancesProtectedFromScaleIn": True} if protected else {}),
        Tags=[{"Key": "Name", "Value": stack, "PropagateAtLaunch": True}],
    )
    return name, configuration


def other_app_groups(ec2: Any, autoscaling: Any, base: str, count: int) -> None:
    """COUNT groups of another application in the account (asg-other-app-NNNN, desired 0, from a launch template
    other-app of image BASE): a deploy must not pay for them."""
    template = ec2.create_launch_template(
        LaunchTemplateName="other-app", LaunchTemplateData={"ImageId": base, "InstanceType": "t3.micro"}
    )["LaunchTemplate"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]

    def other_group(number: int) -> None:
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=f"asg-other-app-{number:04d}",
            LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"], "Version": "$Latest"},
            MinSize=0,
            MaxSize=1,
            DesiredCapacity=0,
            VPCZoneIdentifier=subnet,
            Tags=[{"Key": "Name", "Value": f"other-app-{number}", "PropagateAtLaunch": True}],
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert len(list(pool.map(other_group, range(count)))) == count  # map re-raises any failure


# --- end to end: the real CLI on the session's moto server ---------------------------------------------


def server_client(url: str, service: str) -> Any:
    """A boto3 client of the moto server at URL, with the fake credentials."""
    import boto3

    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def copy_example_app(folder: Path) -> Path:
    """FOLDER with a private copy of example-app's sources: concurrent runs never share example-app/dist."""
    folder.mkdir()
    for name in ("build.py", "server.py"):
        shutil.copy2(REPO / "example-app" / name, folder / name)
    return folder


def succeeded(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a CLI run that exited 0 without a traceback."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    return result.stdout


CALL_FILE = re.compile(r"^\d{4}-(?P<step>.+)-(?P<service>[a-z0-9]+)-(?P<operation>[A-Za-z0-9]+)\.json$")


def recorded_calls(run: Path) -> list[tuple[str, str]]:
    """(step, "service.Operation") of every AWS call a run recorded, in order: its log folder keeps one file per
    call, NNNN-STEP-SERVICE-Operation.json (deploy/logs.py)."""
    calls = []
    for path in sorted(run.glob("*.json")):
        match = CALL_FILE.match(path.name)
        assert match, f"not a per-call log file: {path.name}"
        calls.append((match["step"], f"{match['service']}.{match['operation']}"))
    return calls


def new_run(environment: Any) -> Any:
    """ENVIRONMENT as a new command line would open it: nothing read of the account yet (deploy/facts.py). A test
    that runs several commands on one Environment starts each so; the CLI opens one per command line."""
    environment.facts = Facts()
    return environment


def tags_of(group: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in group.get("Tags", [])}


def image_of(group: dict[str, Any]) -> str:
    """The image a group of the tool runs (its Image tag)."""
    return tags_of(group)["Image"]


def instance_ids(group: dict[str, Any]) -> list[str]:
    return sorted(i["InstanceId"] for i in group["Instances"])


@dataclass
class ServerView:
    """What a test reads of the environment ENV on the moto server at URL, through boto3 clients of its own."""

    url: str
    env: str
    clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def stack(self) -> str:
        return f"webapp-{self.env}"

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = server_client(self.url, service)
        return self.clients[service]

    def groups(self) -> dict[str, dict[str, Any]]:
        """The environment's groups but those handed to AWS to retire (sized 0: it drains and terminates them, the
        next run deletes them; `all_groups` has them too)."""
        return {name: group for name, group in self.all_groups().items() if group["MaxSize"] > 0}

    def all_groups(self) -> dict[str, dict[str, Any]]:
        found = self.client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]
        prefix = f"asg-{self.stack}-"
        return {g["AutoScalingGroupName"]: g for g in found if g["AutoScalingGroupName"].startswith(prefix)}

    def serving(self) -> dict[str, Any]:
        """The one group of the environment (every test starts and ends with exactly one)."""
        groups = self.groups()
        assert len(groups) == 1, f"expected one group of {self.env}, found {sorted(groups)}"
        return next(iter(groups.values()))

    def templates(self) -> list[str]:
        """The environment's launch templates but those of groups AWS retires (deleted with them, by the next run)."""
        found = self.client("ec2").describe_launch_templates()["LaunchTemplates"]
        prefix = f"lt-{self.stack}-"
        retiring = {f"lt-{name[4:]}" for name, group in self.all_groups().items() if group["MaxSize"] == 0}
        names = (t["LaunchTemplateName"] for t in found if t["LaunchTemplateName"].startswith(prefix))
        return sorted(name for name in names if name not in retiring)

    def lb_states(self) -> dict[str, str]:
        """Every instance registered at the classic load balancer elb-STACK, and its state there."""
        states = self.client("elb").describe_instance_health(LoadBalancerName=f"elb-{self.stack}")["InstanceStates"]
        return {s["InstanceId"]: s["State"] for s in states}

    def primal_image(self) -> str:
        """The newest primal image baked for this environment, as the account records it (its tags)."""
        filters = [{"Name": "tag:Env", "Values": [self.env]}, {"Name": "tag:Role", "Values": ["primal"]}]
        found = self.client("ec2").describe_images(Owners=["self"], Filters=filters)["Images"]
        assert found, f"no primal image of {self.env}"
        return str(max(found, key=lambda image: image.get("CreationDate", ""))["ImageId"])

    def image(self, image_id: str) -> dict[str, Any] | None:
        try:
            found = self.client("ec2").describe_images(ImageIds=[image_id])["Images"]
        except ClientError as error:
            assert error.response["Error"]["Code"] == "InvalidAMIID.NotFound"
            return None
        return found[0] if found else None

    def add_legacy_group(self, image_id: str, protected: bool = False) -> tuple[str, str]:
        """A group of the original scripts with IMAGE_ID behind elb-STACK, beside the serving group; see
        legacy_group. (group, configuration)."""
        return legacy_group(
            self.client("autoscaling"),
            self.client("ec2"),
            self.stack,
            f"elb-{self.stack}",
            image_id,
            protected=protected,
        )


@dataclass
class ServerSite(ServerView):
    """ENV on the moto server at URL in folders of its own under ROOT: env/ (defaults.env and ENV.env), work/
    (DEPLOY_WORK_DIR) and app/ (a copy of example-app). The CLI runs on it with fake credentials, its own
    folders, and nothing of the outer shell."""

    root: Path

    @classmethod
    def create(cls, url: str, env: str, root: Path, **settings: str) -> Self:
        """Empty the moto server at URL, then lay out ROOT: ENV.env on URL with SETTINGS and APP_DIR (relative to
        the repository) at the copy of the app."""
        reset_cloud(url)
        site = cls(url, env, root)
        copy_example_app(site.app_dir)
        write_env_folder(
            site.env_dir, {f"{env}.env": local_env_text(url, **settings, APP_DIR=os.path.relpath(site.app_dir, REPO))}
        )
        site.work_dir.mkdir()
        return site

    @property
    def env_dir(self) -> Path:
        return self.root / "env"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    @property
    def app_dir(self) -> Path:
        return self.root / "app"

    def latest_run(self) -> Path:
        """The folder of the CLI's latest run on this environment (deploy/log/ENV/latest)."""
        return (self.work_dir / "deploy" / "log" / self.env / "latest").resolve()

    def requests_of(self, *args: str) -> list[tuple[str, str]]:
        """Run the CLI with ARGS on this environment (it must succeed); the AWS calls the run recorded."""
        succeeded(self.inv(*args))
        return recorded_calls(self.latest_run())

    @property
    def state_path(self) -> Path:
        """Where earlier versions kept a note between the steps of a run: nothing writes it now."""
        return self.work_dir / "deploy" / "state" / f"{self.env}.json"

    def environ(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
        """What a CLI run's environment sets (a value) and unsets (None); EXTRA adds to it."""
        overrides: dict[str, str | None] = dict.fromkeys((*STRAY_VARIABLES, *_settings_keys()))
        overrides.update(FAKE_CREDENTIALS)
        overrides.update(DEPLOY_ENV_DIR=str(self.env_dir), DEPLOY_WORK_DIR=str(self.work_dir))
        return {**overrides, **(extra or {})}

    def run(self, *args: str, env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        """The CLI with exactly ARGS."""
        return run_inv(*args, env=self.environ(env), timeout=RUN_TIMEOUT_S)

    def inv(self, *args: str, env: Mapping[str, str | None] | None = None) -> subprocess.CompletedProcess[str]:
        """The CLI with ARGS on this environment (--env ENV)."""
        return self.run(*args, "--env", self.env, env=env)


@contextmanager
def polling(step: Callable[[], bool], timeout: float = RUN_TIMEOUT_S, interval: float = 0.02) -> Iterator[None]:
    """Call STEP every INTERVAL seconds in a thread while the block runs, until it returns True or TIMEOUT
    seconds pass; the end of the block stops it."""
    done = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + timeout
        while not done.is_set() and time.monotonic() < deadline:
            if step():
                return
            time.sleep(interval)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)


@dataclass
class Watch:
    """What a watcher saw: one count a poll, and the errors of the polls that failed."""

    counts: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@contextmanager
def watching(count: Callable[[], int]) -> Iterator[Watch]:
    """COUNT() (say, the instances a load balancer serves) every 20 ms while the block runs."""
    watch = Watch()

    def poll() -> bool:
        try:
            watch.counts.append(count())
        except ClientError as error:
            watch.errors.append(str(error))
        return False

    with polling(poll):
        yield watch


@contextmanager
def instance_stopper(view: ServerView, old_name: str, desired: int) -> Iterator[dict[str, Any]]:
    """Stops the instances of the next new group of the environment (not OLD_NAME) as soon as it has DESIRED of
    them: it can never become healthy.

    Stopped instances are OutOfService at a classic load balancer and `unused` in a target group (moto's health
    never turns Unhealthy otherwise). Yields what it found, once it acted: the group's name, its template's
    name, the group, and when it stopped them (time.monotonic()).
    """
    found: dict[str, Any] = {}
    autoscaling, ec2 = view.client("autoscaling"), view.client("ec2")
    prefix = f"asg-{view.stack}-"

    def stop() -> bool:
        for group in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]:
            name = group["AutoScalingGroupName"]
            if name.startswith(prefix) and name != old_name and len(group["Instances"]) >= desired:
                ec2.stop_instances(InstanceIds=instance_ids(group))
                found.update(
                    name=name, template=group["LaunchTemplate"]["LaunchTemplateName"], group=group, at=time.monotonic()
                )
                return True
        return False

    with polling(stop):
        yield found


# --- a proxy in front of the moto server: faults at exact requests -------------------------------------------

EC2_THROTTLED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>'
    b"<Message>Request limit exceeded.</Message></Error></Errors><RequestID>proxy-throttled</RequestID></Response>"
)


@dataclass
class AwsProxy:
    """An HTTP proxy on 127.0.0.1 in front of the moto server at TARGET. DECIDE(action, user_agent) says what
    happens to each request: "pass", "throttle" (EC2's RequestLimitExceeded answer, HTTP 503) or "hold" (no
    answer until the proxy stops: a silent wait). `seen` lists (action, user agent, what was done)."""

    target: str
    decide: Callable[[str, str], str]
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __enter__(self) -> Self:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlparse

        proxy = self
        target = urlparse(self.target)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = parse_qs(body.decode("utf-8", "replace")) | parse_qs(urlparse(self.path).query)
                action = (query.get("Action") or [self.headers.get("X-Amz-Target", "")])[0]
                agent = self.headers.get("User-Agent", "")
                what = proxy.decide(action, agent)
                proxy.seen.append((action, agent, what))
                if what == "hold":
                    proxy.released.wait(RUN_TIMEOUT_S)
                    self.close_connection = True
                    return
                if what == "throttle":
                    status, headers, payload = 503, [("Content-Type", "text/xml")], EC2_THROTTLED
                else:
                    import http.client

                    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=RUN_TIMEOUT_S)
                    connection.request(self.command, self.path, body=body, headers=dict(self.headers))
                    response = connection.getresponse()
                    status, payload = response.status, response.read()
                    headers = [(k, v) for k, v in response.getheaders() if k.lower() not in ("transfer-encoding",)]
                    connection.close()
                self.send_response(status)
                for key, value in headers:
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
