"""`inv iam-policy`: print the least-privilege IAM policy document of an environment (deploy/plans/iam.py).

No AWS call: the document follows from the env file alone (the account is `*`)."""

from __future__ import annotations

import json
from typing import Any

from deploy.config import command_config
from deploy.naming import names_for
from deploy.plans.iam import policy_document


def iam_policy(env: str | None) -> dict[str, Any]:
    config = command_config(env)
    return policy_document(config, names_for(config))


def iam_policy_text(env: str | None) -> str:
    return json.dumps(iam_policy(env), indent=2)
