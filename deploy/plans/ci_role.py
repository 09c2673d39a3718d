"""The CI recipe's CloudFormation template (`inv iam-policy --cloudformation`, docs/ci.md): a role GitHub Actions
assumes through OIDC, holding an environment's policy (deploy/plans/iam.py). Pure: printed, never applied."""

from __future__ import annotations

from typing import Any

from deploy.config import Config
from deploy.naming import Names
from deploy.plans.iam import VERSION, policy_document

# GitHub Actions' OpenID Connect provider (docs.github.com: "Configuring OpenID Connect in Amazon Web Services").
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
# The certificate thumbprints GitHub documents for its provider (AWS no longer checks them for this provider, but
# an OIDC provider resource still takes a list).
GITHUB_THUMBPRINTS = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]
ACCOUNT_PLACEHOLDER = "${AWS::AccountId}"


def ci_role_template(
    config: Config, names: Names, github_repo: str, github_environment: str | None = None
) -> dict[str, Any]:
    """A CloudFormation template: a role GitHub Actions may assume through OIDC for GITHUB_REPO (OWNER/NAME)
    and, if given, only from its GITHUB_ENVIRONMENT, holding ENV's policy (in the stack's own account); the OIDC
    provider itself as an optional resource (one per account: create it once)."""
    document = policy_document(config, names, account=config.aws_account_id or ACCOUNT_PLACEHOLDER)
    for statement in document["Statement"]:
        statement["Resource"] = [
            {"Fn::Sub": resource} if ACCOUNT_PLACEHOLDER in resource else resource for resource in statement["Resource"]
        ]
    subject = f"repo:{github_repo}:" + (f"environment:{github_environment}" if github_environment else "*")
    audience = {f"{GITHUB_OIDC_HOST}:aud": "sts.amazonaws.com"}
    # One job environment: an exact subject; any workflow of the repository: a pattern.
    trust_conditions: dict[str, dict[str, str]] = (
        {"StringEquals": {**audience, f"{GITHUB_OIDC_HOST}:sub": subject}}
        if github_environment
        else {"StringEquals": audience, "StringLike": {f"{GITHUB_OIDC_HOST}:sub": subject}}
    )
    provider = {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:oidc-provider/{GITHUB_OIDC_HOST}"}
    where = f"{github_repo}" + (f", environment {github_environment}" if github_environment else "")
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"immutable-deploy: the role GitHub Actions ({where}) assumes to deploy {names.stack}.",
        "Parameters": {
            "CreateGitHubOidcProvider": {
                "Type": "String",
                "AllowedValues": ["true", "false"],
                "Default": "false",
                "Description": f"true: also create the account's OIDC provider for {GITHUB_OIDC_HOST} (once per"
                " account; false when it exists already).",
            }
        },
        "Conditions": {"CreateProvider": {"Fn::Equals": [{"Ref": "CreateGitHubOidcProvider"}, "true"]}},
        "Resources": {
            "GitHubOidcProvider": {
                "Type": "AWS::IAM::OIDCProvider",
                "Condition": "CreateProvider",
                "Properties": {
                    "Url": f"https://{GITHUB_OIDC_HOST}",
                    "ClientIdList": ["sts.amazonaws.com"],
                    "ThumbprintList": GITHUB_THUMBPRINTS,
                },
            },
            "DeployRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Description": f"Deploys {names.stack} with immutable-deploy from GitHub Actions ({where}).",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": {
                        "Version": VERSION,
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Federated": provider},
                                "Action": "sts:AssumeRoleWithWebIdentity",
                                "Condition": trust_conditions,
                            }
                        ],
                    },
                    "Policies": [{"PolicyName": f"immutable-deploy-{names.stack}", "PolicyDocument": document}],
                    "Tags": [{"Key": key, "Value": value} for key, value in names.tags().items()],
                },
            },
        },
        "Outputs": {
            "RoleArn": {
                "Description": "role-to-assume of aws-actions/configure-aws-credentials",
                "Value": {"Fn::GetAtt": ["DeployRole", "Arn"]},
            }
        },
    }
