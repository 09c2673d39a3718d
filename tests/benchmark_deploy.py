"""Benchmark: a deploy against the embedded cloud with the bakes skipped (--image-id), at several sizes.

Prints, per scenario (instances, outdated groups, unrelated groups in the account), the wall time
of the tool's own work (launch, health wait, retirement; the seconds spent sleeping between polls
are shown apart) and the AWS requests it sent, by operation. Not a test: no figure is asserted.

    .venv/bin/python tests/benchmark_deploy.py            # all scenarios
    .venv/bin/python tests/benchmark_deploy.py 10,3,300   # one
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

_real_sleep = time.sleep
slept = [0.0]


def _counting_sleep(seconds: float) -> None:
    slept[0] += seconds
    _real_sleep(seconds)


time.sleep = _counting_sleep  # before deploy.* is imported: the waiter's default sleep is this one

from conftest import free_port, local_base_image, make_image, other_app_groups, reset_cloud  # noqa: E402

from deploy import environment as environments  # noqa: E402
from deploy.settings import SETTINGS_BY_KEY  # noqa: E402
from deploy.steps.cleanup import cleanup as retire_outdated  # noqa: E402
from deploy.steps.launch_asg import launch_group  # noqa: E402
from deploy.steps.setup import run_setup  # noqa: E402
from deploy.steps.wait_health import promote, wait_for_new_group  # noqa: E402

SCENARIOS = [(1, 1, 0), (10, 3, 0), (10, 3, 300), (50, 5, 300)]
ENV = "bench"


def start_server(port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.motoserver", "-H", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
            return process
        except OSError:
            _real_sleep(0.1)
    process.kill()
    raise SystemExit("the moto server did not start")


def write_env(folder: Path, port: int, instances: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "defaults.env").write_text((REPO / "env" / "defaults.env").read_text())
    (folder / f"{ENV}.env").write_text(
        "\n".join(
            [
                "LOCAL_CLOUD=true",
                f"AWS_ENDPOINT_URL=http://127.0.0.1:{port}",
                "DOMAIN=example.test",
                "SOURCE_AMI=local-base-debian-12",
                "SOURCE_AMI_OWNER=self",
                f"MIN_CAPACITY={instances}",
                f"DESIRED_CAPACITY={instances}",
                f"MAX_CAPACITY={instances}",
                "POLL_SECONDS=1",
                "HEALTH_TIMEOUT=120",
                "RETAIN_IMAGES=2",
                "LOG_RUNS=3",
            ]
        )
        + "\n"
    )


def deployment_image(environment, name: str) -> str:
    """A deployment image as the carnivore bake tags it, without running Packer."""
    return make_image(environment.aws.ec2, name, environment.names.tags(Role="carnivore", Name=name))


def scenario(port: int, work: Path, instances: int, outdated: int, unrelated: int) -> dict:
    reset_cloud(f"http://127.0.0.1:{port}")
    write_env(work / "env", port, instances)
    environment = environments.open_environment(ENV)  # LOCAL_CLOUD finds the server started above
    run_setup(environment)
    for number in range(outdated):
        image_id = deployment_image(environment, f"bench-old-{number}")
        group = launch_group(environment, image_id=image_id)
        promote(environment, group, image_id)
        environment.state.put("pending", None)
        _real_sleep(1.0)  # distinct group stamps, as deploys minutes apart would have
    ec2 = environment.aws.ec2
    other_app_groups(ec2, environment.aws.autoscaling, local_base_image(ec2), unrelated)
    new_image = deployment_image(environment, "bench-new")

    environment.aws.requests.clear()
    slept[0] = 0.0
    started = time.perf_counter()
    launch_group(environment, image_id=new_image)
    wait_for_new_group(environment)
    retire_outdated(environment)
    wall = time.perf_counter() - started
    return {"wall": wall, "slept": slept[0], "requests": Counter(environment.aws.requests)}


def isolate(work: Path) -> None:
    """Like the tests: nothing from the outer shell picks the endpoint, account, env or a setting."""
    for key in list(os.environ):
        if key.startswith("AWS_") or key in SETTINGS_BY_KEY or key in ("DEPLOY_ENV", "NODE_ENV"):
            del os.environ[key]
    os.environ.update(
        {
            "DEPLOY_ENV_DIR": str(work / "env"),
            "DEPLOY_WORK_DIR": str(work),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            "AWS_CONFIG_FILE": "/nonexistent",
        }
    )


def stop_server(server: subprocess.Popen) -> None:
    """By its pid: SIGTERM, then SIGKILL if it has not exited within 10 s."""
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def main() -> None:
    chosen = [tuple(int(n) for n in arg.split(",")) for arg in sys.argv[1:]] or SCENARIOS
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        isolate(work)
        port = free_port()
        server = start_server(port, work / "moto.log")
        try:
            results = [(size, scenario(port, work, *size)) for size in chosen]
        finally:
            stop_server(server)
    print(f"\n{'instances,outdated,unrelated':>30} {'wall s':>8} {'of which polling sleep s':>25} {'requests':>9}")
    for size, result in results:
        work_s = result["wall"]
        total = sum(result["requests"].values())
        print(f"{size!s:>30} {work_s:8.2f} {result['slept']:25.2f} {total:9d}")
    for size, result in results:
        ops = ", ".join(f"{op} {n}" for op, n in sorted(result["requests"].items()))
        print(f"\n{size}: {ops}")


if __name__ == "__main__":
    main()
