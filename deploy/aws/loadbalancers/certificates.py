"""ACM: whether CERTIFICATE_ARN can serve an Application Load Balancer's HTTPS listener, checked before setup
creates anything."""

from __future__ import annotations

from collections.abc import Callable

from deploy.aws.clients import Aws, or_none
from deploy.aws.loadbalancers.base import LoadBalancerSettings
from deploy.aws.loadbalancers.listeners import certificate_names
from deploy.errors import DeployError


def check_certificate(aws: Aws, settings: LoadBalancerSettings, host: str, say: Callable[[str], None]) -> None:
    """DeployError unless the certificate exists in the region's ACM and is issued; a warning (SAY) when it does
    not name HOST."""
    arn = str(settings.certificate_arn)
    found = or_none(
        lambda: aws.client("acm").describe_certificate(CertificateArn=arn),
        "ResourceNotFoundException",
        "ValidationException",
    )
    if found is None:
        raise DeployError(
            f"CERTIFICATE_ARN {arn} is not a certificate in ACM of {settings.region}: request or"
            f" import it there, or fix it in {settings.certificate_source}."
        )
    certificate = found["Certificate"]
    status = certificate.get("Status")
    if status != "ISSUED":
        raise DeployError(
            f"CERTIFICATE_ARN {arn} is {status}: an HTTPS listener needs an issued certificate."
            " Complete its validation in ACM, then run setup again."
        )
    if not certificate_names(certificate, host):
        covered = sorted({certificate.get("DomainName", ""), *certificate.get("SubjectAlternativeNames", [])})
        say(f"  warning: certificate {arn} does not name {host.lower()} ({', '.join(covered)})")
