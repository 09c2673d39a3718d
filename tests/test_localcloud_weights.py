"""The embedded cloud's application load balancer with several target groups: forward weights honoured request by
request, health checks only where a listener rule forwards, and the AWS/ApplicationELB metrics of what it forwarded
(deploy/localcloud/balancers.py, metrics.py); pure parts in-process, the rest on a server of its own."""

from __future__ import annotations

import datetime
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from conftest import server_client, wait_until
from test_localcloud_runtime import app_instance, start_cloud

from deploy.localcloud.balancers import forward_weights, weighted_pick
from deploy.localcloud.metrics import Metrics, Source, dimension

LB_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/alb-web/50dc6c495c0c9188"
TG_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/tg-web-1/73e2d6bc24d8a067"

# --- pure parts ----------------------------------------------------------------------------------------------


def test_weights_of_a_forward_action_as_moto_stores_it() -> None:
    weighted = {"ForwardConfig": {"TargetGroups": [{"TargetGroupArn": "a", "Weight": 90}, {"TargetGroupArn": "b"}]}}
    assert forward_weights(weighted) == [("a", 90), ("b", 1)]
    assert forward_weights({"Type": "forward", "TargetGroupArn": "a"}) == [("a", 1)]
    assert forward_weights({"Type": "redirect"}) == []


def test_smooth_weighted_round_robin_gives_each_group_exactly_its_weight() -> None:
    credit: dict[str, int] = {}
    weights = [("old", 90), ("new", 10), ("waiting", 0)]
    picks = [weighted_pick(credit, weights) for _ in range(100)]
    assert Counter(picks) == {"old": 90, "new": 10}
    # Spread, not in a burst: every run of 10 requests has exactly one for the new group.
    assert all(picks[i : i + 10].count("new") == 1 for i in range(0, 100, 10))
    assert weighted_pick(credit, [("old", 0)]) is None
    assert weighted_pick(credit, [("new", 1)]) == "new" and set(credit) == {"new"}  # stale credit dropped


def test_metric_dimensions_are_the_ends_of_the_arns() -> None:
    assert dimension(LB_ARN) == "app/alb-web/50dc6c495c0c9188"
    assert dimension(TG_ARN) == "targetgroup/tg-web-1/73e2d6bc24d8a067"


def test_a_period_is_published_once_over_per_target_group_and_load_balancer() -> None:
    now = [1000.0]
    sent: list[tuple[str, str, list[dict[str, Any]]]] = []
    metrics = Metrics(3.0, wall=lambda: now[0], publish=lambda a, r, data: sent.append((a, r, data)))
    source = Source("123456789012", "us-east-1", LB_ARN, TG_ARN)
    other = Source("123456789012", "us-east-1", LB_ARN, TG_ARN.replace("tg-web-1", "tg-web-2"))
    for status, seconds in ((200, 0.010), (500, 0.020), (200, 0.010), (None, None)):
        metrics.record(source, status, seconds)
    metrics.record(other, 200, 0.5)
    now[0] = 1001.0
    assert metrics.flush() == 0  # the period [999, 1002) is not over
    now[0] = 1002.0
    assert metrics.flush() == 8  # 3 metrics for tg-web-1 and the load balancer; tg-web-2 had no 5xx: 2
    [(account, region, data)] = sent
    assert (account, region) == ("123456789012", "us-east-1")
    by = {(d["MetricName"], tuple(x["Value"] for x in d["Dimensions"])): d for d in data}
    tg, lb = (
        ("app/alb-web/50dc6c495c0c9188", "targetgroup/tg-web-1/73e2d6bc24d8a067"),
        ("app/alb-web/50dc6c495c0c9188",),
    )
    assert by[("RequestCount", tg)]["Value"] == 4.0  # the cut one (502 of the load balancer) was forwarded too
    assert by[("HTTPCode_Target_5XX_Count", tg)]["Value"] == 1.0
    assert (by[("TargetResponseTime", tg)]["Values"], by[("TargetResponseTime", tg)]["Counts"]) == (
        [0.01, 0.02],
        [2, 1],
    )
    assert by[("RequestCount", lb)]["Value"] == 5.0
    assert ("HTTPCode_Target_5XX_Count", (*tg[:1], "targetgroup/tg-web-2/73e2d6bc24d8a067")) not in by  # 0: none
    assert by[("RequestCount", tg)]["Timestamp"] == datetime.datetime.fromtimestamp(999.0, datetime.UTC)
    assert metrics.flush(everything=True) == 0  # nothing left


# --- on a server of its own ---------------------------------------------------------------------------------

APP = """
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = open("name.txt").read().strip()

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200
        if self.path.startswith("/fail") and NAME == "new":
            status = 500
        if self.path.startswith("/slow") and NAME == "new":
            time.sleep(0.2)
        body = NAME.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler).serve_forever()
"""


