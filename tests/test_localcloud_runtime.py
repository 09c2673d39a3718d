"""The embedded cloud's runtime: the pure parts (health state, checks, app.env, time scale), the app contract's
configuration keys, and, on a server of its own, what happens to app processes when the cloud goes away."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAKE_CREDENTIALS, REPO, free_port, server_client, wait_until, write_env_folder

from deploy.appcontract import bake_inputs, check_user_script, packer_variables
from deploy.config import load_config
from deploy.errors import ConfigError, DeployError
from deploy.localcloud.apps import Timing, read_app_env
from deploy.localcloud.health_checks import Check, TargetHealth

# --- pure parts --------------------------------------------------------------------------------------------


def test_a_target_starts_out_of_service_and_turns_healthy_after_the_threshold() -> None:
    health = TargetHealth()
    assert (health.state, health.healthy) == ("initial", False)
    health.record(False, healthy_threshold=2, unhealthy_threshold=3, why="refused")
    health.record(True, 2, 3)
    assert health.state == "initial"  # one pass is not enough
    health.record(True, 2, 3)
    assert health.healthy
    health.record(False, 2, 3, "HTTP 500")
    health.record(False, 2, 3, "HTTP 500")
    assert health.healthy  # two failures of three
    health.record(False, 2, 3, "HTTP 500")
    assert health.state == "unhealthy" and "HTTP 500" in health.reason


def test_success_codes_as_a_target_group_matcher_says() -> None:
    check = Check("/h", 80, 30, 4, 2, 2, codes="200,202-204")
    assert [check.passes(code) for code in (200, 201, 203, 204, 302, 500)] == [True, False, True, True, False, False]


def test_app_env_is_read_like_systemds_environment_file(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text("# comment\nENV=dev\n\nDOMAIN='example.test'\nNAME=\"a b\"\nbroken line\n")
    assert read_app_env(path) == {"ENV": "dev", "DOMAIN": "example.test", "NAME": "a b"}
    assert read_app_env(tmp_path / "missing") == {}


def test_time_scale_multiplies_aws_durations_with_a_floor() -> None:
    timing = Timing(scale=0.05)
    assert timing.seconds(300) == pytest.approx(15.0)
    assert timing.seconds(4, floor=0.5) == 0.5
    assert Timing.from_environ({"LOCAL_TIME_SCALE": "0.01"}).scale == 0.01
    assert Timing.from_environ({}).scale == 1.0
    assert Timing.from_environ({"LOCAL_TIME_SCALE": "fast"}).scale == 1.0


# --- the app contract's keys --------------------------------------------------------------------------------


def env_with(tmp_path: Path, text: str) -> Path:
    return write_env_folder(tmp_path / "env", {"dev.env": "DOMAIN=example.com\n" + text})


def test_the_app_contract_defaults_run_the_example_app(tmp_path: Path) -> None:
    config = load_config("dev", env_with(tmp_path, ""), environ={})
    assert (config.start_command, config.app_port, config.primal_packages) == ("python3 server.py", 80, None)
    assert (config.primal_script, config.carnivore_script, config.local_time_scale) == (None, None, 0.05)
    assert packer_variables(config, "carnivore") == {
        "start_command": "python3 server.py",
        "app_port": "80",
        "carnivore_script": str(REPO / "packer" / "scripts" / "no-user-script.sh"),
    }
    assert packer_variables(config, "primal")["primal_packages"] == ""


def test_another_app_changes_what_is_baked(tmp_path: Path) -> None:
    text = "START_COMMAND=node server.js\nAPP_PORT=3000\nPRIMAL_PACKAGES=nginx, nodejs\n"
    config = load_config("dev", env_with(tmp_path, text), environ={})
    default = load_config("dev", env_with(tmp_path / "default", ""), environ={})
    assert packer_variables(config, "primal")["primal_packages"] == "nginx nodejs"
    assert packer_variables(config, "carnivore")["app_port"] == "3000"
    assert bake_inputs(config, "carnivore") != bake_inputs(default, "carnivore")
    assert bake_inputs(config, "primal") != bake_inputs(default, "primal")


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("APP_PORT=0", "must be a TCP port"),
        ("APP_PORT=http", "must be a whole number"),
        ("PRIMAL_PACKAGES=nginx;rm -rf /", "Debian package names"),
        ("PRIMAL_SCRIPT=no/such/script.sh", "is not a file"),
        ("LOCAL_TIME_SCALE=0", "more than 0"),
    ],
)
def test_a_bad_app_contract_value_is_refused(tmp_path: Path, line: str, hint: str) -> None:
    with pytest.raises(ConfigError, match=hint):
        load_config("dev", env_with(tmp_path, line + "\n"), environ={})


def test_a_user_script_must_pass_shellcheck(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed")
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "good.sh").write_text('#!/bin/bash\nset -euo pipefail\necho "$APP_PORT"\n')
    (scripts / "bad.sh").write_text("#!/bin/bash\nrm -rf $DEST/*\n")
    good = load_config(
        "dev", env_with(tmp_path / "a", f"CARNIVORE_SCRIPT={os.path.relpath(scripts / 'good.sh', REPO)}\n"), environ={}
    )
    bad = load_config(
        "dev", env_with(tmp_path / "b", f"PRIMAL_SCRIPT={os.path.relpath(scripts / 'bad.sh', REPO)}\n"), environ={}
    )
    check_user_script(good, "carnivore")
    assert packer_variables(good, "carnivore")["carnivore_script"] == str(scripts / "good.sh")
    with pytest.raises(DeployError, match=r"PRIMAL_SCRIPT .*bad\.sh does not pass shellcheck"):
        check_user_script(bad, "primal")


# --- no app process outlives the cloud ----------------------------------------------------------------------


def start_cloud(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, **FAKE_CREDENTIALS, "LOCAL_TIME_SCALE": "0.005", "LOCAL_CLOUD_DIR": str(tmp_path / "cloud")}
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.motoserver", "-H", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            server_client(url, "sts").get_caller_identity()
            return True
        except Exception:
            return False

    assert wait_until(answers, 30, 0.1), (tmp_path / "server.log").read_text()
    return process, url


def app_instance(url: str, app: Path, start: str = "sleep 600") -> tuple[str, int]:
    """An instance of an image that carries APP, run with START (tagged as the local Packer builder tags it);
    (id, pid)."""
    ec2 = server_client(url, "ec2")
    base = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    builder = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image = ec2.create_image(InstanceId=builder, Name="app-image")["ImageId"]
    ec2.terminate_instances(InstanceIds=[builder])
    tags = {"LocalAppDir": str(app), "LocalAppStart": start, "LocalAppPort": "80"}
    ec2.create_tags(Resources=[image], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    instance = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    found: dict[str, str] = {}

    def started() -> bool:
        [reservation] = ec2.describe_instances(InstanceIds=[instance])["Reservations"]
        tags = {t["Key"]: t["Value"] for t in reservation["Instances"][0].get("Tags", [])}
        found.update(tags)
        return tags.get("LocalCloudApp", "").startswith("pid ")

    assert wait_until(started, 15, 0.05), found
    return instance, int(found["LocalCloudApp"].split()[1].rstrip(","))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_no_app_process_outlives_the_cloud(tmp_path: Path, how: signal.Signals) -> None:
    app = tmp_path / "app"
    app.mkdir()
    process, url = start_cloud(tmp_path)
    try:
        instance, pid = app_instance(url, app)
        assert alive(pid)
        server_client(url, "ec2").stop_instances(InstanceIds=[instance])
        assert wait_until(lambda: not alive(pid), 10, 0.05), "a stopped instance's process kept running"
        server_client(url, "ec2").start_instances(InstanceIds=[instance])
        _, pid = app_instance(url, app)  # another instance, so that two processes are up
        os.kill(process.pid, how)
        process.wait(timeout=15)
        assert wait_until(lambda: not alive(pid), 10, 0.05), f"an app process outlived the cloud ({how.name})"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


SLOW_APP = """
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/slow/"):
            time.sleep(float(self.path.rsplit("/", 1)[1]))
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_deregistered_instance_finishes_requests_in_flight_up_to_the_draining_time(tmp_path: Path) -> None:
    import threading
    import urllib.error
    import urllib.request

    app = tmp_path / "app"
    app.mkdir()
    (app / "slow.py").write_text(SLOW_APP)
    process, url = start_cloud(tmp_path)
    try:
        elb = server_client(url, "elb")
        listener = {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}
        elb.create_load_balancer(LoadBalancerName="slow", Listeners=[listener], AvailabilityZones=["us-east-1a"])
        check = {"Target": "HTTP:80/", "Interval": 30, "Timeout": 4, "UnhealthyThreshold": 2, "HealthyThreshold": 2}
        elb.configure_health_check(LoadBalancerName="slow", HealthCheck=check)
        # Draining 200 s x 0.005 = 1 s: a request of 0.3 s finishes, one of 4 s is cut.
        elb.modify_load_balancer_attributes(
            LoadBalancerName="slow",
            LoadBalancerAttributes={"ConnectionDraining": {"Enabled": True, "Timeout": 200}},
        )
        [tags] = elb.describe_tags(LoadBalancerNames=["slow"])["TagDescriptions"]
        endpoint = {t["Key"]: t["Value"] for t in tags["Tags"]}["LocalCloudURL"]
        instance, _ = app_instance(url, app, start="python3 slow.py")
        elb.register_instances_with_load_balancer(LoadBalancerName="slow", Instances=[{"InstanceId": instance}])

        def in_service() -> bool:
            states = elb.describe_instance_health(LoadBalancerName="slow")["InstanceStates"]
            return [s["State"] for s in states] == ["InService"]

        assert wait_until(in_service, 15, 0.05)
        answers: dict[str, object] = {}

        def get(name: str, path: str) -> None:
            try:
                with urllib.request.urlopen(endpoint + path, timeout=20) as response:
                    answers[name] = response.status
            except urllib.error.HTTPError as error:
                answers[name] = error.code

        threads = [threading.Thread(target=get, args=(n, p)) for n, p in (("short", "/slow/0.3"), ("long", "/slow/4"))]
        for thread in threads:
            thread.start()
        time.sleep(0.1)  # both are in flight
        elb.deregister_instances_from_load_balancer(LoadBalancerName="slow", Instances=[{"InstanceId": instance}])
        get("after", "/")  # no new request reaches it: nothing else serves (503, after the surge queue's second)
        for thread in threads:
            thread.join(timeout=30)
        assert answers == {"short": 200, "long": 502, "after": 503}
    finally:
        process.terminate()
        process.wait(timeout=15)
