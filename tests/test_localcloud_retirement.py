"""A retirement AWS carries out, on the embedded cloud's server with real traffic through its load balancers (both
kinds): a scheduled action scales the old group to 0 at its scaled time; its instance is deregistered, drained
(a request in flight finishes first), then terminated and its process stopped, with no failed request; a deleted
action never runs; a request still in flight when the draining time is over is cut, and the instance goes.

Each test runs a server of its own at LOCAL_TIME_SCALE 0.005 (test_localcloud_runtime.start_cloud). Pure timing
and the fixes in-process: tests/test_localcloud_scaling.py."""

from __future__ import annotations

import datetime
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import server_client, wait_until
from test_localcloud_runtime import alive, start_cloud

SCALE = 0.005
DRAINING_S = 3000  # 15 s here: far longer than a request held and released needs
WAIT_S = 12.0

HOLD_APP = """
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, HELD, RELEASE = {name!r}, {held!r}, {release!r}

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/hold":  # in flight until the test releases it (at most 60 s)
            open(HELD, "w").close()
            for _ in range(6000):
                if os.path.exists(RELEASE):
                    break
                time.sleep(0.01)
        body = NAME.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


class Cloud:
    """Clients of the server at URL, and a load balancer of KIND (classic or application) with groups behind it."""

    def __init__(self, url: str, kind: str, root: Path) -> None:
        self.url, self.kind, self.root = url, kind, root
        self.ec2, self.autoscaling = server_client(url, "ec2"), server_client(url, "autoscaling")
        self.elb, self.elbv2 = server_client(url, "elb"), server_client(url, "elbv2")
        self.subnets = [s["SubnetId"] for s in self.ec2.describe_subnets()["Subnets"] if s["DefaultForAz"]]
        self.base = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        self.attachment: dict[str, list[str]] = {}
        self.endpoint = ""

    def load_balancer(self, draining_s: int) -> None:
        if self.kind == "classic":
            listener = {"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}
            self.elb.create_load_balancer(LoadBalancerName="lb", Listeners=[listener], Subnets=self.subnets[:1])
            check = {"Target": "HTTP:80/", "Interval": 30, "Timeout": 4, "UnhealthyThreshold": 2, "HealthyThreshold": 2}
            self.elb.configure_health_check(LoadBalancerName="lb", HealthCheck=check)
            draining = {"ConnectionDraining": {"Enabled": True, "Timeout": draining_s}}
            self.elb.modify_load_balancer_attributes(LoadBalancerName="lb", LoadBalancerAttributes=draining)
            [tags] = self.elb.describe_tags(LoadBalancerNames=["lb"])["TagDescriptions"]
            self.attachment = {"LoadBalancerNames": ["lb"]}
        else:
            vpc_id = self.ec2.describe_subnets(SubnetIds=self.subnets[:1])["Subnets"][0]["VpcId"]
            balancer = self.elbv2.create_load_balancer(Name="alb", Subnets=self.subnets[:2])["LoadBalancers"][0]
            check = {"HealthCheckPath": "/", "HealthCheckIntervalSeconds": 30, "HealthyThresholdCount": 2}
            self.target_group = self.elbv2.create_target_group(
                Name="tg", Protocol="HTTP", Port=80, VpcId=vpc_id, TargetType="instance", **check
            )["TargetGroups"][0]["TargetGroupArn"]
            delay = [{"Key": "deregistration_delay.timeout_seconds", "Value": str(draining_s)}]
            self.elbv2.modify_target_group_attributes(TargetGroupArn=self.target_group, Attributes=delay)
            forward = [{"Type": "forward", "TargetGroupArn": self.target_group}]
            self.elbv2.create_listener(
                LoadBalancerArn=balancer["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=forward
            )
            [tags] = self.elbv2.describe_tags(ResourceArns=[balancer["LoadBalancerArn"]])["TagDescriptions"]
            self.attachment = {"TargetGroupARNs": [self.target_group]}
        self.endpoint = {t["Key"]: t["Value"] for t in tags["Tags"]}["LocalCloudURL"]

    def group(self, name: str) -> str:
        """Group asg-NAME of one instance running HOLD_APP as NAME, behind the load balancer; its instance id."""
        folder = self.root / name
        folder.mkdir()
        app = HOLD_APP.format(name=name, held=str(self.root / f"{name}.held"), release=str(self.root / "release"))
        (folder / "app.py").write_text(app)
        builder = self.ec2.run_instances(ImageId=self.base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        image = self.ec2.create_image(InstanceId=builder, Name=f"image-{name}")["ImageId"]
        self.ec2.terminate_instances(InstanceIds=[builder])
        tags = {"LocalAppDir": str(folder), "LocalAppStart": "python3 app.py", "LocalAppPort": "80"}
        self.ec2.create_tags(Resources=[image], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        template = {"ImageId": image, "InstanceType": "t3.micro"}
        self.ec2.create_launch_template(LaunchTemplateName=f"lt-{name}", LaunchTemplateData=template)
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=f"asg-{name}",
            LaunchTemplate={"LaunchTemplateName": f"lt-{name}"},
            MinSize=0,
            MaxSize=1,
            DesiredCapacity=1,
            VPCZoneIdentifier=self.subnets[0],
            **self.attachment,  # type: ignore[arg-type]
        )
        [instance] = self.described(name)["Instances"]
        return str(instance["InstanceId"])

    def described(self, name: str) -> dict[str, Any]:
        [found] = self.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[f"asg-{name}"])[
            "AutoScalingGroups"
        ]
        return dict(found)

    def serving(self) -> list[str]:
        """The instances the load balancer routes to (InService / healthy)."""
        if self.kind == "classic":
            states = self.elb.describe_instance_health(LoadBalancerName="lb")["InstanceStates"]
            return sorted(s["InstanceId"] for s in states if s["State"] == "InService")
        found = self.elbv2.describe_target_health(TargetGroupArn=self.target_group)["TargetHealthDescriptions"]
        return sorted(d["Target"]["Id"] for d in found if d["TargetHealth"]["State"] == "healthy")

    def target_state(self, instance_id: str) -> str | None:
        """INSTANCE_ID at the load balancer: its target health (ALB) or instance state (classic); None: not there."""
        if self.kind == "classic":
            states = self.elb.describe_instance_health(LoadBalancerName="lb")["InstanceStates"]
            return next((s["State"] for s in states if s["InstanceId"] == instance_id), None)
        found = self.elbv2.describe_target_health(TargetGroupArn=self.target_group, Targets=[{"Id": instance_id}])
        state = found["TargetHealthDescriptions"][0]["TargetHealth"]["State"]
        return None if state in ("unused", "unavailable") else str(state)

    def ec2_state(self, instance_id: str) -> str:
        [reservation] = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return str(reservation["Instances"][0]["State"]["Name"])

    def pid(self, instance_id: str) -> int:
        [reservation] = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        tags = {t["Key"]: t["Value"] for t in reservation["Instances"][0].get("Tags", [])}
        return int(tags["LocalCloudApp"].split()[1].rstrip(","))

    def put(self, name: str, action: str, seconds: float) -> None:
        when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
        self.autoscaling.put_scheduled_update_group_action(
            AutoScalingGroupName=f"asg-{name}",
            ScheduledActionName=action,
            StartTime=when,
            MinSize=0,
            MaxSize=0,
            DesiredCapacity=0,
        )

    def actions(self) -> list[str]:
        found = self.autoscaling.describe_scheduled_actions()["ScheduledUpdateGroupActions"]
        return sorted(f"{a['AutoScalingGroupName']}/{a['ScheduledActionName']}" for a in found)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, repr(error)


class Traffic:
    """GET / through the load balancer, one request after another, in a thread, until stopped."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.answers: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        for _ in range(100_000):  # bounded; stopped long before
            if self.stop.is_set():
                return
            self.answers.append(get(self.endpoint + "/"))
            time.sleep(0.005)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)

    def failed(self) -> list[tuple[int, str]]:
        return [answer for answer in self.answers if answer[0] != 200]


