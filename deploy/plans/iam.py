"""The least-privilege IAM policy of one environment (`inv iam-policy`): what the tool and Packer call, each
statement scoped to the environment's names wherever the service names its resources in the ARN (SSM
parameter, Route 53 zone, key pair, groups and launch configurations, load balancer and target group).

Pure: from the configuration and names only (no AWS call, so the account is `*`). One statement per kind of
resource, each named by its Sid, so that removing one removes exactly one set of permissions.
"""

from __future__ import annotations

import json
from typing import Any

from deploy.config import Config
from deploy.naming import Names

VERSION = "2012-10-17"


def _statement(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources, **extra}


def policy_document(config: Config, names: Names) -> dict[str, Any]:
    """The policy document ENV needs: tool and Packer statements, resources scoped to NAMES (APP_NAME-ENV)."""
    region, stack = config.region, names.stack
    ec2 = f"arn:aws:ec2:{region}:*"
    elb = f"arn:aws:elasticloadbalancing:{region}:*"
    asg = f"arn:aws:autoscaling:{region}:*"
    zone = f"arn:aws:route53:::hostedzone/{config.hosted_zone_id or '*'}"
    statements = [
        # The deploy lock and a dead holder's takeover markers (deploy/aws/lock.py: create, read, delete), and
        # the deploy history, the versions of one parameter (deploy/aws/history.py: written, read as versions).
        # One statement: PutParameter serves both, and each action is in one statement only.
        _statement(
            "DeployLockAndHistory",
            ["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter", "ssm:GetParameterHistory"],
            [
                f"arn:aws:ssm:{region}:*:parameter/immutable-deploy/{stack}/lock",
                f"arn:aws:ssm:{region}:*:parameter/immutable-deploy/{stack}/lock-takeover/*",
                f"arn:aws:ssm:{region}:*:parameter/immutable-deploy/{stack}/history",
            ],
        ),
        _statement("FindHostedZone", ["route53:ListHostedZonesByName"], ["*"]),
        _statement(
            "HostRecord",
            ["route53:GetHostedZone", "route53:ListResourceRecordSets", "route53:ChangeResourceRecordSets"],
            [zone],
        ),
        _statement("ReadEc2", ["ec2:Describe*"], ["*"]),
        # EC2 names most resources by id only: a statement per kind of resource, each action in one statement.
        # The tool's security groups and Packer's temporary one.
        _statement(
            "SecurityGroups",
            [
                "ec2:CreateSecurityGroup",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:DeleteSecurityGroup",
            ],
            [f"{ec2}:security-group/*", f"{ec2}:vpc/*"],
        ),
        # The environment's key pair and Packer's temporary ones (packer_<id>).
        _statement(
            "KeyPairs",
            ["ec2:CreateKeyPair", "ec2:ImportKeyPair", "ec2:DeleteKeyPair"],
            [f"{ec2}:key-pair/{names.key_pair}", f"{ec2}:key-pair/packer_*"],
        ),
        _statement(
            "LaunchTemplates",
            ["ec2:CreateLaunchTemplate", "ec2:DeleteLaunchTemplate"],
            [f"{ec2}:launch-template/*"],
        ),
        # Packer's build instances, and the groups' (creating a group from a launch template asks for the
        # caller's right to launch its instances).
        _statement(
            "Instances",
            [
                "ec2:RunInstances",
                "ec2:StopInstances",
                "ec2:TerminateInstances",
                "ec2:ModifyInstanceAttribute",
                "ec2:GetPasswordData",
            ],
            [
                f"{ec2}:instance/*",
                f"{ec2}:volume/*",
                f"{ec2}:network-interface/*",
                f"{ec2}:subnet/*",
                f"{ec2}:security-group/*",
                f"{ec2}:launch-template/*",
                f"{ec2}:key-pair/*",
                f"arn:aws:ec2:{region}::image/*",
                f"{ec2}:image/*",
            ],
        ),
        # Packer's images (an encrypted copy of the imaged instance), and their deletion by cleanup and destroy.
        _statement(
            "Images",
            [
                "ec2:CreateImage",
                "ec2:CopyImage",
                "ec2:RegisterImage",
                "ec2:DeregisterImage",
                "ec2:ModifyImageAttribute",
                "ec2:CreateSnapshot",
                "ec2:DeleteSnapshot",
                "ec2:ModifySnapshotAttribute",
                "ec2:CreateVolume",
                "ec2:AttachVolume",
                "ec2:DetachVolume",
                "ec2:DeleteVolume",
            ],
            [
                f"arn:aws:ec2:{region}::image/*",
                f"{ec2}:image/*",
                f"arn:aws:ec2:{region}::snapshot/*",
                f"{ec2}:snapshot/*",
                f"{ec2}:volume/*",
                f"{ec2}:instance/*",
            ],
        ),
        # Tags at creation (security groups, templates, Packer's instances and images) and the Deployed tag.
        _statement("Tags", ["ec2:CreateTags"], [f"{ec2}:*/*", f"arn:aws:ec2:{region}::*/*"]),
        _statement("ReadAutoScaling", ["autoscaling:Describe*"], ["*"]),
        _statement(
            "Groups",
            [
                "autoscaling:CreateAutoScalingGroup",
                "autoscaling:DeleteAutoScalingGroup",
                "autoscaling:CreateOrUpdateTags",
                "autoscaling:DetachLoadBalancers",
                "autoscaling:DetachLoadBalancerTargetGroups",
                "autoscaling:DeleteLaunchConfiguration",
            ],
            [
                f"{asg}:autoScalingGroup:*:autoScalingGroupName/{names.group_prefix}*",
                f"{asg}:launchConfiguration:*:launchConfigurationName/lc-{stack}-*",
            ],
        ),
        _statement("ReadLoadBalancers", ["elasticloadbalancing:Describe*"], ["*"]),
        _load_balancer_statement(config, names, elb),
        # AWS creates the service-linked roles of Auto Scaling and Elastic Load Balancing, as the caller, on an
        # account's first group and load balancer.
        _statement(
            "ServiceLinkedRoles",
            ["iam:CreateServiceLinkedRole"],
            [
                "arn:aws:iam::*:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
                "arn:aws:iam::*:role/aws-service-role/elasticloadbalancing.amazonaws.com/"
                "AWSServiceRoleForElasticLoadBalancing",
            ],
            Condition={
                "StringEquals": {
                    "iam:AWSServiceName": ["autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com"]
                }
            },
        ),
    ]
    if config.certificate_arn:
        statements.append(_statement("Certificate", ["acm:DescribeCertificate"], [str(config.certificate_arn)]))
    return {"Version": VERSION, "Statement": statements}


