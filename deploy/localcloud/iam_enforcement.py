"""moto's IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT) as AWS does it, where moto differs: the wrappers
deploy/localcloud/fixes.py installs (`patch_moto()`), kept apart to keep that module readable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import xmltodict  # type: ignore[import-untyped]
from moto.core.exceptions import JsonRESTError
from moto.core.exceptions import _RESTError as RESTError
from moto.core.responses import BaseResponse
from moto.core.utils import get_service_model
from moto.iam.access_control import IAMPolicyStatement, IAMRequestBase, PermissionResult

# --- IAM enforcement (INITIAL_NO_AUTH_ACTION_COUNT) ---------------------------------------------------------


def sign_the_body(original: Callable[..., Any]) -> Callable[..., Any]:
    # AWS: SigV4 signs the raw body, empty for a GET. moto signed its parsed parameters when the body was empty
    # (right for a form POST), so a REST GET's query string or, lacking one, its headers (setup_class falls back
    # to them): every Route 53 read (ListHostedZonesByName, GetHostedZone, ListResourceRecordSets) failed the
    # signature check under enforcement, whatever the policy granted; POSTs (ChangeResourceRecordSets) passed.
    def create_aws_request(self: IAMRequestBase) -> Any:
        request = original(self)
        if self._method in ("GET", "HEAD", "DELETE") and not self._body:
            request.data = b""
        return request

    return create_aws_request


# Services whose requests are signed under another name than their IAM actions' prefix.
IAM_PREFIX_OF_SIGNING_NAME = {"monitoring": "cloudwatch"}


def iam_prefix(original: Callable[..., None]) -> Callable[..., None]:
    # AWS: CloudWatch's actions are `cloudwatch:GetMetricData`, `cloudwatch:DescribeAlarms`. moto named the action
    # after the service of the request's signature (`monitoring`), so a policy granting the documented
    # `cloudwatch:` actions was denied every CloudWatch request under enforcement.
    def __init__(self: IAMRequestBase, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        service, _, action = self._action.partition(":")
        if service in IAM_PREFIX_OF_SIGNING_NAME:
            self._action = f"{IAM_PREFIX_OF_SIGNING_NAME[service]}:{action}"

    return __init__


def unknown_resource(original: Callable[..., bool]) -> Callable[..., bool]:
    # AWS: a statement applies when the request's resource ARN matches its Resource. moto knows the resource of
    # a request for SQS, IAM and STS only and passes "*" for every other service, which then matched no scoped
    # Resource (arn:aws:autoscaling:...:autoScalingGroupName/asg-NAME-*): a least-privilege policy was denied
    # everything. Where moto does not know the resource it can check the action only, as it does for "*";
    # tests/test_iam_policy.py checks the policy's resources against the names the tool makes.
    def check_element_matches(self: IAMPolicyStatement, statement_element: Any, value: str) -> bool:
        if statement_element == "Resource" and value == "*":
            return True
        return original(self, statement_element, value)

    return check_element_matches


def unknown_request(original: Callable[..., Any]) -> Callable[..., Any]:
    # AWS: an Allow statement whose condition does not hold does not apply (the request may still be allowed by
    # another); a Deny applies only to the resources it names and when its conditions hold. moto returned DENIED
    # for any statement whose condition it could not verify, and it knows no condition key of an EC2, Auto
    # Scaling or load balancer request (no tags, no ec2:CreateAction) nor, for them, the resource (see above):
    # every tag-conditioned Allow of a least-privilege policy denied the action outright, and a Deny scoped to
    # another environment's names denied this environment's calls too. Where moto knows neither, it checks the
    # action only, as for the resource: an Allow by its actions, a scoped or conditioned Deny not at all.
    # tests/test_iam_policy.py evaluates the policy's resources and conditions on the document.
    def is_action_permitted(
        self: IAMPolicyStatement,
        action: str,
        resource: str = "*",
        principal: str | None = None,
        incoming_condition_values: dict[str, str] | None = None,
    ) -> Any:
        statement = self._statement
        if resource == "*" and not incoming_condition_values:
            scoped = statement.get("Resource") not in (None, "*", ["*"]) or "Condition" in statement
            if statement.get("Effect") == "Deny" and scoped:
                return PermissionResult.NEUTRAL
            if statement.get("Effect") == "Allow" and "Condition" in statement:
                actions_only = IAMPolicyStatement({k: v for k, v in statement.items() if k != "Condition"})
                return original(actions_only, action, resource, principal, incoming_condition_values)
        return original(self, action, resource, principal, incoming_condition_values)

    return is_action_permitted


DENIALS = {"json": "AccessDeniedException", "rest-json": "AccessDeniedException", "ec2": "UnauthorizedOperation"}


def refusals_in_the_services_shape(original: Callable[..., None]) -> Callable[..., None]:
    # AWS answers a refusal in its protocol's shape: JSON {"__type": "AccessDeniedException"} (SSM), EC2's
    # <Response><Errors><Error> (UnauthorizedOperation), <ErrorResponse><Error> (Route 53). moto sent the query
    # protocol's <ErrorResponse><Errors><Error> to all: botocore read code "403" (SSM) or "" (Route 53), and
    # Packer's Go SDK could not parse it (EC2): no run could say which permission was missing.
    def authenticate_and_authorize_normal_action(self: BaseResponse, resource: str = "*") -> None:
        try:
            original(self, resource)
        except RESTError as error:
            protocol = get_service_model(self.boto3_service_name).protocol
            code = DENIALS.get(protocol, error.error_type) if error.error_type == "AccessDenied" else error.error_type
            if isinstance(error, JsonRESTError) or protocol not in (*DENIALS, "rest-xml"):
                raise
            if protocol in ("json", "rest-json"):
                refusal = JsonRESTError(code, error.message)
                refusal.code = error.code
                raise refusal from None
            detail: dict[str, Any] = {"Error": {"Code": code, "Message": error.message}}
            shape = {"Errors": detail} if protocol == "ec2" else detail
            error.description = xmltodict.unparse({"Response" if protocol == "ec2" else "ErrorResponse": shape})
            raise

    return authenticate_and_authorize_normal_action