def held_request(cloud: Cloud, answers: dict[str, tuple[int, str]]) -> threading.Thread:
    thread = threading.Thread(target=lambda: answers.update(held=get(cloud.endpoint + "/hold")), daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("kind", ["application", "classic"])
def test_a_scheduled_action_retires_the_old_group_with_no_failed_request(tmp_path: Path, kind: str) -> None:
    process, url = start_cloud(tmp_path)
    try:
        cloud = Cloud(url, kind, tmp_path)
        cloud.load_balancer(DRAINING_S)
        old = cloud.group("old")
        assert wait_until(lambda: cloud.serving() == [old], WAIT_S, 0.05)
        old_pid = cloud.pid(old)
        answers: dict[str, tuple[int, str]] = {}
        held = held_request(cloud, answers)  # the only target yet: it lands on the old instance
        assert wait_until((tmp_path / "old.held").exists, WAIT_S, 0.02)
        new = cloud.group("new")
        assert wait_until(lambda: cloud.serving() == sorted([old, new]), WAIT_S, 0.05)

        with Traffic(cloud.endpoint) as traffic:
            cloud.put("new", "never", 60)  # 0.3 s here, deleted at once: never runs
            cloud.autoscaling.delete_scheduled_action(AutoScalingGroupName="asg-new", ScheduledActionName="never")
            before_put = time.monotonic()
            cloud.put("old", "retire", 600)  # 3 s here
            listed = cloud.actions()
            if time.monotonic() - before_put < 600 * SCALE:  # answered before its time: not run yet
                assert listed == ["asg-old/retire"]
            assert wait_until(lambda: cloud.actions() == [], WAIT_S + 600 * SCALE, 0.02)
            ran_after = time.monotonic() - before_put
            # Run: desired 0; the instance Terminating, deregistered, draining its request in flight, still running.
            group = cloud.described("old")
            assert (group["DesiredCapacity"], group["MinSize"], group["MaxSize"]) == (0, 0, 0)
            assert [(i["InstanceId"], i["LifecycleState"]) for i in group["Instances"]] == [(old, "Terminating")]
            assert cloud.target_state(old) in ({"application": "draining", "classic": None}[kind],)
            assert cloud.ec2_state(old) == "running" and alive(old_pid) and held.is_alive()
            assert wait_until(lambda: len(traffic.answers) > 20, WAIT_S, 0.02)
            assert cloud.ec2_state(old) == "running"  # still held: not terminated

            (tmp_path / "release").touch()
            held.join(timeout=WAIT_S)
            assert answers["held"] == (200, "old")  # the request in flight finished
            # Its deregistration then completes at once (about 15 s of draining time were left): terminated, stopped.
            assert wait_until(lambda: cloud.described("old")["Instances"] == [], WAIT_S, 0.02)
            assert cloud.ec2_state(old) in ("shutting-down", "terminated")
            assert wait_until(lambda: not alive(old_pid), WAIT_S, 0.05), "the old instance's app kept running"
            served = len(traffic.answers)
            assert wait_until(lambda: len(traffic.answers) > served + 20, WAIT_S, 0.02)

        print(
            f"{kind}: action due 3.0 s after its put, seen run after {ran_after:.2f} s; {len(traffic.answers)} requests"
        )
        assert traffic.failed() == []
        assert Counter(body for _, body in traffic.answers[served:]) == {"new": len(traffic.answers) - served}
        assert cloud.serving() == [new]
        group = cloud.described("new")
        assert group["DesiredCapacity"] == 1 and [i["LifecycleState"] for i in group["Instances"]] == ["InService"]
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_request_still_in_flight_at_the_end_of_the_draining_time_is_cut_and_the_instance_goes(tmp_path: Path) -> None:
    """Draining 200 s (1 s here): the held request is never released; the scale-in (SetDesiredCapacity this time)
    terminates the instance once the draining time is over, not before, and not later than the request."""
    process, url = start_cloud(tmp_path)
    try:
        cloud = Cloud(url, "application", tmp_path)
        cloud.load_balancer(200)
        old = cloud.group("old")
        assert wait_until(lambda: cloud.serving() == [old], WAIT_S, 0.05)
        answers: dict[str, tuple[int, str]] = {}
        held = held_request(cloud, answers)
        assert wait_until((tmp_path / "old.held").exists, WAIT_S, 0.02)

        started = time.monotonic()
        cloud.autoscaling.set_desired_capacity(AutoScalingGroupName="asg-old", DesiredCapacity=0)
        state = cloud.ec2_state(old)
        if time.monotonic() - started < 200 * SCALE:  # answered within the draining time: still there
            assert state == "running"
        assert wait_until(lambda: cloud.described("old")["Instances"] == [], WAIT_S, 0.02)
        held.join(timeout=WAIT_S)
        assert time.monotonic() - started >= 200 * SCALE  # not before the draining time was over
        assert answers["held"][0] == 502  # cut by the load balancer, as AWS cuts it
    finally:
        process.terminate()
        process.wait(timeout=15)