def _load_balancer_statement(config: Config, names: Names, elb: str) -> dict[str, Any]:
    """The environment's own load balancer, of its kind only."""
    if config.load_balancer == "classic":
        return _statement(
            "LoadBalancer",
            [
                "elasticloadbalancing:CreateLoadBalancer",
                "elasticloadbalancing:DeleteLoadBalancer",
                "elasticloadbalancing:ConfigureHealthCheck",
                "elasticloadbalancing:ModifyLoadBalancerAttributes",
                "elasticloadbalancing:AttachLoadBalancerToSubnets",
                "elasticloadbalancing:ApplySecurityGroupsToLoadBalancer",
                "elasticloadbalancing:AddTags",
            ],
            [f"{elb}:loadbalancer/{names.load_balancer}"],
        )
    alb, group = names.application_load_balancer, names.target_group
    return _statement(
        "LoadBalancer",
        [
            "elasticloadbalancing:CreateLoadBalancer",
            "elasticloadbalancing:DeleteLoadBalancer",
            "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:SetSecurityGroups",
            "elasticloadbalancing:CreateTargetGroup",
            "elasticloadbalancing:ModifyTargetGroup",
            "elasticloadbalancing:ModifyTargetGroupAttributes",
            "elasticloadbalancing:DeleteTargetGroup",
            "elasticloadbalancing:CreateListener",
            "elasticloadbalancing:ModifyListener",
            "elasticloadbalancing:DeleteListener",
            "elasticloadbalancing:AddTags",
        ],
        [
            f"{elb}:loadbalancer/app/{alb}/*",
            f"{elb}:targetgroup/{group}/*",
            f"{elb}:listener/app/{alb}/*",
        ],
    )


def permissions_table(document: dict[str, Any]) -> str:
    """The permissions section of docs/aws.md: one row per statement (Sid, actions, resources), from DOCUMENT."""
    rows = ["| statement | actions | resources |", "| --- | --- | --- |"]
    for statement in document["Statement"]:
        actions = ", ".join(f"`{action}`" for action in statement["Action"])
        resources = ", ".join(f"`{resource}`" for resource in statement["Resource"])
        condition = f" (condition: `{json.dumps(statement['Condition'])}`)" if "Condition" in statement else ""
        rows.append(f"| {statement['Sid']} | {actions} | {resources}{condition} |")
    return "\n".join(rows) + "\n"
