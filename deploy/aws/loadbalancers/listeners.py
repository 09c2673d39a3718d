"""Pure helpers about an Application Load Balancer's listeners: the listeners wanted, whether an existing one
is the wanted one (AWS adds defaults), how status shows them, and whether a certificate names the host."""

from __future__ import annotations

import fnmatch
from typing import Any

from deploy.plans.traffic import current_weights

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.3 and 1.2 only: AWS's current recommendation
REDIRECT_TO_HTTPS = {"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"}


def wanted_listeners(
    target_group_arn: str, target_group_name: str, certificate_arn: str | None
) -> list[tuple[int, dict[str, Any], str]]:
    """Pure: (port, CreateListener parameters, what a change line calls it), in the order to converge them.

    HTTP 80 forwards to the target group; with a certificate, HTTPS 443 does and HTTP 80 redirects to it,
    443 first: traffic is never redirected to a listener that does not exist yet.
    """
    forward = [{"Type": "forward", "TargetGroupArn": target_group_arn}]
    if not certificate_arn:
        http = {"Protocol": "HTTP", "Port": 80, "DefaultActions": forward}
        return [(80, http, f"HTTP listener 80 → {target_group_name}")]
    https = {
        "Protocol": "HTTPS",
        "Port": 443,
        "DefaultActions": forward,
        "Certificates": [{"CertificateArn": certificate_arn}],
        "SslPolicy": TLS_POLICY,
    }
    redirect = {
        "Protocol": "HTTP",
        "Port": 80,
        "DefaultActions": [{"Type": "redirect", "RedirectConfig": REDIRECT_TO_HTTPS}],
    }
    return [
        (443, https, f"HTTPS listener 443 → {target_group_name} ({TLS_POLICY})"),
        (80, redirect, "HTTP listener 80 → redirect to HTTPS 443"),
    ]


def _action_target(action: dict[str, Any]) -> str | None:
    if action.get("TargetGroupArn"):
        return str(action["TargetGroupArn"])
    groups = (action.get("ForwardConfig") or {}).get("TargetGroups") or []
    return str(groups[0]["TargetGroupArn"]) if len(groups) == 1 else None


def actions_match(current: list[dict[str, Any]], desired: list[dict[str, Any]]) -> bool:
    """Pure: whether a listener's default actions do what DESIRED says (AWS adds defaults and ForwardConfig)."""
    if len(current) != len(desired):
        return False
    for have, want in zip(current, desired, strict=True):
        if have.get("Type") != want["Type"]:
            return False
        if want["Type"] == "forward" and "TargetGroupArn" not in want:
            if current_weights([have]) != current_weights([want]):  # weighted across the groups' target groups
                return False
        elif want["Type"] == "forward" and _action_target(have) != want["TargetGroupArn"]:
            return False
        if want["Type"] == "redirect":
            config = have.get("RedirectConfig") or {}
            if any(str(config.get(key)) != value for key, value in want["RedirectConfig"].items()):
                return False
            defaults = {"Host": "#{host}", "Path": "/#{path}", "Query": "#{query}"}
            if any(config.get(key, value) != value for key, value in defaults.items()):
                return False
    return True


def listener_matches(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Pure: whether an existing listener is the desired one (protocol, actions, certificate, TLS policy)."""
    if current.get("Protocol") != desired["Protocol"]:
        return False
    if not actions_match(current.get("DefaultActions", []), desired["DefaultActions"]):
        return False
    if desired["Protocol"] == "HTTPS":
        certificates = [c.get("CertificateArn") for c in current.get("Certificates", [])]
        if desired["Certificates"][0]["CertificateArn"] not in certificates[:1]:
            return False
        if current.get("SslPolicy") != desired["SslPolicy"]:
            return False
    return True


def describe_actions(actions: list[dict[str, Any]], target_group_name: str) -> str:
    """One line per listener for status: `forward to tg-NAME` or `redirect to HTTPS:443 (HTTP_301)`."""
    parts = []
    for action in actions:
        if action.get("Type") == "forward":
            target = _action_target(action) or "several target groups"
            parts.append(f"forward to {target_group_name if f'/{target_group_name}/' in target else target}")
        elif action.get("Type") == "redirect":
            config = action.get("RedirectConfig") or {}
            parts.append(f"redirect to {config.get('Protocol')}:{config.get('Port')} ({config.get('StatusCode')})")
        else:
            parts.append(str(action.get("Type")))
    return ", ".join(parts)


def listener_summary(port: int, listener: dict[str, Any], target_group_name: str) -> dict[str, Any]:
    """Pure: a listener as status shows it: port, protocol, action (and an HTTPS one's certificate, ssl_policy)."""
    summary = {
        "port": port,
        "protocol": listener["Protocol"],
        "action": describe_actions(listener.get("DefaultActions", []), target_group_name),
    }
    if listener["Protocol"] == "HTTPS":
        summary["certificate"] = (listener.get("Certificates") or [{}])[0].get("CertificateArn")
        summary["ssl_policy"] = listener.get("SslPolicy")
    return summary


def certificate_names(certificate: dict[str, Any], host: str) -> bool:
    """Pure: whether an ACM certificate's description names HOST (its domain or an alternative name; a
    wildcard covers one label)."""
    host = host.lower()
    covered = {certificate.get("DomainName", ""), *certificate.get("SubjectAlternativeNames", [])}
    return any(fnmatch.fnmatchcase(host, name.lower()) and name.count(".") == host.count(".") for name in covered)
