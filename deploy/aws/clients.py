"""AWS clients: one boto3 session per run, botocore's retry modes, and a log file per call.

Real AWS goes through boto3's normal credential chain (AWS_PROFILE, SSO, instance roles, ...);
the embedded cloud takes fixed dummy credentials.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

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

    def check_account(self) -> None:
        """AWS_ACCOUNT_ID, when set, is the credentials' account: one sts:GetCallerIdentity (which needs no
        permission), before anything else, so that a wrong account's credentials never build a second stack."""
        wanted = self.config.aws_account_id
        if not wanted:
            return
        identity = self.client("sts").get_caller_identity()
        actual = str(identity.get("Account", ""))
        if actual != wanted:
            raise DeployError(
                f"the credentials are of account {actual} ({identity.get('Arn', '')}), but AWS_ACCOUNT_ID is"
                f" {wanted} ({self.config.source_of('AWS_ACCOUNT_ID')}): refused before any change. Use credentials"
                f" of account {wanted} (AWS_PROFILE), or fix AWS_ACCOUNT_ID."
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
        service_operation = event_name.split(".", 1)[1]
        self.requests[service_operation] += 1

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
    """All pages first, then act: deleting between pages skips items."""
    return list(paged(client, operation, key, **params))


# --- AWS's answers that are expected, not errors: the one place the tool inspects ClientError ---------------
# (deploy/cli.py turns every other ClientError into the run's one-paragraph message.)

T = TypeVar("T")

# "does not exist" as each service says it. A code ending in NotFound / NotFoundException counts as well.
NOT_FOUND = frozenset(
    {
        "LoadBalancerNotFound",
        "AccessPointNotFound",
        "TargetGroupNotFound",
        "ListenerNotFound",
        "NoSuchHostedZone",
        "ParameterNotFound",
        "InvalidInstanceID.NotFound",
        "InvalidAMIID.Malformed",
        "InvalidAMIID.Unavailable",
    }
)


def error_code(error: BaseException) -> str:
    """AWS's error code of a ClientError ('' for any other exception)."""
    if not isinstance(error, ClientError):
        return ""
    return str(error.response.get("Error", {}).get("Code", ""))


def is_not_found(error: BaseException) -> bool:
    """AWS's answer that the thing asked for does not exist (so a read finds nothing, a delete has nothing to do)."""
    code = error_code(error)
    if code == "ValidationError":
        # Auto Scaling alone says "AutoScalingGroup name not found - …" this way; elsewhere it is a real error.
        operation = str(getattr(error, "operation_name", ""))
        return operation.endswith("AutoScalingGroup") and "not found" in str(error).lower()
    return code in NOT_FOUND or code.endswith(("NotFound", "NotFoundException"))


def or_none(call: Callable[[], T], *codes: str) -> T | None:
    """CALL's answer, or None when AWS answers one of CODES (default: that the thing does not exist)."""
    try:
        return call()
    except ClientError as error:
        if (error_code(error) in codes) if codes else is_not_found(error):
            return None
        raise


def refusal(call: Callable[[], object], *codes: str) -> str | None:
    """Make the call; None when AWS did it (or the thing is gone), else which of CODES AWS answered
    (a refusal for now, such as a resource still in use: the caller waits and tries again)."""
    try:
        call()
    except ClientError as error:
        if error_code(error) in codes:
            return error_code(error)
        if is_not_found(error):
            return None
        raise
    return None


# AWS is eventually consistent: a resource created a moment ago may be "not found" by the next call (ingress on
# a new security group, a group naming a new launch template). botocore's retries do not cover *.NotFound.
FRESH_RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0)  # 30 s at most, then the NotFound is the run's error


def is_fresh_not_found(error: BaseException) -> bool:
    """A NotFound that may only mean "created a moment ago": any not-found code, or Auto Scaling's
    ValidationError naming a launch template that "does not exist"."""
    if error_code(error) == "ValidationError" and "does not exist" in str(error).lower():
        return True
    return is_not_found(error)


def after_create(call: Callable[[], T], sleep: Callable[[float], None], what: str = "") -> T:
    """CALL, made right after the tool created what it names: retried, bounded, while AWS answers NotFound."""
    for delay in FRESH_RETRY_DELAYS_S:
        try:
            return call()
        except ClientError as error:
            if not is_fresh_not_found(error):
                raise
            sleep(delay)
    return call()
