"""The traffic stage in-process (mock_aws, the embedded cloud's fixes of moto), on a fake clock: nothing sleeps.

The load balancer's figures are what CloudWatch holds: the tests publish them (AWS/ApplicationELB, per target
group), as AWS would from the requests it forwarded; alarms are moto's, set by SetAlarmState.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import test_deploy_steps as steps_module
from conftest import make_alarm
from test_deploy_steps import FakeTime, client, deployment_image, group, make_environment, output, set_up

from deploy.aws.history import read_history
from deploy.aws.metrics import dimension
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.invocation import invocation
from deploy.pipeline import run_stage
from deploy.plans.stages import Made, Request
from deploy.plans.traffic import current_weights
from deploy.steps.launch_asg import launch_group
from deploy.steps.shift_traffic import decide_shift, promote, shift_traffic

POLL = steps_module.POLL  # 5 s
STEPS = {"TRAFFIC_STEPS": "10,50,100", "STEP_SECONDS": "60", "MIN_REQUESTS": "10", "MAX_LATENCY_MS": "100"}


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(steps_module, "FAKE_TIME", fake)
    monkeypatch.setattr(time, "sleep", steps_module._no_real_sleep)
    return fake


@pytest.fixture
def cloud(cloud: None) -> None:
    client("route53").create_hosted_zone(Name="example.com", CallerReference="zone")


def serving_and_new(tmp_path: Path, **settings: str) -> tuple[Environment, str, str]:
    """A promoted group serving all requests, and a new one launched next to it (at weight 0): the environment of
    the run that launched it (TRAFFIC_STEPS=10,50,100 and SETTINGS)."""
    certificate = {key: value for key, value in settings.items() if key == "CERTIFICATE_ARN"}
    before = set_up(tmp_path / "before", LOAD_BALANCER="application", **certificate)
    first = deployment_image("webapp-dev-carnivore-1")
    serving = launch_group(before, image_id=first)
    before.load_balancer.serve(serving)
    before.load_balancer.release(serving, [])  # setup's shared tg-NAME goes, as a deploy's end does
    promote(before, serving, first)
    environment = make_environment(tmp_path / "run", LOAD_BALANCER="application", **{**STEPS, **settings})
    for name in filter(None, settings.get("ALARM_NAMES", "").split(",")):
        make_alarm(client("cloudwatch"), name)
    new = launch_group(environment, image_id=deployment_image("webapp-dev-carnivore-2"))
    return environment, serving, new


def arns() -> tuple[str, dict[str, str]]:
    """The load balancer's ARN and {target group name: ARN}."""
    elbv2 = client("elbv2")
    [balancer] = elbv2.describe_load_balancers(Names=["alb-webapp-dev"])["LoadBalancers"]
    groups = {g["TargetGroupName"]: g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]}
    return balancer["LoadBalancerArn"], groups


def publish(
    environment: Environment, group_name: str, requests: int, errors: int, p99_s: float, minutes: range = range(-2, 30)
) -> None:
    """A minute's figures of GROUP's target group, every minute of the next half hour (as AWS would publish them;
    MINUTES: only those, counted from this one)."""
    balancer, groups = arns()
    target_group = groups[environment.names.group_target_group(group_name)]
    dims = [
        {"Name": "LoadBalancer", "Value": dimension(balancer)},
        {"Name": "TargetGroup", "Value": dimension(target_group)},
    ]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    for minute in minutes:
        at = now + timedelta(minutes=minute)
        data: list[dict[str, Any]] = [
            {"MetricName": "RequestCount", "Dimensions": dims, "Value": requests, "Timestamp": at},
            {"MetricName": "TargetResponseTime", "Dimensions": dims, "Value": p99_s, "Timestamp": at},
        ]
        if errors:
            data.append(
                {"MetricName": "HTTPCode_Target_5XX_Count", "Dimensions": dims, "Value": errors, "Timestamp": at}
            )
        client("cloudwatch").put_metric_data(Namespace="AWS/ApplicationELB", MetricData=data)