def app_folder(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "app.py").write_text(APP)
    (folder / "name.txt").write_text(name)
    return folder


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_weights_health_and_metrics_of_an_application_load_balancer(tmp_path: Path) -> None:
    process, url = start_cloud(tmp_path)  # LOCAL_TIME_SCALE 0.005: a metrics period is 0.3 s
    try:
        ec2, elbv2, cloudwatch = (server_client(url, name) for name in ("ec2", "elbv2", "cloudwatch"))
        subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
        vpc_id = ec2.describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["VpcId"]
        balancer = elbv2.create_load_balancer(Name="alb-w", Subnets=subnets)["LoadBalancers"][0]
        check = {"HealthCheckPath": "/", "HealthCheckIntervalSeconds": 30, "HealthyThresholdCount": 2}
        groups = {
            name: elbv2.create_target_group(
                Name=f"tg-{name}", Protocol="HTTP", Port=80, VpcId=vpc_id, TargetType="instance", **check
            )["TargetGroups"][0]["TargetGroupArn"]
            for name in ("old", "new")
        }
        listener = elbv2.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"],
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": groups["old"]}],
        )["Listeners"][0]["ListenerArn"]
        instances = {}
        for name in ("old", "new"):
            instances[name], _ = app_instance(url, app_folder(tmp_path, name), start="python3 app.py")
            elbv2.register_targets(TargetGroupArn=groups[name], Targets=[{"Id": instances[name]}])

        def state(name: str) -> str:
            [found] = elbv2.describe_target_health(TargetGroupArn=groups[name])["TargetHealthDescriptions"]
            return str(found["TargetHealth"]["State"])

        assert wait_until(lambda: state("old") == "healthy", 15, 0.05)
        assert state("new") == "unused"  # no listener rule forwards to it: not checked

        def forward(old: int, new: int) -> None:
            weights = [
                {"TargetGroupArn": groups["old"], "Weight": old},
                {"TargetGroupArn": groups["new"], "Weight": new},
            ]
            action = {"Type": "forward", "ForwardConfig": {"TargetGroups": weights}}
            elbv2.modify_listener(ListenerArn=listener, DefaultActions=[action])

        forward(100, 0)
        assert wait_until(lambda: state("new") == "healthy", 15, 0.05)  # weight 0: checked
        [tags] = elbv2.describe_tags(ResourceArns=[balancer["LoadBalancerArn"]])["TagDescriptions"]
        endpoint = {t["Key"]: t["Value"] for t in tags["Tags"]}["LocalCloudURL"]
        # A datapoint carries the start of its (scaled) minute, which may be before the first request: the window
        # starts a second earlier (nothing went through the load balancer before).
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=1)
        assert Counter(get(endpoint + "/")[1] for _ in range(20)) == {"old": 20}

        forward(75, 25)
        answers = [get(endpoint + path) for path in ["/fail"] * 20 + ["/slow"] * 20]
        assert Counter(body for _, body in answers) == {"old": 30, "new": 10}  # exactly the weights
        assert Counter(status for status, _ in answers)[500] == 5  # half of the new group's: its /fail

        tg = {name: dimension(arn) for name, arn in groups.items()}
        lb = dimension(balancer["LoadBalancerArn"])

        def query(ident: str, metric: str, stat: str, target_group: str | None) -> dict[str, Any]:
            dims = [{"Name": "LoadBalancer", "Value": lb}]
            if target_group:
                dims.append({"Name": "TargetGroup", "Value": target_group})
            found = {"Namespace": "AWS/ApplicationELB", "MetricName": metric, "Dimensions": dims}
            return {"Id": ident, "MetricStat": {"Metric": found, "Period": 60, "Stat": stat}}

        queries = [
            query("new_requests", "RequestCount", "Sum", tg["new"]),
            query("new_5xx", "HTTPCode_Target_5XX_Count", "Sum", tg["new"]),
            query("new_p99", "TargetResponseTime", "p99", tg["new"]),
            query("old_requests", "RequestCount", "Sum", tg["old"]),
            query("old_5xx", "HTTPCode_Target_5XX_Count", "Sum", tg["old"]),
            query("all_requests", "RequestCount", "Sum", None),
        ]
        found: dict[str, list[float]] = {}

        def published() -> bool:
            end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
            answer = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=start, EndTime=end)
            found.update({r["Id"]: r["Values"] for r in answer["MetricDataResults"]})
            return sum(found["all_requests"]) == 60

        assert wait_until(published, 10, 0.1), found  # once the modelled minute (0.3 s) is over
        assert (sum(found["new_requests"]), sum(found["new_5xx"]), sum(found["old_requests"])) == (10, 5, 50)
        assert found["old_5xx"] == []  # no 5xx: not published, as on AWS
        assert len(found["new_p99"]) == 1 and 0.2 <= found["new_p99"][0] < 5  # the slow path's 0.2 s
    finally:
        process.terminate()
        process.wait(timeout=15)
