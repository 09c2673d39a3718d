"""A small evaluator of IAM policy documents: what the embedded cloud cannot check (it checks actions only), the
tests check on the document itself: resource ARNs, and the conditions this tool's policy uses.

AWS's rules, as far as the policy uses them: a request is allowed when an Allow statement matches its action,
its resource and all its conditions, and no Deny statement matches; `*` and `?` are wildcards in actions (case
insensitive) and ARNs; within a statement, conditions are ANDed; a condition key absent from the request fails
StringEquals; `ForAllValues:` holds when every value of the request's key is among the statement's values;
`Null: true` holds when the key is absent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Context = dict[str, str | list[str]]


@dataclass(frozen=True)
class Request:
    """One authorization AWS makes: ACTION on RESOURCE (an ARN) with the request's condition keys."""

    action: str
    resource: str
    context: Context = field(default_factory=dict)
    label: str = ""


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _listed(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _condition_holds(operator: str, key: str, wanted: Any, context: Context) -> bool:
    values = _listed(wanted)
    present = key in context
    if operator == "Null":
        return (not present) == (str(wanted).lower() == "true")
    if operator.startswith("ForAllValues:"):
        base = operator.split(":", 1)[1]
        return all(_condition_holds(base, key, values, {key: item}) for item in _listed(context.get(key, [])))
    if not present:
        return False
    actual = _listed(context[key])
    if operator == "StringEquals":
        return any(item in values for item in actual)
    if operator == "StringLike":
        return any(_glob(pattern, item) for item in actual for pattern in values)
    raise ValueError(f"the evaluator does not know condition operator {operator}")


def statement_matches(statement: dict[str, Any], request: Request) -> bool:
    actions = _listed(statement.get("Action", []))
    if not any(_glob(action, request.action, ignore_case=True) for action in actions):
        return False
    if not any(_glob(resource, request.resource) for resource in _listed(statement.get("Resource", []))):
        return False
    for operator, keys in statement.get("Condition", {}).items():
        for key, wanted in keys.items():
            if not _condition_holds(operator, key, wanted, request.context):
                return False
    return True


def allowed(document: dict[str, Any], request: Request) -> bool:
    statements = document["Statement"]
    if any(s["Effect"] == "Deny" and statement_matches(s, request) for s in statements):
        return False
    return any(s["Effect"] == "Allow" and statement_matches(s, request) for s in statements)


def action_allowed(document: dict[str, Any], action: str) -> bool:
    """Whether some Allow statement names ACTION (whatever its resources and conditions)."""
    return any(
        s["Effect"] == "Allow" and any(_glob(a, action, ignore_case=True) for a in _listed(s["Action"]))
        for s in document["Statement"]
    )


def without(document: dict[str, Any], sid: str) -> dict[str, Any]:
    return {**document, "Statement": [s for s in document["Statement"] if s["Sid"] != sid]}
