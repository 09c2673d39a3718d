"""Benchmark: a deploy against the embedded cloud with the bakes skipped (--image-id), at several sizes; then the
request budgets (the real CLI, both load balancer kinds, two instances), each beside its budget.

Prints, per scenario (instances, outdated groups, unrelated groups in the account) and load balancer kind, the wall
time of the deploy (launch-asg, wait-health, the traffic stage, finish: the pipeline's own stages; the seconds spent
sleeping between polls apart) against the modelled physical limit (boot + healthy threshold x interval + the traffic
steps, at the time scale: no deploy can return sooner), the AWS requests it sent (by operation), and the traffic
sent through the load balancer (RATE requests a second): how many, and how many failed, during the deploy and during
the retirement AWS carries out after it returned (the replaced group kept for KEEP_PREVIOUS_SECONDS, then sized 0 by
its scheduled action; older ones sized 0 at once; drained, then terminated by the cloud) until the cloud has emptied
every outdated group. The serving group and the new one run the example app (real processes behind real health
checks); older outdated groups are records (images without an app). Not a test: no figure is asserted.

    .venv/bin/python tests/benchmark_deploy.py            # all scenarios, then the budgets
    .venv/bin/python tests/benchmark_deploy.py 1,1,0      # one scenario, then the budgets
    .venv/bin/python tests/benchmark_deploy.py 1,1,0 --kind application --no-budgets
    .venv/bin/python tests/benchmark_deploy.py budgets    # the budgets only
    .venv/bin/python tests/benchmark_deploy.py bad-release  # the bad release only (needs packer)

The bad release (issue 19, Done 9): the real CLI deploys, with TRAFFIC_STEPS=10,50,100, a release whose health
check passes but half of its other requests fail (FAIL_RATE=0.5), under RATE requests a second; it prints the share
of the requests that failed over the whole deploy (and after the rollback), and the time from the end of the bad
step's observation (STEP_SECONDS after its weights were set, scaled) to the rollback (the serving group's target
group seen at weight 100 again): the wait for CloudWatch's minute to be over and published, the read, the
ModifyListener.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

_real_sleep = time.sleep
slept = [0.0]


def _counting_sleep(seconds: float) -> None:
    slept[0] += seconds
    _real_sleep(seconds)


time.sleep = _counting_sleep  # before deploy.* is imported: the waiter's default sleep is this one

from conftest import (  # noqa: E402
    ServerSite,
    free_port,
    local_base_image,
    make_image,
    new_run,
    other_app_groups,
    reset_cloud,
    succeeded,
)

from deploy import environment as environments  # noqa: E402
from deploy.aws.groups import describe_groups  # noqa: E402
from deploy.aws.health import group_health  # noqa: E402
from deploy.aws.loadbalancers import HealthCheck  # noqa: E402
from deploy.localcloud.apps import BOOT_S  # noqa: E402
from deploy.pipeline import LAUNCH_ASG, run  # noqa: E402
from deploy.plans.stages import Request  # noqa: E402
from deploy.settings import SETTINGS_BY_KEY  # noqa: E402
from deploy.steps.launch_asg import launch_group  # noqa: E402
from deploy.steps.setup import run_setup  # noqa: E402
from deploy.steps.shift_traffic import promote  # noqa: E402
from deploy.views.traffic import Traffic, service_url  # noqa: E402

T = TypeVar("T")
SCENARIOS = [(1, 1, 0), (10, 3, 0), (10, 3, 300), (20, 5, 300)]
ENV = "bench"
TIME_SCALE = 0.01  # AWS's durations x 0.01: boot 0.2 s, checks every 0.3 s, draining 3 s
RATE = 20.0
KEEP_PREVIOUS_SECONDS = 300  # the replaced group's window: 3 s at the time scale
RETIREMENT_TIMEOUT_S = 120.0


def start_server(port: int, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy.motoserver", "-H", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "LOCAL_TIME_SCALE": str(TIME_SCALE), "LOCAL_CLOUD_DIR": str(log.parent / "cloud")},
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


def write_env(folder: Path, port: int, instances: int, kind: str = "classic") -> None:
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
                f"LOCAL_TIME_SCALE={TIME_SCALE}",
                f"LOAD_BALANCER={kind}",
                f"KEEP_PREVIOUS_SECONDS={KEEP_PREVIOUS_SECONDS}",
            ]
        )
        + "\n"
    )


def deployment_image(environment, name: str, app: Path | None = None) -> str:
    """A deployment image as the carnivore bake tags it, without running Packer; with APP, it carries that staged
    folder as the local Packer builder's image does (so its instances run it)."""
    tags = environment.names.tags(Role="carnivore", Name=name)
    if app is not None:
        tags |= {"LocalAppDir": str(app), "LocalAppStart": "python3 server.py", "LocalAppPort": "80"}
    return make_image(environment.aws.ec2, name, tags)


