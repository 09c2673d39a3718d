"""A bad release on the embedded cloud, end to end: FAIL_RATE and DELAY_MS given in the deploying shell reach the
example app (through app.env and the baked image), its health check still passes, its other requests fail or
are slow through the load balancer, and the load balancer's AWS/ApplicationELB metrics in CloudWatch say so, as
deploy/aws/metrics.py reads them (what a traffic step is judged from)."""

from __future__ import annotations

import datetime
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import TEST_ENV, TEST_TIME_SCALE, ServerSite, succeeded, wait_until

from deploy.aws.metrics import read_figures
from deploy.naming import Names

pytestmark = pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")

REQUESTS = 40
MINUTE_S = 60 * float(TEST_TIME_SCALE)  # the embedded cloud's minute at the session's time scale: 0.3 s


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_a_bad_release_fails_real_requests_and_cloudwatch_measures_it(moto_server: str, tmp_path: Path) -> None:
    site = ServerSite.create(moto_server, TEST_ENV, tmp_path, LOAD_BALANCER="application", DESIRED_CAPACITY="1")
    succeeded(site.inv("setup"))

    deployed = succeeded(site.inv("deploy", env={"FAIL_RATE": "1", "DELAY_MS": "30"}))

    assert "healthy" in deployed  # the health check passed: only real requests fail
    url = json.loads(succeeded(site.inv("status", "--json")))["load_balancer"]["url"].rstrip("/")
    start = datetime.datetime.now(datetime.UTC)
    assert {status(url + "/") for _ in range(REQUESTS)} == {500}
    assert status(url + "/api/status/health") == 200

    elbv2 = site.client("elbv2")
    [balancer] = elbv2.describe_load_balancers(Names=[f"alb-webapp-{TEST_ENV}"])["LoadBalancers"]
    # The serving group's own target group (by name: moto lists a load balancer's target groups only from a listener's
    # TargetGroupArn, not from a weighted ForwardConfig, as AWS does).
    own = Names(app="webapp", env=TEST_ENV, domain="").group_target_group(site.serving()["AutoScalingGroupName"])
    [group] = elbv2.describe_target_groups(Names=[own])["TargetGroups"]
    arn = group["TargetGroupArn"]
    found = {}

    def measured() -> bool:
        end = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1)
        cloudwatch = site.client("cloudwatch")
        found.update(read_figures(cloudwatch, balancer["LoadBalancerArn"], [arn], start, end, minute_s=MINUTE_S))
        return found[arn].requests >= REQUESTS + 1

    assert wait_until(measured, 10, 0.2), found  # once the modelled minute is over (0.3 s at this scale)
    figures = found[arn]
    # The load balancer's requests: ours, besides the health checks (which go around it, as on AWS).
    assert (figures.requests, figures.errors) == (REQUESTS + 1, REQUESTS)
    assert figures.p99_seconds is not None and figures.p99_seconds >= 0.03  # DELAY_MS
