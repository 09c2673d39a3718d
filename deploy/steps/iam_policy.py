"""`inv iam-policy`: print the least-privilege IAM policy document of an environment (deploy/plans/iam.py), or
with --cloudformation a CloudFormation template of a role GitHub Actions assumes through OIDC holding it.

No AWS call: the document follows from the env file alone (the account is AWS_ACCOUNT_ID, else `*`)."""

from __future__ import annotations

import json
import re
from typing import Any

from deploy.config import command_config
from deploy.errors import DeployError
from deploy.naming import names_for
from deploy.plans.ci_role import ci_role_template
from deploy.plans.iam import policy_document

# GitHub's rules: an owner of letters, digits and inner hyphens; a repository of letters, digits, . _ -.
GITHUB_REPO = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
GITHUB_ENVIRONMENT = re.compile(r"[^\x00-\x1f\x7f,:*\"'`;<>|\\/]{1,255}")


def iam_policy(env: str | None) -> dict[str, Any]:
    config = command_config(env)
    return policy_document(config, names_for(config))


def iam_policy_text(
    env: str | None,
    cloudformation: bool = False,
    github_repo: str | None = None,
    github_environment: str | None = None,
) -> str:
    """The policy document, or (CLOUDFORMATION) the CI role's template, as JSON."""
    if not cloudformation:
        if github_repo or github_environment:
            raise DeployError("--github-repo and --github-environment go with --cloudformation.")
        return json.dumps(iam_policy(env), indent=2)
    if not github_repo or not GITHUB_REPO.fullmatch(github_repo):
        raise DeployError(
            f"--cloudformation needs --github-repo OWNER/NAME, the repository whose workflows assume the role"
            f"{'' if not github_repo else f' (not {github_repo!r})'}."
        )
    if github_environment is not None and not GITHUB_ENVIRONMENT.fullmatch(github_environment):
        raise DeployError(f"--github-environment {github_environment!r} is not a GitHub environment name.")
    config = command_config(env)
    return json.dumps(ci_role_template(config, names_for(config), github_repo, github_environment), indent=2)