def staged_app(work: Path, version: str) -> Path:
    """The example app, built, with an app.env: what copy-over stages."""
    folder = work / f"app-{version}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in ("server.py", "build.py"):
        shutil.copy2(REPO / "example-app" / name, folder / name)
    (folder / "version.json").write_text(json.dumps({"built_at": version, "env": ENV}) + "\n")
    (folder / "app.env").write_text(f"ENV={ENV}\nHEALTH_CHECK_PATH=/api/status/health\n")
    return folder


def physical_limit(environment) -> float:
    """Boot + healthy threshold x interval + the traffic steps (STEP_SECONDS each but the last), at the time scale:
    no deploy can return sooner (the retirement is AWS's, after it returned)."""
    config = environment.config
    check = HealthCheck(path=config.health_check_path)  # what setup and each group's target group check with
    steps = len(config.traffic_steps) - 1  # the last step (100) is not observed: the deploy ends with it
    return TIME_SCALE * (BOOT_S + check.healthy * check.interval + steps * config.step_seconds)


def scenario(port: int, work: Path, instances: int, outdated: int, unrelated: int, kind: str) -> dict:
    reset_cloud(f"http://127.0.0.1:{port}")
    write_env(work / "env", port, instances, kind)
    environment = environments.open_environment(ENV)  # LOCAL_CLOUD finds the server started above
    run_setup(environment)
    released: set[str] = set()
    for number in range(outdated):
        serving = number == outdated - 1  # the one that serves runs the app; older ones are records
        app = staged_app(work, f"old-{number}") if serving else None
        image_id = deployment_image(environment, f"bench-old-{number}", app)
        group = launch_group(environment, image_id=image_id)
        promote(environment, group, image_id)
        environment.load_balancer.serve(group)
        # An ALB forwards to at most 5 target groups: the older outdated groups are records whose own target groups
        # an earlier run removed already (serving, kept and retiring groups hold theirs until they are deleted).
        for name in sorted(groups_of(environment))[:-2] if kind == "application" else []:
            if name not in released:
                environment.load_balancer.detach_group(name)
                environment.load_balancer.release(group, [name])
                released.add(name)
        _real_sleep(1.0)  # distinct group stamps, as deploys minutes apart would have
    ec2 = environment.aws.ec2
    other_app_groups(ec2, environment.aws.autoscaling, local_base_image(ec2), unrelated)
    new_image = deployment_image(environment, "bench-new", staged_app(work, "new"))
    serving = group_health(environment, group)
    deadline = time.monotonic() + 60
    while not serving.done and time.monotonic() < deadline:  # the serving group answers before traffic starts
        _real_sleep(0.1)
        serving = group_health(environment, group)

    traffic = Traffic(service_url(environment), seconds=3600, rate=RATE, sleep=_real_sleep)
    sender = threading.Thread(target=traffic.run, daemon=True)
    sender.start()
    new_run(environment)  # the deploy measured is a command of its own: it reads the account afresh
    environment.aws.requests.clear()
    slept[0] = 0.0
    started = time.perf_counter()
    began = time.monotonic()
    made = run(environment, Request(image_id=new_image), start=LAUNCH_ASG.name)  # the pipeline's stages
    wall = time.perf_counter() - started
    ended = time.monotonic()
    requests = Counter(environment.aws.requests)
    # The retirement AWS carries out after the deploy returned: until every outdated group is empty.
    outdated_names = [name for name in groups_of(environment) if name != (made.summary or {}).get("group")]
    deadline = time.monotonic() + RETIREMENT_TIMEOUT_S
    while time.monotonic() < deadline:
        if all(not raw["Instances"] for raw in describe_groups(environment, outdated_names)):
            break
        _real_sleep(0.1)
    emptied = time.monotonic()
    _real_sleep(0.5)  # requests sent right after the last termination
    traffic.stop.set()
    sender.join(timeout=30)
    during = [r for r in traffic.results if began <= r.started <= ended]
    retiring = [r for r in traffic.results if ended < r.started]
    return {
        "wall": wall,
        "slept": slept[0],
        "requests": requests,
        "traffic": len(during),
        "failed": sum(1 for r in during if not r.ok),
        "retirement": emptied - ended,
        "retirement_traffic": len(retiring),
        "retirement_failed": sum(1 for r in retiring if not r.ok),
        "limit": physical_limit(environment),
    }


