"""AWS clients: one boto3 session per run, botocore's retry modes, and a log file per call.

Real AWS goes through boto3's normal credential chain (AWS_PROFILE, SSO, instance roles, ...);
the embedded cloud uses moto's dummy credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from deploy.config import Config
from deploy.errors import DeployError
from deploy.logs import RunLog

# Throttling and transient faults are absorbed by botocore's standard retry mode with backoff,
# not by hand-written loops.
RETRIES = BotoConfig(
    retries={"mode": "standard", "max_attempts": 8},
    connect_timeout=10,
    read_timeout=120,
    user_agent_extra="immutable-deploy",
)
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class Aws:
    """Clients of one environment's account and region, each response recorded in the run log."""

    def __init__(self, config: Config, log: RunLog | None = None) -> None:
        self.config = config
        self.log = log
        credentials = LOCAL_CREDENTIALS if config.local_cloud else {}
        self.session = boto3.Session(region_name=config.region, **credentials)
        self._clients: dict[str, Any] = {}

    def check_credentials(self) -> None:
        if self.session.get_credentials() is None:
            raise DeployError(
                "No AWS credentials found. Configure them as for the AWS CLI (aws configure, AWS_PROFILE, "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or try the embedded local cloud with --env local."
            )

    def client(self, service: str) -> Any:
        if service not in self._clients:
            client = self.session.client(service, endpoint_url=self.config.endpoint_url, config=RETRIES)
            if self.log is not None:
                client.meta.events.register("after-call.*.*", self._record)
            self._clients[service] = client
        return self._clients[service]

    def _record(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if self.log is not None:
            self.log.record_call(model.service_model.service_name, model.name, parsed)

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def elb(self) -> Any:
        return self.client("elb")

    @property
    def autoscaling(self) -> Any:
        return self.client("autoscaling")

    @property
    def route53(self) -> Any:
        return self.client("route53")


def paged(client: Any, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of a listing across all pages (botocore paginators)."""
    for page in client.get_paginator(operation).paginate(**params):
        yield from page.get(key, [])


def collect(client: Any, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """All pages first, then act: deleting between pages breaks paging (moto) or skips items (AWS)."""
    return list(paged(client, operation, key, **params))


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
