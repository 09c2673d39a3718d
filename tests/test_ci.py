"""The CI recipe, checked offline: the CloudFormation template of `inv iam-policy --cloudformation` passes
cfn-lint, and the example GitHub Actions workflow passes check-jsonschema's GitHub workflow schema (docs/ci.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, run_inv, write_env_folder

BIN = Path(sys.executable).parent
WORKFLOW = REPO / "examples" / "github-actions" / "deploy.yml"


def template(tmp_path: Path, kind: str, *flags: str, extra: str = "") -> tuple[dict, Path]:
    folder = write_env_folder(tmp_path / "env", {"staging.env": f"DOMAIN=example.com\nLOAD_BALANCER={kind}\n{extra}"})
    result = run_inv("iam-policy", "--env", "staging", "--cloudformation", *flags, env={"DEPLOY_ENV_DIR": str(folder)})
    assert result.returncode == 0, result.stderr
    path = tmp_path / "role.json"
    path.write_text(result.stdout, encoding="utf-8")
    return json.loads(result.stdout), path


@pytest.mark.parametrize(
    "kind, flags, extra",
    [
        ("application", ("--github-repo", "acme/webapp", "--github-environment", "staging"), ""),
        ("classic", ("--github-repo", "acme/webapp"), "AWS_ACCOUNT_ID=123456789012\n"),
    ],
)
def test_the_ci_role_template_passes_cfn_lint(tmp_path, kind, flags, extra):
    document, path = template(tmp_path, kind, *flags, extra=extra)
    lint = subprocess.run([BIN / "cfn-lint", str(path)], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    role = document["Resources"]["DeployRole"]["Properties"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    conditions = trust["Condition"]
    keys = {**conditions.get("StringEquals", {}), **conditions.get("StringLike", {})}
    expected = "repo:acme/webapp:environment:staging" if "--github-environment" in flags else "repo:acme/webapp:*"
    assert keys["token.actions.githubusercontent.com:sub"] == expected
    assert trust["Condition"]["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    [policy] = role["Policies"]
    sids = [s["Sid"] for s in policy["PolicyDocument"]["Statement"]]
    assert "LoadBalancer" in sids and "DeployLockAndHistory" in sids
    assert document["Resources"]["GitHubOidcProvider"]["Condition"] == "CreateProvider"  # optional
    # The account: the stack's own, or AWS_ACCOUNT_ID.
    text = json.dumps(policy)
    assert ("123456789012" in text) == bool(extra) and ("${AWS::AccountId}" in text) != bool(extra)


def test_the_template_needs_a_repository_and_refuses_a_malformed_one(tmp_path):
    folder = write_env_folder(tmp_path / "env", {"staging.env": "DOMAIN=example.com\n"})
    for flags in ((), ("--github-repo", "not a repo")):
        result = run_inv(
            "iam-policy", "--env", "staging", "--cloudformation", *flags, env={"DEPLOY_ENV_DIR": str(folder)}
        )
        assert result.returncode == 1 and "--github-repo OWNER/NAME" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_the_example_workflow_passes_the_github_workflow_schema():
    check = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "id-token: write" in text and "aws-actions/configure-aws-credentials" in text
    assert "inv deploy --env" in text


def test_a_broken_workflow_fails_the_schema(tmp_path):
    """The check can fail: a job without runs-on is refused."""
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  deploy:\n    steps: 3\n", encoding="utf-8")
    check = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode != 0