def groups_of(environment) -> list[str]:
    prefix = environment.names.group_prefix
    found = environment.aws.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]
    return [g["AutoScalingGroupName"] for g in found if g["AutoScalingGroupName"].startswith(prefix)]


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


# The budgets (issue 13; issue 19's target group per group: the first deploy +6 on the application kind; issue 20: a
# deploy that retires one group 20 / 24), and what this tool sent before issue 13 (main at 90a3f3c, same scenarios).
BUDGETS = {
    ("classic", "second setup"): 12,
    ("classic", "first deploy"): 18,
    ("classic", "retire-one deploy"): 20,
    ("application", "second setup"): 12,
    ("application", "first deploy"): 24,
    ("application", "retire-one deploy"): 24,
}
BEFORE = {
    ("classic", "second setup"): 26,
    ("classic", "first deploy"): 65,
    ("classic", "retire-one deploy"): 75,
    ("application", "second setup"): 31,
    ("application", "first deploy"): 68,
    ("application", "retire-one deploy"): 87,
}


def budgets(port: int, work: Path) -> list[tuple[str, str, Counter[str]]]:
    """(kind, scenario, requests by operation) of the real CLI on a fresh cloud: setup, a first deploy, a deploy
    that retires one group (--image-id, two instances), a second setup; counted from each run's per-call logs."""
    rows = []
    for kind in ("classic", "application"):
        root = work / f"budget-{kind}"
        root.mkdir()
        capacity = {"MIN_CAPACITY": "2", "DESIRED_CAPACITY": "2", "MAX_CAPACITY": "2"}
        site = ServerSite.create(
            f"http://127.0.0.1:{port}",
            "budget",
            root,
            LOAD_BALANCER=kind,
            LOCAL_TIME_SCALE=str(TIME_SCALE),
            KEEP_PREVIOUS_SECONDS="900",  # the default, as tests/test_request_budget.py: the replaced group is kept
            **capacity,
        )
        succeeded(site.inv("setup"))
        for scenario_name, image in (("first deploy", "budget-a"), ("retire-one deploy", "budget-b")):
            tags = {"ManagedBy": "immutable-deploy", "App": "webapp", "Env": "budget", "Role": "carnivore"}
            image_id = make_image(site.client("ec2"), image, {**tags, "Name": image})
            calls = site.requests_of("deploy", "--image-id", image_id)
            rows.append((kind, scenario_name, Counter(operation for _, operation in calls)))
        calls = site.requests_of("setup")
        rows.append((kind, "second setup", Counter(operation for _, operation in calls)))
    return rows


def print_budgets(rows: list[tuple[str, str, Counter[str]]]) -> None:
    print(f"\n{'load balancer':>13} {'scenario':>18} {'requests':>9} {'budget':>7} {'before':>7}")
    for kind, name, count in rows:
        print(f"{kind:>13} {name:>18} {sum(count.values()):9d} {BUDGETS[(kind, name)]:7d} {BEFORE[(kind, name)]:7d}")
    for kind, name, count in rows:
        print(f"\n{kind}, {name}: " + ", ".join(f"{op} {n}" for op, n in sorted(count.items())))


BAD_STEP_SECONDS = 300  # 3 s at TIME_SCALE


def bad_release(port: int, work: Path) -> dict:
    """A release failing half of its requests, deployed with TRAFFIC_STEPS=10,50,100 by the real CLI under traffic:
    the share of failed requests and the time from the bad step's end to the rollback."""
    from test_e2e_progressive import Watch, target_group_of

    root = work / "bad-release"
    root.mkdir()
    site = ServerSite.create(
        f"http://127.0.0.1:{port}",
        "test",
        root,
        LOAD_BALANCER="application",
        DESIRED_CAPACITY="1",
        TRAFFIC_STEPS="10,50,100",
        STEP_SECONDS=str(BAD_STEP_SECONDS),
        MIN_REQUESTS="3",
        LOCAL_TIME_SCALE=str(TIME_SCALE),
    )
    succeeded(site.inv("setup"))
    succeeded(site.inv("deploy"))
    serving = site.serving()["AutoScalingGroupName"]
    url = json.loads(succeeded(site.inv("status", "--json")))["load_balancer"]["url"]
    traffic = Traffic(url, seconds=3600, rate=RATE, sleep=_real_sleep)
    watch = Watch(site.url)
    threads = [threading.Thread(target=traffic.run, daemon=True), threading.Thread(target=watch.run, daemon=True)]
    for thread in threads:
        thread.start()
    _real_sleep(1.0)
    began = time.monotonic()
    result = site.inv("deploy", env={"FAIL_RATE": "0.5"})
    ended = time.monotonic()
    _real_sleep(1.0)
    traffic.stop.set()
    watch.stop.set()
    for thread in threads:
        thread.join(timeout=30)
    own = target_group_of(serving)
    step = min(t for t, w in watch.samples if t > began and w.get(own) == 90)
    back = watch.first(own, 100, since=step)
    during = [r for r in traffic.results if began <= r.started <= ended]
    return {
        "exit": result.returncode,
        "requests": len(during),
        "failed": sum(1 for r in during if not r.ok),
        "failed_after": sum(1 for r in traffic.results if r.started > back + 0.1 and not r.ok),
        "step_end_to_rollback": back - (step + BAD_STEP_SECONDS * TIME_SCALE),
        "step_seconds": BAD_STEP_SECONDS * TIME_SCALE,
        "minute": 60 * TIME_SCALE,
    }


