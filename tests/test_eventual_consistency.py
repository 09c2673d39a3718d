"""Eventual consistency: a call right after the tool created a resource is retried, bounded, while AWS says
NotFound; idempotency tokens where the API has them. The NotFound is injected with a botocore event hook
(moto is consistent at once), the retries wait on a fake clock."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import REGION
from operator_env import FakeClock, bake_image, create_zone, make_environment, set_up

from deploy.aws.clients import FRESH_RETRY_DELAYS_S
from deploy.steps.launch_asg import launch_group
from deploy.steps.setup import run_setup


class Status:
    status_code = 400


def not_found(client: Any, operation: str, code: str, message: str, times: int) -> list[str]:
    """Make OPERATION of CLIENT answer CODE the first TIMES calls (before anything is sent); return the calls."""
    calls: list[str] = []

    def answer(**_: Any) -> tuple[Status, dict[str, Any]] | None:
        calls.append(operation)
        if len(calls) <= times:
            return Status(), {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {}}
        return None

    client.meta.events.register(f"before-call.{client.meta.service_model.service_name}.{operation}", answer)
    return calls


def on_fake_clock(environment):
    clock = FakeClock()
    environment.clock, environment.sleep = clock, clock.sleep
    return environment, clock


def test_ingress_on_a_just_created_security_group_is_retried_while_not_found(cloud, tmp_path):
    create_zone()
    environment, clock = on_fake_clock(make_environment(tmp_path))
    calls = not_found(
        environment.aws.ec2, "AuthorizeSecurityGroupIngress", "InvalidGroup.NotFound", "The group does not exist", 2
    )
    start = clock()
    run_setup(environment)
    assert len(calls) == 2 + 2  # two security groups; the first one's ingress answered NotFound twice
    assert clock() - start == pytest.approx(FRESH_RETRY_DELAYS_S[0] + FRESH_RETRY_DELAYS_S[1])
    groups = boto3.client("ec2", region_name=REGION).describe_security_groups(GroupNames=["webapp-staging-lb"])
    assert groups["SecurityGroups"][0]["IpPermissions"][0]["FromPort"] == 80


def test_the_retries_are_bounded_then_the_not_found_is_the_error(cloud, tmp_path):
    create_zone()
    environment, clock = on_fake_clock(make_environment(tmp_path))
    calls = not_found(environment.aws.ec2, "AuthorizeSecurityGroupIngress", "InvalidGroup.NotFound", "gone", 100)
    with pytest.raises(ClientError, match=r"InvalidGroup\.NotFound"):
        run_setup(environment)
    assert len(calls) == len(FRESH_RETRY_DELAYS_S) + 1
    assert clock() - 100.0 == pytest.approx(sum(FRESH_RETRY_DELAYS_S))


def test_a_group_made_right_after_its_launch_template_is_retried_and_the_template_has_a_client_token(cloud, tmp_path):
    create_zone()
    environment, clock = on_fake_clock(set_up(make_environment(tmp_path)))
    message = "You must use a valid fully-formed launch template. The specified launch template does not exist."
    calls = not_found(environment.aws.autoscaling, "CreateAutoScalingGroup", "ValidationError", message, 1)
    sent: list[dict[str, Any]] = []
    environment.aws.ec2.meta.events.register(
        "provide-client-params.ec2.CreateLaunchTemplate", lambda params, **_: sent.append(dict(params))
    )
    name = launch_group(environment, image_id=bake_image("staging"))
    assert len(calls) == 2 and clock() - 100.0 == pytest.approx(FRESH_RETRY_DELAYS_S[0])
    assert boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    assert sent[0]["ClientToken"] == sent[0]["LaunchTemplateName"]


def test_another_validation_error_is_not_retried(cloud, tmp_path):
    create_zone()
    environment, clock = on_fake_clock(set_up(make_environment(tmp_path)))
    calls = not_found(environment.aws.autoscaling, "CreateAutoScalingGroup", "ValidationError", "Max < Min", 1)
    with pytest.raises(ClientError, match="Max < Min"):
        launch_group(environment, image_id=bake_image("staging"))
    assert len(calls) == 1 and clock() == 100.0