def weights(environment: Environment) -> dict[str, int]:
    """{group's stamp: weight} the listener forwards with, read from AWS."""
    _, groups = arns()
    by_arn = {arn: name for name, arn in groups.items()}
    [balancer] = client("elbv2").describe_load_balancers(Names=["alb-webapp-dev"])["LoadBalancers"]
    found = client("elbv2").describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    [listener] = [item for item in found if item["DefaultActions"][0]["Type"] == "forward"]  # HTTPS, if set
    prefix = environment.names.group_target_group_prefix
    return {
        by_arn.get(arn, arn).replace(prefix, ""): weight
        for arn, weight in current_weights(listener["DefaultActions"]).items()
    }


def modifications(environment: Environment, fake: FakeTime) -> list[tuple[float, list[int]]]:
    """(fake time, weights) of every ModifyListener this run sends, as sent."""
    sent: list[tuple[float, list[int]]] = []

    def seen(params: dict[str, Any], **_: Any) -> None:
        groups = params["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]
        sent.append((fake.now, [int(g["Weight"]) for g in groups]))

    environment.aws.client("elbv2").meta.events.register(
        "provide-client-params.elastic-load-balancing-v2.ModifyListener", seen
    )
    return sent


def stamp(group_name: str) -> str:
    return group_name.rsplit("-", 1)[1]


def test_the_dry_run_says_the_steps_thresholds_alarms_and_target_groups(cloud, tmp_path, fake_time):
    environment, serving, new = serving_and_new(tmp_path, ALARM_NAMES="canary")
    lines = decide_shift(environment, Request(), Made(planned=True, group=new, image="ami-1")).lines()
    names = environment.names
    assert lines[:2] == [
        f"shift-traffic: would forward to {serving} through target group {names.group_target_group(serving)}",
        f"shift-traffic: would forward to {new} through target group {names.group_target_group(new)}",
    ]
    assert f"send 10 %, 50 %, 100 % of the requests to {new}, the rest to {serving}, each step observed 60s" in lines[2]
    assert "held until CloudWatch has published its last minute (about 1-2 min more on AWS)" in lines[2]
    assert "MAX_ERROR_RATE 1 %" in lines[3] and "MAX_LATENCY_MS 100 ms" in lines[3]
    assert f"canary in ALARM (read every {POLL}s)" in lines[3] and "MIN_REQUESTS 10" in lines[3]
    assert lines[4].endswith(f"send all requests back to {serving} at once and remove {new}")


def test_a_good_release_is_promoted_after_its_steps_with_their_figures(cloud, tmp_path, fake_time):
    environment, serving, new = serving_and_new(tmp_path)
    publish(environment, serving, 900, 0, 0.005)
    publish(environment, new, 100, 0, 0.004)
    sent = modifications(environment, fake_time)
    before = dict(environment.aws.requests)

    assert shift_traffic(environment) == new

    said = output(environment)
    for number, weight in ((1, 10), (2, 50), (3, 100)):
        assert f"step {number}/3: {weight} % to {new}: " in said and said.count(f"step {number}/3: ") == 1
        assert f"  {weight} % of requests to {new} for 60s (step {number}/3)\n" in said  # announced, then judged
    assert [w for _, w in sent] == [[90, 10], [50, 50], [0, 100]]  # one ModifyListener per step, nothing else
    assert weights(environment) == {stamp(serving): 0, stamp(new): 100}
    asked = {k: environment.aws.requests[k] - before.get(k, 0) for k in environment.aws.requests}
    assert asked.get("cloudwatch.GetMetricData") == 3 and not asked.get("cloudwatch.DescribeAlarms")
    [latest, *_] = read_history(environment)
    assert (latest["outcome"], latest["group"]) == ("promoted", new)
    assert [(s["weight"], s["outcome"]) for s in latest["steps"]] == [(10, "ok"), (50, "ok"), (100, "ok")]
    assert all(s["requests"] >= 100 and s["error_rate"] == 0 and s["p99_ms"] == 4 for s in latest["steps"])
    # Each step: STEP_SECONDS, then until its last minute is over and a minute more (published): on the fake clock.
    assert 3 * 120 <= fake_time.now <= 3 * 180


def test_a_failing_step_sends_everything_back_at_once_and_removes_the_new_group(cloud, tmp_path, fake_time):
    environment, serving, new = serving_and_new(tmp_path)
    publish(environment, serving, 900, 0, 0.005)
    publish(environment, new, 100, 50, 0.004)
    sent = modifications(environment, fake_time)

    with pytest.raises(DeployError) as caught:
        shift_traffic(environment)

    message = str(caught.value)
    assert f"step 1/3: 10 % to {new}: " in message and "failed (5xx 50.0 % above MAX_ERROR_RATE 1 %)" in message
    assert f"All requests went back to {serving}" in message and f"{new} was removed" in message
    # Step 1, then everything back in one request (per listener), then the new target group out of the listener.
    assert [w for _, w in sent] == [[90, 10], [100, 0], [100]]
    assert weights(environment) == {stamp(serving): 100}
    assert group(new) is None or group(new)["Status"].startswith("Delete")
    [latest, *_] = read_history(environment)
    assert (latest["outcome"], latest["group"]) == ("aborted", new)
    assert latest["detail"] == "step 1/3 failed: 5xx 50.0 % above MAX_ERROR_RATE 1 %"
    [step] = latest["steps"]
    assert (step["weight"], step["error_rate"], step["outcome"]) == (10, 50.0, "failed")


def test_a_slow_release_is_aborted_on_its_p99(cloud, tmp_path, fake_time):
    environment, serving, new = serving_and_new(tmp_path)
    publish(environment, new, 100, 0, 0.250)

    with pytest.raises(DeployError, match=r"failed \(p99 250 ms above MAX_LATENCY_MS 100\)"):
        shift_traffic(environment)

    assert weights(environment) == {stamp(serving): 100}


def test_an_alarm_during_step_2_takes_the_requests_back_within_one_poll_interval(cloud, tmp_path, fake_time):
    environment, _, new = serving_and_new(tmp_path, ALARM_NAMES="canary")
    cloudwatch = client("cloudwatch")
    publish(environment, new, 100, 0, 0.004)
    sent = modifications(environment, fake_time)
    raised: list[float] = []
    sleep = fake_time.sleep

    def sleep_and_alarm(seconds: float) -> None:
        sleep(seconds)
        step_2 = next((at for at, w in sent if w == [50, 50]), None)
        if step_2 is not None and not raised and fake_time.now >= step_2 + 12:
            cloudwatch.set_alarm_state(AlarmName="canary", StateValue="ALARM", StateReason="test")
            raised.append(fake_time.now)

    environment.sleep = sleep_and_alarm

    with pytest.raises(DeployError, match="failed \\(alarm canary in ALARM; figures of the part observed"):
        shift_traffic(environment)

    back = next(at for at, w in sent if w == [100, 0])
    assert raised and 0 <= back - raised[0] <= POLL
    assert [w for _, w in sent][:3] == [[90, 10], [50, 50], [100, 0]]
    [latest, *_] = read_history(environment)
    assert latest["outcome"] == "aborted" and [s["outcome"] for s in latest["steps"]] == ["ok", "failed"]
    assert latest["steps"][1]["partial"].startswith("figures of the part observed")  # not the whole step's
    assert "alarm canary in ALARM" in latest["detail"] and "partial" not in latest["steps"][0]


def test_traffic_steps_of_100_serve_and_promote_at_once(cloud, tmp_path, fake_time):
    environment, _, new = serving_and_new(tmp_path, TRAFFIC_STEPS="100")
    sent = modifications(environment, fake_time)
    before = dict(environment.aws.requests)

    assert shift_traffic(environment) == new

    assert [w for _, w in sent] == [[0, 100]] and fake_time.now == 0  # no observation
    asked = {k: n - before.get(k, 0) for k, n in environment.aws.requests.items() if n - before.get(k, 0)}
    # No request more than before the traffic stage existed: the ModifyListener sending every request to the new
    # group (the deploy's end sent it then) and the promotion (its tags, the history) that wait-health's end sent;
    # the image was read by the launch; the serving group's target group is named by the listeners (no read).
    assert asked == {
        "elastic-load-balancing-v2.ModifyListener": 1,
        "auto-scaling.CreateOrUpdateTags": 1,
        "ec2.CreateTags": 1,
        "ssm.PutParameter": 1,
    }


def test_an_alarm_that_does_not_exist_is_refused_before_anything_is_launched(cloud, tmp_path, fake_time):
    set_up(tmp_path / "before", LOAD_BALANCER="application")
    environment = make_environment(tmp_path / "run", LOAD_BALANCER="application", ALARM_NAMES="nope", **STEPS)

    with pytest.raises(
        DeployError, match=r"ALARM_NAMES \(env/dev.env.*\) names alarms that us-east-1 does not have: nope"
    ):
        launch_group(environment, image_id=deployment_image("webapp-dev-carnivore-1"))

    assert client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []


def test_a_killed_runs_leftover_gives_its_weight_back_before_its_target_group_goes(cloud, tmp_path, fake_time):
    """Killed during step 2 (weights 50/50, the new group never promoted): the next launch sends every request back
    to the serving group in one request before it detaches, drains and deletes the leftover and its target group."""
    environment, serving, leftover = serving_and_new(tmp_path)
    environment.load_balancer.set_weights(  # type: ignore[attr-defined]
        {
            environment.load_balancer.group_arn(serving): 50,  # type: ignore[attr-defined]
            environment.load_balancer.group_arn(leftover): 50,  # type: ignore[attr-defined]
        }
    )
    leftover_arn = environment.load_balancer.group_arn(leftover)  # type: ignore[attr-defined]
    nxt = make_environment(tmp_path / "next", LOAD_BALANCER="application", **STEPS)
    sent = modifications(nxt, fake_time)
    order: list[tuple[str, set[str]]] = []  # (request, the target groups it names), in the order sent
    events = nxt.aws.client("elbv2").meta.events
    events.register(
        "provide-client-params.elastic-load-balancing-v2.ModifyListener",
        lambda params, **_: order.append(
            ("modify", {g["TargetGroupArn"] for g in params["DefaultActions"][0]["ForwardConfig"]["TargetGroups"]})
        ),
    )
    events.register(
        "provide-client-params.elastic-load-balancing-v2.DeleteTargetGroup",
        lambda params, **_: order.append(("delete", {params["TargetGroupArn"]})),
    )

    new = launch_group(nxt, image_id=deployment_image("webapp-dev-carnivore-3"))

    assert next(w for _, w in sent) == [100, 0]  # first of all: every request to the serving group
    out_of_listener = next(i for i, (op, arns) in enumerate(order) if op == "modify" and leftover_arn not in arns)
    assert order.index(("delete", {leftover_arn})) > out_of_listener  # out of the listener, then deleted
    assert group(leftover) is None or group(leftover)["Status"].startswith("Delete")
    assert weights(nxt) == {stamp(serving): 100, stamp(new): 0}
    assert "all requests back to " + serving in output(nxt)


def test_inv_history_shows_each_steps_figures_and_a_long_entry_keeps_its_last_steps():
    from deploy.aws.history import MAX_VALUE, _value, entry
    from deploy.plans.traffic import Figures, Thresholds, judge_step
    from deploy.views.history import render_history

    limits = Thresholds(max_error_rate=1.0, max_latency_ms=None, min_requests=50)
    good = judge_step(1, 2, 10, "asg-x", Figures(62, 0, 0.004), {}, limits).record()
    bad = judge_step(2, 2, 100, "asg-x", Figures(600, 300, 0.004), {}, limits).record()
    item = entry("deploy", "aborted", "ami-1", "asg-x", 12.0, False, "step 2/2 failed", [good, bad])

    table = render_history([item])

    assert "aborted: step 2/2 failed [10 % 62 requests 0.0 % 5xx p99 4 ms ok;" in table
    assert "100 % 600 requests 50.0 % 5xx p99 4 ms failed]" in table
    many = entry("deploy", "promoted", "ami-1", "asg-x", 1.0, False, "", [good] * 60 + [bad])
    kept = json.loads(_value(many))["steps"]
    assert len(_value(many)) <= MAX_VALUE and kept[-1]["outcome"] == "failed" and len(kept) < 61


def test_ctrl_c_during_a_step_sends_everything_back_and_removes_the_new_group(cloud, tmp_path, fake_time):
    environment, serving, new = serving_and_new(tmp_path)
    publish(environment, new, 100, 0, 0.004)
    sleep = fake_time.sleep

    def interrupted(seconds: float) -> None:
        sleep(seconds)
        if fake_time.now > 30:  # in step 1's observation
            raise KeyboardInterrupt

    environment.sleep = interrupted
    sent = modifications(environment, fake_time)

    with invocation("shift-traffic"), pytest.raises(KeyboardInterrupt):
        run_stage(environment, "shift-traffic", Request(), Made())  # as the task runs it: with the run's report

    assert [w for _, w in sent][:2] == [[90, 10], [100, 0]]
    assert weights(environment) == {stamp(serving): 100}
    assert group(new) is None or group(new)["Status"].startswith("Delete")
    [latest, *_] = read_history(environment)
    assert (latest["outcome"], latest["detail"]) == ("aborted", "interrupted during the traffic steps")
    report = (environment.log.dir / "report.html").read_text()
    assert 'id="outcome">aborted' in report  # as the history says, not "failed"


def test_an_error_during_the_steps_sends_everything_back_and_says_so(cloud, tmp_path, fake_time, monkeypatch):
    import deploy.steps.shift_traffic as stage

    environment, serving, new = serving_and_new(tmp_path)

    def refused(*_: Any, **__: Any) -> Any:
        raise DeployError("AWS refused GetMetricData: AccessDenied")

    monkeypatch.setattr(stage, "read_figures", refused)

    with pytest.raises(DeployError, match="AWS refused GetMetricData"):
        shift_traffic(environment)

    assert weights(environment) == {stamp(serving): 100}
    assert group(new) is None or group(new)["Status"].startswith("Delete")
    [latest, *_] = read_history(environment)
    assert latest["detail"] == "during the traffic steps: AWS refused GetMetricData: AccessDenied"


def test_a_rollback_takes_every_request_at_once_with_an_alarm_in_alarm(cloud, tmp_path, fake_time):
    """A rollback puts back what served before, while the bad release's alarm is likely in ALARM: no steps (the dry
    run says so), no alarms read, no refusal of ALARM_NAMES; every request moves in one request per listener."""
    from deploy.pipeline import LAUNCH_ASG, plan, run
    from deploy.plans.stages import ROLLBACK

    environment, serving, bad = serving_and_new(tmp_path, ALARM_NAMES="canary")
    first = group(serving)["Tags"]
    image = next(tag["Value"] for tag in first if tag["Key"] == "Image")
    environment.load_balancer.serve(bad)  # the bad release serves (promoted by an earlier run)
    promote(environment, bad, deployment_image("webapp-dev-carnivore-2"))
    client("cloudwatch").set_alarm_state(AlarmName="canary", StateValue="ALARM", StateReason="the bad release")
    rollback = Request(image_id=image, by_hand=False, action=ROLLBACK)
    planned = plan(
        make_environment(tmp_path / "plan", LOAD_BALANCER="application", ALARM_NAMES="canary", **STEPS),
        rollback,
        start=LAUNCH_ASG.name,
    )
    assert any("at once (a rollback takes no steps), then promote it" in line for line in planned)
    assert not any("% of the requests to" in line for line in planned)
    run_env = make_environment(tmp_path / "rollback", LOAD_BALANCER="application", ALARM_NAMES="canary", **STEPS)
    sent = modifications(run_env, fake_time)
    before = dict(run_env.aws.requests)

    made = run(run_env, rollback, start=LAUNCH_ASG.name)

    assert made.promoted and made.promoted not in (serving, bad) and not made.steps
    assert [w for _, w in sent][:2] == [[0, 100, 0], [0, 0, 100]]  # joins at 0, then takes all at once
    assert not run_env.aws.requests.get("cloudwatch.DescribeAlarms", 0) - before.get("cloudwatch.DescribeAlarms", 0)
    [latest, *_] = read_history(run_env)
    assert (latest["action"], latest["outcome"], latest["group"]) == ("rollback", "promoted", made.promoted)


def test_a_rollback_is_not_refused_for_an_alarm_the_account_lacks(cloud, tmp_path, fake_time):
    from deploy.plans.stages import ROLLBACK
    from deploy.steps.launch_asg import refuse_before_launch

    set_up(tmp_path / "before", LOAD_BALANCER="application")
    environment = make_environment(tmp_path / "run", LOAD_BALANCER="application", ALARM_NAMES="nope", **STEPS)

    refuse_before_launch(environment, ROLLBACK)  # no step reads the alarms
    with pytest.raises(DeployError, match="does not have: nope"):
        refuse_before_launch(environment)


def test_a_reused_leftover_gives_its_weight_back_before_its_health_wait(cloud, tmp_path, fake_time):
    """Killed at 50/50 and run again with the same image: the leftover is reused, and its requests go back to the
    serving group at launch-asg (not after wait-health: nobody has judged it since)."""
    environment, serving, leftover = serving_and_new(tmp_path)
    balancer = environment.load_balancer
    balancer.set_weights({balancer.group_arn(serving): 50, balancer.group_arn(leftover): 50})  # type: ignore[attr-defined]
    image = next(tag["Value"] for tag in group(leftover)["Tags"] if tag["Key"] == "Image")
    again = make_environment(tmp_path / "again", LOAD_BALANCER="application", **STEPS)
    sent = modifications(again, fake_time)

    assert launch_group(again, image_id=image) == leftover

    assert [w for _, w in sent] == [[100, 0]]
    assert weights(again) == {stamp(serving): 100, stamp(leftover): 0}
    assert "all requests back to " + serving in output(again)
    once_more = make_environment(tmp_path / "once-more", LOAD_BALANCER="application", **STEPS)
    sent = modifications(once_more, fake_time)
    assert launch_group(once_more, image_id=image) == leftover
    assert sent == []  # weight 0 already: no request


def full_forward_action(environment: Environment, serving: str, retiring: int, first: int = 0) -> list[str]:
    """RETIRING target groups of groups being retired, at weight 0 beside SERVING's in the listeners (as the
    retirement keeps them until their groups are deleted); their names."""
    elbv2 = client("elbv2")
    [balancer] = elbv2.describe_load_balancers(Names=["alb-webapp-dev"])["LoadBalancers"]
    names = [
        environment.names.group_target_group(f"asg-webapp-dev-202601010000{n:02}")
        for n in range(first, first + retiring)
    ]
    arns = [
        elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=balancer["VpcId"])["TargetGroups"][0][
            "TargetGroupArn"
        ]
        for name in names
    ]
    lb = environment.load_balancer
    lb.set_weights({**lb.weights(), lb.group_arn(serving): 100, **dict.fromkeys(arns, 0)})  # type: ignore[attr-defined]
    return names