def print_bad_release(result: dict) -> None:
    share = 100 * result["failed"] / max(result["requests"], 1)
    print(
        f"\nbad release (FAIL_RATE=0.5, TRAFFIC_STEPS=10,50,100, step {result['step_seconds']:.1f} s, CloudWatch"
        f" minute {result['minute']:.1f} s): exit {result['exit']}; {result['failed']} of {result['requests']}"
        f" requests failed ({share:.1f} %), {result['failed_after']} after the rollback; bad step's end to rollback"
        f" {result['step_end_to_rollback']:.2f} s"
    )


def on_a_server(measure: Callable[[int, Path], T]) -> T:
    """MEASURE(port, work folder) with a moto server of its own, stopped by its pid whatever happens."""
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        isolate(work)
        port = free_port()
        server = start_server(port, work / "moto.log")
        try:
            return measure(port, work)
        finally:
            stop_server(server)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A deploy on the embedded cloud at several sizes: wall time against the modelled physical limit,"
        " AWS requests, failed requests during the deploy and during the retirement AWS carries out after it; then"
        " the request budgets of the real CLI. No figure is asserted.",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        help="INSTANCES,OUTDATED,UNRELATED (e.g. 1,1,0 or 20,5,300); default: all of "
        + " ".join(",".join(map(str, s)) for s in SCENARIOS)
        + "; `budgets`: the budgets only; `bad-release`: the bad release only (TRAFFIC_STEPS=10,50,100)",
    )
    parser.add_argument("--kind", choices=["classic", "application", "both"], default="both")
    parser.add_argument("--no-budgets", action="store_true", help="skip the request budgets")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=TIME_SCALE,
        help=f"LOCAL_TIME_SCALE of the scenarios (default {TIME_SCALE}: a physical limit of 0.8 s, below one poll)",
    )
    return parser.parse_args()


def main() -> None:
    global TIME_SCALE
    args = arguments()
    TIME_SCALE = args.time_scale
    if args.scenarios == ["bad-release"]:
        print_bad_release(on_a_server(bad_release))
        return
    only_budgets = args.scenarios == ["budgets"]
    chosen = [] if only_budgets else [tuple(int(n) for n in arg.split(",")) for arg in args.scenarios] or SCENARIOS
    kinds = ["classic", "application"] if args.kind == "both" else [args.kind]

    def measure(port: int, work: Path) -> tuple[list, list, dict | None]:
        results = [((size, kind), scenario(port, work, *size, kind)) for size in chosen for kind in kinds]
        bad = bad_release(port, work) if not args.scenarios else None  # all scenarios: the bad release too
        return results, [] if args.no_budgets else budgets(port, work), bad

    results, budget_rows, bad = on_a_server(measure)
    if budget_rows:
        print_budgets(budget_rows)
    if bad is not None:
        print_bad_release(bad)
    if not results:
        return
    print(
        f"\n{'instances,outdated,unrelated':>30} {'kind':>12} {'wall s':>7} {'limit s':>8} {'wall-limit s':>13}"
        f" {'polling sleep s':>16} {'AWS requests':>13} {'traffic':>8} {'failed':>7}"
        f" {'retirement s':>13} {'traffic':>8} {'failed':>7}"
    )
    for (size, kind), result in results:
        total = sum(result["requests"].values())
        print(
            f"{','.join(map(str, size)):>30} {kind:>12} {result['wall']:7.2f} {result['limit']:8.2f}"
            f" {result['wall'] - result['limit']:13.2f} {result['slept']:16.2f} {total:13d} {result['traffic']:8d}"
            f" {result['failed']:7d} {result['retirement']:13.2f} {result['retirement_traffic']:8d}"
            f" {result['retirement_failed']:7d}"
        )
    for (size, kind), result in results:
        ops = ", ".join(f"{op} {n}" for op, n in sorted(result["requests"].items()))
        print(f"\n{size} {kind}: {ops}")


if __name__ == "__main__":
    main()
