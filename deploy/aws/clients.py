"""AWS clients: one boto3 session per run, botocore's retry modes, and a log file per call.

Real AWS goes through boto3's normal credential chain (AWS_PROFILE, SSO, instance roles, ...);
the embedded cloud uses moto's dummy credentials.
"""

from __future__ import annotations

from collections import Counter
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

    def __init__(self, config: Config, log: RunLog | None = None, dry_run: bool = False) -> None:
        self.config = config
        self.log = log
        # Dry run: every operation but a read (Describe*, List*, Get*) is refused before it is sent.
        self.dry_run = dry_run
        self.refused: list[str] = []
        credentials = LOCAL_CREDENTIALS if config.local_cloud else {}
        self.session = boto3.Session(region_name=config.region, **credentials)
        self._clients: dict[str, Any] = {}
        # Requests sent, by "service.Operation": the benchmark's figures and a check on polling cost.
        self.requests: Counter[str] = Counter()

    def check_credentials(self) -> None:
        if self.session.get_credentials() is None:
            raise DeployError(
                "No AWS credentials found. Configure them as for the AWS CLI (aws configure, AWS_PROFILE, "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), or try the embedded local cloud with --env local."
            )

    def client(self, service: str) -> Any:
        if service not in self._clients:
            client = self.session.client(service, endpoint_url=self.config.endpoint_url, config=RETRIES)
            if self.dry_run:
                client.meta.events.register("before-call.*.*", self._refuse_writes)
            if self.log is not None:
                client.meta.events.register("after-call.*.*", self._record)
            client.meta.events.register("before-send.*.*", self._count)
            self._clients[service] = client
        return self._clients[service]

    def _refuse_writes(self, model: Any, **_: Any) -> None:
        """The dry-run guard: raised before the request is signed or sent, so no write reaches AWS."""
        if not is_read_operation(model.name):
            operation = f"{model.service_model.service_name}:{model.name}"
            self.refused.append(operation)
            if self.log is not None:
                self.log.say(f"dry run: refused {operation}")
            raise DeployError(f"Dry run: refused {operation}, which would change the cloud (a bug of the plan).")

    def _count(self, event_name: str, **_: Any) -> None:
        # before-send fires for every HTTP request, retries included: "before-send.ec2.DescribeImages".
        _, service, operation = event_name.split(".", 2)
        self.requests[f"{service}.{operation}"] += 1

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


READ_PREFIXES = ("Describe", "List", "Get")


def is_read_operation(name: str) -> bool:
    """Whether an API operation only reads: what a dry run may call."""
    return name.startswith(READ_PREFIXES)


def paged(client: Any, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of a listing across all pages (botocore paginators)."""
    for page in client.get_paginator(operation).paginate(**params):
        yield from page.get(key, [])


def collect(client: Any, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
    """All pages first, then act: deleting between pages breaks paging (moto) or skips items (AWS)."""
    return list(paged(client, operation, key, **params))


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
