"""Decide once: what a dry run announces is exactly what the real run then does.

Each test builds an account state in-process (mock_aws), asks the dry run for its plan, runs the real
command, and compares the plan's deletions with what really disappeared from the account (and its keeps
with what is still there). States: an image another environment runs, groups of the original scripts,
a half-retired group, a pending group, images given with --image-id, RETAIN_IMAGES 0 and 2, what a killed bake
left. Kinds compared: groups, launch templates and configurations, images, security groups, key pairs, target groups.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import image_of, legacy_group, new_run
from operator_env import FakeClock, bake_image, client, create_zone, deploy, make_environment, set_up
from test_deploy_steps import FakePacker
from test_leftovers import packer_leftover

from deploy.aws.converge import VERBS
from deploy.environment import Environment
from deploy.pipeline import LAUNCH_ASG, plan, rollback, run
from deploy.plans.actions import Action
from deploy.plans.stages import Request
from deploy.steps import baking
from deploy.steps.bake_carnivore import bake_carnivore
from deploy.steps.cleanup import cleanup, cleanup_plan
from deploy.steps.destroy import run_destroy
from deploy.steps.launch_asg import launch_group
from deploy.steps.setup import run_setup


@pytest.fixture
def cloud(cloud: None) -> None:
    create_zone()


def account() -> dict[str, set[str]]:
    """What a run may create or delete, by kind, as the account lists it now."""
    ec2, autoscaling = client("ec2"), client("autoscaling")
    return {
        "security_groups": {g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]},
        "key_pairs": {k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]},
        "target_groups": {t["TargetGroupName"] for t in client("elbv2").describe_target_groups()["TargetGroups"]},
        "groups": {g["AutoScalingGroupName"] for g in autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]},
        "launch_templates": {t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]},
        "launch_configurations": {
            c["LaunchConfigurationName"] for c in autoscaling.describe_launch_configurations()["LaunchConfigurations"]
        },
        "images": {i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"]},
    }


KIND = {
    "delete-group": "groups",
    "delete-launch-template": "launch_templates",
    "delete-launch-configuration": "launch_configurations",
    "delete-image": "images",
    "delete-security-group": "security_groups",
    "delete-key-pair": "key_pairs",
    "delete-target-group": "target_groups",
}


def announced(actions: list[Action]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {kind: set() for kind in KIND.values()}
    for action in actions:
        if action.op in KIND:
            found[KIND[action.op]].add(action.target)
    return found


def vanished(before: dict[str, set[str]], after: dict[str, set[str]]) -> dict[str, set[str]]:
    return {kind: before[kind] - after[kind] for kind in before}


def kept_images(actions: list[Action]) -> set[str]:
    return {a.target.removeprefix("image ") for a in actions if a.op == "keep" and a.target.startswith("image ")}


def planner(tmp_path: Path, **settings: str) -> Environment:
    extra = "".join(f"{key}={value}\n" for key, value in settings.items())
    return make_environment(
        tmp_path / "plan", dry_run=True, kind=settings.get("LOAD_BALANCER", "application"), extra=extra
    )


def runner(tmp_path: Path, **settings: str) -> Environment:
    extra = "".join(f"{key}={value}\n" for key, value in settings.items())
    environment = make_environment(tmp_path / "run", kind=settings.get("LOAD_BALANCER", "application"), extra=extra)
    clock = FakeClock()
    environment.clock, environment.sleep = clock, clock.sleep
    return set_up(environment)


def assert_cleanup_does_what_its_dry_run_says(
    tmp_path: Path, environment: Environment, **settings: str
) -> list[Action]:
    plan = cleanup_plan(planner(tmp_path, **settings))
    before = account()
    cleanup(new_run(environment))
    after = account()
    assert vanished(before, after) == announced(plan)
    assert kept_images(plan) <= after["images"]
    return plan


def assert_cleanups_do_what_their_dry_runs_say(
    tmp_path: Path, environment: Environment, **settings: str
) -> list[Action]:
    """Two cleanups (KEEP_PREVIOUS_SECONDS=0): the first sizes the outdated groups 0 (AWS empties them: at once
    in-process), the second deletes them with what only they used; each does what its dry run says. Both plans."""
    settings = {"KEEP_PREVIOUS_SECONDS": "0", **settings}
    first = assert_cleanup_does_what_its_dry_run_says(tmp_path, environment, **settings)
    assert not announced(first)["groups"] or all(a.op != "scale-in" for a in first)
    second = assert_cleanup_does_what_its_dry_run_says(tmp_path, environment, **settings)
    assert {a.target for a in first if a.op == "scale-in"} <= announced(second)["groups"]
    return first + second


@pytest.mark.parametrize("retain", ["0", "2"])
def test_retained_and_outdated_images(cloud, tmp_path, retain):
    environment = runner(tmp_path, KEEP_PREVIOUS_SECONDS="0", RETAIN_IMAGES=retain)
    images = [deploy(environment)[1] for _ in range(4)]
    for day, image in enumerate(images, start=1):  # deployed on four days, not within one second
        client("ec2").create_tags(Resources=[image], Tags=[{"Key": "Deployed", "Value": f"2026-01-0{day}T00:00:00Z"}])
    plan = assert_cleanups_do_what_their_dry_runs_say(tmp_path, environment, RETAIN_IMAGES=retain)
    deleted = announced(plan)["images"]
    assert deleted == ({images[0]} if retain == "2" else set(images[:3]))  # the serving one always stays


def test_an_image_another_environment_runs_is_kept(cloud, tmp_path):
    environment = runner(tmp_path, KEEP_PREVIOUS_SECONDS="0", RETAIN_IMAGES="0")
    _, shared = deploy(environment)
    deploy(environment)
    other = set_up(make_environment(tmp_path / "other", env="other"))
    deploy(other, shared)  # promoted by hand in another environment (--image-id there)
    plan = assert_cleanups_do_what_their_dry_runs_say(tmp_path, environment, RETAIN_IMAGES="0")
    assert shared in kept_images(plan)


def test_groups_of_the_original_scripts_are_retired_with_their_configurations(cloud, tmp_path):
    environment = runner(tmp_path, KEEP_PREVIOUS_SECONDS="0", LOAD_BALANCER="classic")
    legacy, configuration = legacy_group(
        client("autoscaling"),
        client("ec2"),
        "webapp-staging",
        "elb-webapp-staging",
        bake_image("staging", managed=False),
    )
    deploy(environment)
    plan = assert_cleanups_do_what_their_dry_runs_say(tmp_path, environment, LOAD_BALANCER="classic")
    assert announced(plan)["groups"] == {legacy}
    assert announced(plan)["launch_configurations"] == {configuration}


def test_a_half_retired_group_is_finished(cloud, tmp_path):
    environment = runner(tmp_path, KEEP_PREVIOUS_SECONDS="0")
    old, _ = deploy(environment)
    deploy(environment)
    environment.load_balancer.detach_group(old)  # a run was killed after detaching and scaling down
    client("autoscaling").update_auto_scaling_group(AutoScalingGroupName=old, MinSize=0, DesiredCapacity=0)
    plan = assert_cleanups_do_what_their_dry_runs_say(tmp_path, environment)
    assert announced(plan)["groups"] == {old}


def test_a_pending_group_left_by_a_killed_deploy_is_retired(cloud, tmp_path):
    environment = runner(tmp_path, KEEP_PREVIOUS_SECONDS="0")
    deploy(environment)
    pending = launch_group(environment, image_id=bake_image("staging"))  # never promoted
    plan = assert_cleanups_do_what_their_dry_runs_say(tmp_path, environment)
    assert pending in announced(plan)["groups"]


def test_an_image_given_with_image_id_is_never_deleted(cloud, tmp_path):
    environment = runner(tmp_path, KEEP_PREVIOUS_SECONDS="0", RETAIN_IMAGES="0")
    given = bake_image("staging")
    bake_carnivore(environment, image_id=given)  # checks it; hands it on as given by hand
    deploy(environment, given, by_hand=True)
    deploy(environment)
    plan = assert_cleanups_do_what_their_dry_runs_say(tmp_path, environment, RETAIN_IMAGES="0")
    assert given not in announced(plan)["images"]


def _cleanup_part(lines: list[str]) -> list[str]:
    return [line.removeprefix("cleanup: ") for line in lines if line.startswith("cleanup: ")]


@pytest.mark.parametrize("state", ["plain", "pending leftover", "other environment"])
def test_a_deploy_retires_what_its_dry_run_says(cloud, tmp_path, state):
    environment = runner(tmp_path, RETAIN_IMAGES="0")
    _, first = deploy(environment)
    deploy(environment)
    pending = launch_group(environment, image_id=bake_image("staging")) if state == "pending leftover" else None
    if state == "other environment":
        deploy(set_up(make_environment(tmp_path / "other", env="other")), first)
    image = bake_image("staging")
    lines = plan(planner(tmp_path, RETAIN_IMAGES="0"), Request(image_id=image))
    before = account()

    run(new_run(environment), Request(image_id=image), start=LAUNCH_ASG.name)

    new_group = next(line for line in lines if line.startswith("wait-health:")).split(" healthy ")[1].split(";")[0]
    gone = vanished(before, account())
    planned = [line for line in _cleanup_part(lines) if line.startswith("would ")]
    removed = {line.split()[4] for line in lines if line.startswith("launch-asg: would delete group")}
    assert removed == ({pending} if state == "pending leftover" else set())
    retired = {line.split()[3] for line in planned if line.startswith("would retire group")}
    assert retired | removed == gone["groups"]
    templates = {line.split()[4] for line in planned if line.startswith("would delete launch template")}
    assert templates | {f"lt-{group.removeprefix('asg-')}" for group in removed} == gone["launch_templates"]
    assert new_group not in gone["groups"]
    assert {line.split()[3] for line in planned if line.startswith("would deregister image")} == gone["images"]


def test_a_rollback_does_what_its_dry_run_says(cloud, tmp_path):
    environment = runner(tmp_path, RETAIN_IMAGES="2", KEEP_PREVIOUS_SECONDS="0")  # no window: the earlier image again
    _, first = deploy(environment)
    deploy(environment)
    plan_env = planner(tmp_path, RETAIN_IMAGES="2", KEEP_PREVIOUS_SECONDS="0")
    lines = rollback(plan_env, dry_run=True)
    assert isinstance(lines, list)
    assert f"build-app, copy-over, bake-primal, bake-carnivore: skip, image {first} is given" in lines
    before = account()

    summary = rollback(new_run(environment))

    assert isinstance(summary, dict) and summary["image"] == first
    gone = vanished(before, account())
    planned = _cleanup_part(lines)
    assert {line.split()[3] for line in planned if line.startswith("would delete group")} == gone["groups"]
    assert {line.split()[3] for line in planned if line.startswith("would deregister image")} == gone["images"]
    sized = {line.split()[3] for line in planned if line.startswith("would size group")}
    assert sized and all(group_sizes(name) == (0, 0, 0) for name in sized)


def group_sizes(name: str) -> tuple[int, int, int]:
    [raw] = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return raw["MinSize"], raw["MaxSize"], raw["DesiredCapacity"]


@pytest.mark.parametrize("kind", ["application", "classic"])
def test_a_rollback_within_the_window_does_what_its_dry_run_says(cloud, tmp_path, kind):
    environment = runner(tmp_path, LOAD_BALANCER=kind)  # KEEP_PREVIOUS_SECONDS 900: the first group is kept
    kept, first = deploy(environment)
    rolled_back, _ = deploy(environment)
    cleanup(new_run(environment))  # the deploy's end: the kept group's retirement scheduled (classic: detached)
    actions = client("autoscaling").describe_scheduled_actions(AutoScalingGroupName=kept)["ScheduledUpdateGroupActions"]
    assert [(a["ScheduledActionName"], a["MaxSize"]) for a in actions] == [("retire", 0)]
    lines = rollback(planner(tmp_path, LOAD_BALANCER=kind), dry_run=True)
    assert isinstance(lines, list)
    assert lines[0].startswith(f"rollback: would delete the scheduled retirement of {kept} (kept until ")
    assert f"send every request to {kept} ({first}), then size {rolled_back} 0" in lines[1]
    before = account()

    summary = rollback(new_run(environment))

    assert isinstance(summary, dict) and (summary["image"], summary["group"]) == (first, kept)
    assert vanished(before, account()) == {kind: set() for kind in before}  # a weight change: nothing deleted
    assert group_sizes(rolled_back) == (0, 0, 0) and group_sizes(kept) != (0, 0, 0)
    assert (
        client("autoscaling").describe_scheduled_actions(AutoScalingGroupName=kept)["ScheduledUpdateGroupActions"] == []
    )
    if kind == "application":
        weights = new_run(environment).load_balancer.weights()
        assert {name.split(":targetgroup/")[1].split("/")[0]: w for name, w in weights.items()} == {
            f"tg{environment.names.group_target_group(kept)[2:]}": 100,
            environment.names.group_target_group(rolled_back): 0,
        }
    else:
        [raw] = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[kept])["AutoScalingGroups"]
        assert raw["LoadBalancerNames"] == [environment.load_balancer.name]


def test_destroy_does_what_its_dry_run_says(cloud, tmp_path):
    environment = runner(tmp_path)
    deploy(environment)
    deploy(environment)
    plan_env = planner(tmp_path)
    run_destroy(plan_env, dry_run=True)
    listed = [line.split(". ", 1)[1] for line in plan_env.log.out.getvalue().splitlines() if ". " in line]  # type: ignore[attr-defined]

    done = run_destroy(new_run(environment), yes=True)

    assert done == listed


PAST = {done: verb for done, verb in VERBS.items()}  # "created" → "create", as a dry run says it


def as_planned(line: str) -> str:
    """A line setup printed once done, as its dry run says it: "would create …", ids of new things elided."""
    head, colon, rest = line.partition(": ") if ": " in line.split(" ")[0] + " " else ("", "", line)
    verb, _, tail = rest.partition(" ")
    said = f"{head}{colon}would {PAST[verb]} {tail}"
    said = re.sub(r" \((sg|lt|i)-[0-9a-f]+\)$", "", said)  # "created security group X (sg-…)"
    said = re.sub(r"sg-[0-9a-f]+|\(new [^)]+\)", "SG", said)
    return re.sub(r" at ((?:alb|elb)-[a-z0-9-]+?)-\d+\.\S+$", r" at \1", said)  # the alias names the load balancer


def planned(line: str) -> str:
    return re.sub(r"sg-[0-9a-f]+|\(new [^)]+\)", "SG", line)


@pytest.mark.parametrize("kind", ["application", "classic"])
@pytest.mark.parametrize("state", ["new account", "half set up"])
def test_setup_does_what_its_dry_run_says(cloud, tmp_path, kind, state):
    if state == "half set up":
        run_setup(make_environment(tmp_path / "first", kind=kind))
        ec2 = client("ec2")
        [web] = ec2.describe_security_groups(GroupNames=["webapp-staging-web"])["SecurityGroups"]
        ec2.revoke_security_group_ingress(GroupId=web["GroupId"], IpPermissions=web["IpPermissions"])
    extra = "SSH_CIDR=203.0.113.7/32\n"
    plan = run_setup(make_environment(tmp_path / "plan", kind=kind, dry_run=True, extra=extra), dry_run=True)
    done = run_setup(make_environment(tmp_path / "run", kind=kind, extra=extra))
    assert done, "nothing to compare"
    assert [planned(line) for line in plan] == [as_planned(line) for line in done]


# --- creations too: every resource `inv deploy` creates or deletes, announced by its dry run ------------------

STAMPED = re.compile(r"\d{14}")
CREATED = re.compile(r"^launch-asg: would create launch template (\S+) \(.*\) and group (\S+):")
REMOVED = re.compile(r"^launch-asg: would delete (group|launch template|target group) (\S+)")
# Whatever else a stage may create (the first bake: the bake security group NAME-bake), as any stage says it.
OTHER = re.compile(r"^[a-z, -]+: would create (security group|key pair|target group) (\S+)")
OTHER_KIND = {"security group": "security_groups", "key pair": "key_pairs", "target group": "target_groups"}
WHAT = (
    r"(delete group|delete launch template|delete launch configuration|deregister image|delete security group"
    r"|delete key pair|delete target group) (\S+)"
)
RETIRED = re.compile(rf"^cleanup: would {WHAT}")
SPARED = re.compile(rf"^cleanup: if the app is unchanged since \S+ was baked, would not {WHAT}")
EXTRA = re.compile(rf"^cleanup: if the app is unchanged since \S+ was baked, would {WHAT}.* too$")
REMOVED_KIND = {"group": "groups", "launch template": "launch_templates", "target group": "target_groups"}
RETIRED_KIND = {
    "delete group": "groups",
    "delete launch template": "launch_templates",
    "delete launch configuration": "launch_configurations",
    "deregister image": "images",
    "delete security group": "security_groups",
    "delete key pair": "key_pairs",
    "delete target group": "target_groups",
}


def unstamped(names: set[str]) -> set[str]:
    """Names with their stamp elided: the run launches a second or so after its dry run planned."""
    return {STAMPED.sub("STAMP", name) for name in names}


def role_of(image_id: str) -> str:
    [image] = client("ec2").describe_images(ImageIds=[image_id])["Images"]
    return {t["Key"]: t["Value"] for t in image.get("Tags", [])}.get("Role", "")


def announced_changes(
    lines: list[str], unchanged_app: bool = False
) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, int]]:
    """What the plan's lines say the run creates (by kind, images by role as a count) and deletes (by kind).
    UNCHANGED_APP: as they say it happens if the app is unchanged since an image was baked from it."""
    created: dict[str, set[str]] = {kind: set() for kind in KIND.values()}
    deleted: dict[str, set[str]] = {kind: set() for kind in KIND.values()}
    spared: dict[str, set[str]] = {kind: set() for kind in KIND.values()}
    bakes = {"primal": 0, "carnivore": 0}
    for line in lines:
        if line.startswith("bake-primal: would bake"):
            bakes["primal"] += 1
        elif line.startswith("bake-carnivore: would bake"):
            bakes["carnivore"] += 0 if "skipped if the app is unchanged" in line and unchanged_app else 1
        elif found := CREATED.match(line):
            created["launch_templates"].add(found.group(1))
            created["groups"].add(found.group(2))
        elif found := OTHER.match(line):
            created[OTHER_KIND[found.group(1)]].add(found.group(2))
        elif found := REMOVED.match(line):
            deleted[REMOVED_KIND[found.group(1)]].add(found.group(2))
        elif found := RETIRED.match(line):
            deleted[RETIRED_KIND[found.group(1)]].add(found.group(2))
        elif (found := SPARED.match(line)) and unchanged_app:
            spared[RETIRED_KIND[found.group(1)]].add(found.group(2))
        elif (found := EXTRA.match(line)) and unchanged_app:
            deleted[RETIRED_KIND[found.group(1)]].add(found.group(2))
    return created, {kind: deleted[kind] - spared[kind] for kind in deleted}, bakes


@pytest.fixture
def packer(monkeypatch: pytest.MonkeyPatch) -> FakePacker:
    fake = FakePacker()
    monkeypatch.setattr(baking, "run_packer", fake)
    return fake


def deploying(tmp_path: Path, kind: str, dry_run: bool = False, name: str = "run") -> Environment:
    """An environment that builds, stages and bakes from the source image SOURCE (Packer faked: it makes a real
    image in moto)."""
    app = tmp_path / "app"
    if not app.is_dir():
        app.mkdir()
        (app / "server.py").write_text("print('hello')\n", encoding="utf-8")
        (tmp_path / "source").write_text(bake_image("base", role="source", managed=False), encoding="utf-8")
    extra = (
        f"APP_DIR={app}\nBUILD_COMMAND=mkdir -p dist && cp server.py dist/\nAPP_FILES=dist/*\n"
        f"SOURCE_AMI={(tmp_path / 'source').read_text(encoding='utf-8')}\nBAKE_SSH_CIDR=203.0.113.7/32\n"
        "RETAIN_IMAGES=0\nPRIMAL_RETAIN=0\n"
    )
    environment = make_environment(tmp_path / name, kind=kind, dry_run=dry_run, extra=extra)
    clock = FakeClock()
    environment.clock, environment.sleep = clock, clock.sleep
    return environment


@pytest.mark.parametrize("kind", ["application", "classic"])
@pytest.mark.parametrize("given", [False, True], ids=["baked", "image-id"])
@pytest.mark.parametrize(
    "state", ["set up only", "deployed", "deployed, app changed", "pending leftover", "killed bake's leftovers"]
)
def test_a_deploy_creates_and_deletes_exactly_what_its_dry_run_says(cloud, tmp_path, packer, kind, given, state):
    set_up(deploying(tmp_path, kind, name="setup"))
    if state != "set up only":
        run(deploying(tmp_path, kind, name="earlier"), Request())  # baked: a primal and a deployment image
    if state == "pending leftover":
        launch_group(deploying(tmp_path, kind, name="killed"), image_id=bake_image("staging"))  # never promoted
    if state == "killed bake's leftovers":
        packer_leftover("staging")  # Packer's instance, key pair and security group: cleanup deletes the last two
    image = bake_image("staging") if given else None
    lines = plan(deploying(tmp_path, kind, dry_run=True, name="plan"), Request(image_id=image))
    if state == "deployed, app changed":  # after the plan: a dry run builds nothing, so its plan says both cases
        (tmp_path / "app" / "server.py").write_text("print('hello again')\n", encoding="utf-8")
    created, deleted, bakes = announced_changes(lines, unchanged_app=state != "deployed, app changed")
    builds = len(packer.builds)
    before = account()

    run(deploying(tmp_path, kind), Request(image_id=image))

    after = account()
    made = {kind: after[kind] - before[kind] for kind in before}
    gone = vanished(before, after)
    new_images = made.pop("images")
    assert {role: sum(role_of(i) == role for i in new_images) for role in bakes} == bakes, lines
    assert len(packer.builds) - builds == sum(bakes.values())
    assert {kind: unstamped(names) for kind, names in made.items()} == {
        kind: unstamped(names) for kind, names in created.items() if kind != "images"
    }, lines
    assert gone == deleted, lines
    assert len(created["groups"]) == 1  # every run launches one group: the new one
    first_bake = not given and state == "set up only"  # no earlier run made the bake security group
    assert made["security_groups"] == ({"webapp-staging-bake"} if first_bake else set())
    if state == "killed bake's leftovers":  # swept by a deploy that bakes; one of a given image spends no request
        swept = ({"packer_staging6568d0a2"}, {"packer_staging6568d0a1"}) if not given else (set(), set())
        assert (gone["security_groups"], gone["key_pairs"]) == swept
    if given:
        assert lines[0] == f"build-app, copy-over, bake-primal, bake-carnivore: skip, image {image} is given"
        assert bakes == {"primal": 0, "carnivore": 0}
    reuse = next((line for line in lines if "skipped if the app is unchanged since" in line), None)
    assert (reuse is not None) == (state != "set up only" and not given)  # an earlier run baked from this app
    if (
        reuse is not None and state == "deployed"
    ):  # the same app: the image an earlier run baked from it is launched, as announced
        [new_group] = made["groups"]
        [raw] = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[new_group])[
            "AutoScalingGroups"
        ]
        assert image_of(raw) == reuse.split("since ")[1].split()[0]