def test_a_sixth_target_group_is_refused_before_anything_is_launched(cloud, tmp_path, fake_time):
    """AWS forwards to at most 5 target groups in one action: with 5 there (the serving group's, 4 retiring), the
    deploy and its dry run are refused before anything is baked or launched, naming what to do."""
    from deploy.pipeline import plan

    before = set_up(tmp_path / "before", LOAD_BALANCER="application")
    first = deployment_image("webapp-dev-carnivore-1")
    serving = launch_group(before, image_id=first)
    before.load_balancer.serve(serving)
    before.load_balancer.release(serving, [])
    promote(before, serving, first)
    full_forward_action(before, serving, 4)
    environment = make_environment(tmp_path / "run", LOAD_BALANCER="application", **STEPS)
    groups_before = client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]

    refused = r"forward to 5 target groups already .*at most 5 in one forward action.*`inv cleanup --env dev`"
    with pytest.raises(DeployError, match=refused):
        launch_group(environment, image_id=deployment_image("webapp-dev-carnivore-2"))
    with pytest.raises(DeployError, match=refused):
        plan(make_environment(tmp_path / "plan", LOAD_BALANCER="application", **STEPS), Request())

    assert client("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == groups_before


def test_four_target_groups_leave_room_for_the_new_groups(cloud, tmp_path, fake_time):
    environment, serving, new = serving_and_new(tmp_path)  # the serving group's and the new one's
    full_forward_action(environment, serving, 3)  # 5 now: the new group's is one of them: it fits

    from deploy.steps.launch_asg import forward_limit_refusal

    assert stamp(new) in weights(environment) and len(weights(environment)) == 5
    assert forward_limit_refusal(environment) is None  # the leftover's leaves, the next one takes its place


def test_the_embedded_cloud_refuses_a_forward_action_of_six_target_groups(cloud, tmp_path, fake_time):
    from botocore.exceptions import ClientError

    environment, serving, _ = serving_and_new(tmp_path)
    full_forward_action(environment, serving, 3)  # 5: accepted
    with pytest.raises(ClientError) as refused:
        full_forward_action(environment, serving, 1, first=10)  # 6
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "more than 5 target groups" in refused.value.response["Error"]["Message"]
    assert len(weights(environment)) == 5  # unchanged


def test_a_late_minute_is_waited_for_then_the_step_is_judged_on_it(cloud, tmp_path, fake_time):
    """CloudWatch has not published the step's last minute when the step is read: it is read again every poll
    interval (one GetMetricData each) until it is in; the step is judged on the whole step's figures."""
    environment, serving, new = serving_and_new(tmp_path, TRAFFIC_STEPS="10,100")
    publish(environment, serving, 900, 0, 0.005)
    publish(environment, new, 100, 0, 0.004, minutes=range(-2, 1))  # the step's first minute only, for now
    reads: list[float] = []
    environment.aws.client("cloudwatch").meta.events.register(
        "provide-client-params.monitoring.GetMetricData", lambda **_: reads.append(fake_time.now)
    )
    sleep = fake_time.sleep

    def arrives_later(seconds: float) -> None:
        sleep(seconds)
        if len(reads) == 2 and fake_time.now >= reads[0] + 2 * POLL:  # published 2 polls after the first read
            publish(environment, new, 100, 50, 0.004, minutes=range(1, 30))

    environment.sleep = arrives_later

    with pytest.raises(DeployError, match=r"step 1/2: 10 % to .*: 200 requests, 25.0 % 5xx"):
        shift_traffic(environment)  # without the wait: 100 requests, 0 errors: ok

    assert reads[1] - reads[0] == POLL and len(reads) >= 3  # read again every poll interval until it came


def test_a_minute_that_never_arrives_fails_the_step_under_min_requests(cloud, tmp_path, fake_time):
    """Requests were flowing but the step's last minute never reached CloudWatch within 3 minutes: with fewer
    than MIN_REQUESTS requests in what arrived, the step fails (never passed on figures that did not come)."""
    environment, serving, new = serving_and_new(tmp_path, TRAFFIC_STEPS="10,100", MIN_REQUESTS="50")
    publish(environment, serving, 900, 0, 0.005)
    publish(environment, new, 5, 0, 0.004, minutes=range(-2, 1))
    before = dict(environment.aws.requests)

    with pytest.raises(DeployError, match="5 of MIN_REQUESTS 50 and its last minute's figures never arrived"):
        shift_traffic(environment)

    reads = environment.aws.requests["cloudwatch.GetMetricData"] - before.get("cloudwatch.GetMetricData", 0)
    assert reads == 1 + 180 // POLL  # the first read, then one each poll interval for 3 minutes
    assert weights(environment) == {stamp(serving): 100}
    [latest, *_] = read_history(environment)
    assert latest["steps"][0]["partial"] == "figures without its last minute: not in CloudWatch 180s after it"


def test_a_minute_that_never_arrives_is_judged_on_what_did_with_enough_requests(cloud, tmp_path, fake_time):
    environment, serving, new = serving_and_new(tmp_path, TRAFFIC_STEPS="10,100")  # MIN_REQUESTS 10
    publish(environment, serving, 900, 0, 0.005)
    publish(environment, new, 100, 0, 0.004, minutes=range(-2, 1))
    publish(environment, new, 100, 0, 0.004, minutes=range(5, 30))  # step 2's minutes: in

    assert shift_traffic(environment) == new

    said = output(environment)
    assert "step 1/2: 10 % to " in said and ": ok (figures without its last minute: not in CloudWatch 180s" in said


def listener_arns_modified(environment: Environment) -> list[str]:
    """The ListenerArn of every ModifyListener this run sends."""
    sent: list[str] = []
    environment.aws.client("elbv2").meta.events.register(
        "provide-client-params.elastic-load-balancing-v2.ModifyListener",
        lambda params, **_: sent.append(params["ListenerArn"]),
    )
    return sent


def listeners_by_port() -> dict[int, dict[str, Any]]:
    [balancer] = client("elbv2").describe_load_balancers(Names=["alb-webapp-dev"])["LoadBalancers"]
    found = client("elbv2").describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])["Listeners"]
    return {item["Port"]: item for item in found}


@pytest.mark.parametrize("release", ["good", "bad"])
def test_with_a_certificate_the_https_listener_takes_the_steps_and_the_abort(cloud, tmp_path, fake_time, release):
    """CERTIFICATE_ARN: HTTPS 443 forwards (each step's weights, the abort's), HTTP 80 redirects to it, untouched."""
    from test_alb import import_certificate

    environment, serving, new = serving_and_new(tmp_path, CERTIFICATE_ARN=import_certificate())
    publish(environment, serving, 900, 0, 0.005)
    publish(environment, new, 100, 50 if release == "bad" else 0, 0.004)
    sent = modifications(environment, fake_time)
    modified = listener_arns_modified(environment)

    if release == "good":
        assert shift_traffic(environment) == new
        assert [w for _, w in sent] == [[90, 10], [50, 50], [0, 100]]
        assert weights(environment) == {stamp(serving): 0, stamp(new): 100}
    else:
        with pytest.raises(DeployError, match=r"failed \(5xx 50.0 % above MAX_ERROR_RATE"):
            shift_traffic(environment)
        assert [w for _, w in sent] == [[90, 10], [100, 0], [100]]
        assert weights(environment) == {stamp(serving): 100}

    listeners = listeners_by_port()
    assert set(modified) == {listeners[443]["ListenerArn"]}  # only the forwarding listener
    assert listeners[80]["DefaultActions"][0]["Type"] == "redirect"


def test_inv_shift_traffic_alone_promotes_what_its_wait_health_found(cloud, tmp_path, fake_time):
    """`inv shift-traffic` runs wait-health first (found in the account): it promotes that group with its image."""
    _, serving, new = serving_and_new(tmp_path, TRAFFIC_STEPS="100")
    image = next(tag["Value"] for tag in group(new)["Tags"] if tag["Key"] == "Image")
    alone = make_environment(tmp_path / "alone", LOAD_BALANCER="application", TRAFFIC_STEPS="100")

    with invocation("shift-traffic"):
        made = run_stage(alone, "wait-health", Request(), Made())
        made = run_stage(alone, "shift-traffic", Request(), made)

    assert made.promoted == new and made.image == image
    [latest, *_] = read_history(alone)
    assert (latest["outcome"], latest["group"], latest["image"]) == ("promoted", new, image)
    assert weights(alone) == {stamp(serving): 0, stamp(new): 100}
