"""The least-privilege IAM policy of one environment (`inv iam-policy`): what the tool and Packer call, each
write scoped to the environment's own resources: by ARN with its exact names, or by its tags (`App`, `Env`)
where AWS names a resource by id only. What stays `*` and why: docs/permissions.md.

Pure: from the configuration and names only (no AWS call: the account is AWS_ACCOUNT_ID, else `*`). One
statement per kind of permission, each named by its Sid, so that removing one removes exactly one set of
permissions. The partition follows the region (aws, aws-cn, aws-us-gov).
"""

from __future__ import annotations

import json
from typing import Any

from deploy.config import Config
from deploy.naming import Names

VERSION = "2012-10-17"

# Tags the tool writes onto images it did not create (an image given by hand may be another environment's).
PROMOTION_TAG_KEYS = ["Deployed", "GivenByHand"]
# The creating calls whose tags are written at creation (TagSpecifications): CreateTags is allowed in them only.
CREATE_ACTIONS = ["CreateLaunchTemplate", "CreateSecurityGroup", "ImportKeyPair", "RunInstances"]


# Packer 1.6.6's amazon-ebs calls as packer/*.json use it (the tool's security group and a named key pair given,
# encrypt_boot, ami_description): proven by the enforced runs (tests/test_iam_policy.py), where Packer's local
# builder bakes as the policy's user. Not called: GetPasswordData (Windows), Create/Attach/Detach/DeleteVolume,
# RegisterImage and CreateSnapshot (the chroot and ebssurrogate builders), ModifySnapshotAttribute
# (snapshot_users: sharing), ModifyInstanceAttribute (ena_support, sriov_support), CreateSecurityGroup,
# AuthorizeSecurityGroupIngress and DeleteSecurityGroup (the group is given).
PACKER_CALLS = (
    "ec2:DescribeRegions",
    "ec2:DescribeImages",
    "ec2:DescribeInstances",
    "ec2:DescribeInstanceStatus",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeVpcs",
    "ec2:DescribeVolumes",
    "ec2:DescribeSnapshots",
    "ec2:CreateKeyPair",
    "ec2:DeleteKeyPair",
    "ec2:RunInstances",
    "ec2:CreateTags",
    "ec2:StopInstances",
    "ec2:CreateImage",
    "ec2:CopyImage",
    "ec2:ModifyImageAttribute",
    "ec2:DeregisterImage",
    "ec2:DeleteSnapshot",
    "ec2:TerminateInstances",
)


def partition(region: str) -> str:
    """The ARN partition of REGION: China and GovCloud regions are partitions of their own."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def _statement(sid: str, actions: list[str], resources: list[str], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources, **extra}


def _tagged(prefix: str, names: Names, key: str = "ResourceTag") -> dict[str, dict[str, str]]:
    """The condition: the resource (or the request, KEY=RequestTag) carries this environment's App and Env tags."""
    return {"StringEquals": {f"{prefix}:{key}/App": names.app, f"{prefix}:{key}/Env": names.env}}


def policy_document(config: Config, names: Names, account: str | None = None) -> dict[str, Any]:
    """The policy document ENV needs: tool and Packer statements, resources scoped to NAMES (APP_NAME-ENV), in
    ACCOUNT (default: AWS_ACCOUNT_ID, else `*`)."""
    region, stack, part = config.region, names.stack, partition(config.region)
    account = account or config.aws_account_id or "*"
    ec2 = f"arn:{part}:ec2:{region}:{account}"
    images = [f"arn:{part}:ec2:{region}::image/*"]  # an image's ARN names no account
    snapshots = [f"arn:{part}:ec2:{region}::snapshot/*"]  # nor a snapshot's
    elb = f"arn:{part}:elasticloadbalancing:{region}:{account}"
    asg = f"arn:{part}:autoscaling:{region}:{account}"
    ssm = f"arn:{part}:ssm:{region}:{account}:parameter/immutable-deploy/{stack}"
    zone = f"arn:{part}:route53:::hostedzone/{config.hosted_zone_id or '*'}"
    groups = f"{asg}:autoScalingGroup:*:autoScalingGroupName/{names.group_prefix}*"
    instances = [f"{ec2}:instance/*"]
    # A group leaves its load balancer (classic) or target group (application) before it is deleted.
    kind_detach = "DetachLoadBalancers" if config.load_balancer == "classic" else "DetachLoadBalancerTargetGroups"
    detach = f"autoscaling:{kind_detach}"
    # A rollback within the window attaches the kept group again (classic; an ALB moves weights instead).
    attach = ["autoscaling:AttachLoadBalancers"] if config.load_balancer == "classic" else []
    # Retirement handed to AWS: sized 0 now, or at the kept group's window end (a scheduled action a rollback deletes).
    retire = [
        "autoscaling:UpdateAutoScalingGroup",
        "autoscaling:PutScheduledUpdateGroupAction",
        "autoscaling:DeleteScheduledAction",
    ]
    # China and GovCloud: Packer 1.6.6 launches its instance untagged there and tags it after (its IsRestricted).
    restricted = part != "aws"
    statements = [
        # The deploy lock and a dead holder's takeover markers (deploy/aws/lock.py), and the deploy history, the
        # versions of one parameter (deploy/aws/history.py). The slash after the stack keeps other stacks out.
        _statement(
            "DeployLockAndHistory",
            ["ssm:GetParameter", "ssm:PutParameter", "ssm:DeleteParameter", "ssm:GetParameterHistory"],
            [f"{ssm}/lock", f"{ssm}/lock-takeover/*", f"{ssm}/history"],
        ),
        *(
            []
            if config.hosted_zone_id
            else [_statement("FindHostedZone", ["route53:ListHostedZonesByName"], ["*"])]  # no resource-level
        ),
        _statement("ReadHostedZone", ["route53:GetHostedZone", "route53:ListResourceRecordSets"], [zone]),
        # The host's own A record only (the zone may hold other sites' records).
        _statement(
            "HostRecord",
            ["route53:ChangeResourceRecordSets"],
            [zone],
            Condition={
                "ForAllValues:StringEquals": {
                    "route53:ChangeResourceRecordSetsNormalizedRecordNames": [names.host],
                    "route53:ChangeResourceRecordSetsRecordTypes": ["A"],
                    "route53:ChangeResourceRecordSetsActions": ["CREATE", "UPSERT", "DELETE"],
                }
            },
        ),
        _statement("ReadEc2", ["ec2:Describe*"], ["*"]),  # Describe* have no resource-level permissions
        # What the tool and Packer create is created tagged as this environment's: the tool's security groups
        # (NAME-lb, NAME-web, NAME-bake), its launch templates, Packer's build instance (run_tags) and the groups'
        # (a group made from a launch template asks for the caller's right to run its instances, tagged by it).
        _statement(
            "CreateTagged",
            ["ec2:CreateSecurityGroup", "ec2:CreateLaunchTemplate", "ec2:RunInstances"],
            [f"{ec2}:security-group/*", f"{ec2}:launch-template/*", *([] if restricted else instances)],
            Condition=_tagged("aws", names, "RequestTag"),
        ),
        # ... and changed only while tagged so: security group rules and deletion; launch templates' deletion;
        # instances stopped (Packer, before imaging), imaged and terminated (Packer; cleanup after a killed bake);
        # tags on them, images and snapshots (Packer's image inputs, cleanup's snapshot tags).
        _statement(
            "OwnTagged",
            [
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:DeleteSecurityGroup",
                "ec2:DeleteLaunchTemplate",
                "ec2:StopInstances",
                "ec2:TerminateInstances",
                "ec2:CreateImage",
                "ec2:CreateTags",
            ],
            [
                f"{ec2}:security-group/*",
                f"{ec2}:launch-template/*",
                f"{ec2}:instance/*",
                *images,
                *snapshots,
            ],
            Condition=_tagged("aws", names),
        ),
        _statement("SecurityGroupsInVpc", ["ec2:CreateSecurityGroup"], [f"{ec2}:vpc/{config.vpc_id or '*'}"]),
        # The environment's key pair, and Packer's temporary ones (packer_NAME_STAMP: the underscore after the
        # stack keeps other stacks out; Packer 1.6.6 tags no key pair).
        _statement(
            "KeyPairs",
            ["ec2:CreateKeyPair", "ec2:ImportKeyPair", "ec2:DeleteKeyPair"],
            [f"{ec2}:key-pair/{names.key_pair}", f"{ec2}:key-pair/packer_{stack}_*"],
        ),
        # What an instance is launched with (no tags of its own in the request, or not this tool's to tag).
        _statement(
            "RunInstancesWith",
            ["ec2:RunInstances"],
            [
                *(instances if restricted else []),
                f"{ec2}:volume/*",
                f"{ec2}:network-interface/*",
                f"{ec2}:subnet/*",
                f"{ec2}:security-group/*",
                f"{ec2}:launch-template/*",
                f"{ec2}:key-pair/*",
                *images,
            ],
        ),
        # Packer's images: the image of its instance, its encrypted copy (encrypt_boot) given its description
        # (ami_description: ModifyImageAttribute, before Packer tags it), the unencrypted one deregistered with its
        # snapshots; cleanup and destroy deregister images and delete their snapshots.
        # Packer's intermediate image is untagged when it deletes it: image and snapshot ids, not tags.
        _statement(
            "Images",
            [
                "ec2:CreateImage",
                "ec2:CopyImage",
                "ec2:ModifyImageAttribute",
                "ec2:DeregisterImage",
                "ec2:DeleteSnapshot",
            ],
            [*images, *snapshots],
        ),
        # Tags written at creation (TagSpecifications) of this environment's resources; onto a new, untagged image
        # and its snapshots (Packer tags its image after copying it); and the promotion tags onto any image (an
        # image given by hand may be another environment's). OwnTagged allows the rest.
        _statement(
            "TagsAtCreation",
            ["ec2:CreateTags"],
            [f"{ec2}:*/*"],
            Condition={
                "StringEquals": {
                    "ec2:CreateAction": CREATE_ACTIONS,
                    "aws:RequestTag/App": names.app,
                    "aws:RequestTag/Env": names.env,
                }
            },
        ),
        _statement(
            "TagNewImages",
            ["ec2:CreateTags"],
            [*(instances if restricted else []), *images, *snapshots],
            Condition={
                "Null": {"aws:ResourceTag/Env": "true"},
                "StringEquals": {"aws:RequestTag/App": names.app, "aws:RequestTag/Env": names.env},
            },
        ),
        _statement(
            "PromotionTags",
            ["ec2:CreateTags"],
            images,
            Condition={"ForAllValues:StringEquals": {"aws:TagKeys": PROMOTION_TAG_KEYS}},
        ),
        _statement("ReadAutoScaling", ["autoscaling:Describe*"], ["*"]),  # no resource-level permissions
        _statement(
            "CreateGroups",
            ["autoscaling:CreateAutoScalingGroup"],
            [groups],
            Condition=_tagged("aws", names, "RequestTag"),
        ),
        _statement(
            "Groups",
            [
                "autoscaling:DeleteAutoScalingGroup",
                "autoscaling:CreateOrUpdateTags",
                detach,
                *attach,
                *retire,
            ],
            [groups],
            Condition={
                "StringEquals": {"autoscaling:ResourceTag/App": names.app, "autoscaling:ResourceTag/Env": names.env}
            },
        ),
        # The original scripts' groups carry no Env tag, only Name=NAME: retired (sized 0, deleted) by name and tag.
        _statement(
            "OriginalScriptsGroups",
            ["autoscaling:DeleteAutoScalingGroup", detach, "autoscaling:UpdateAutoScalingGroup"],
            [groups],
            Condition={
                "Null": {"autoscaling:ResourceTag/Env": "true"},
                "StringEquals": {"autoscaling:ResourceTag/Name": stack},
            },
        ),
        # Launch configurations carry no tags: by name (the Deny below keeps longer-named environments out).
        _statement(
            "OriginalScriptsLaunchConfigurations",
            ["autoscaling:DeleteLaunchConfiguration"],
            [f"{asg}:launchConfiguration:*:launchConfigurationName/{names.launch_configuration_prefix}*"],
        ),
        # NAME-… names of another environment (dev01-eu's asg-webapp-dev01-eu-STAMP under dev01's prefix): this
        # environment's own suffixes hold no hyphen (a stamp, or the original scripts' letters and digits).
        {
            "Sid": "NotOtherEnvironments",
            "Effect": "Deny",
            "Action": ["autoscaling:*"],
            "Resource": [
                f"{groups}-*",
                f"{asg}:launchConfiguration:*:launchConfigurationName/{names.launch_configuration_prefix}*-*",
            ],
        },
        _statement("ReadLoadBalancers", ["elasticloadbalancing:Describe*"], ["*"]),  # no resource-level
        _load_balancer_statement(config, names, elb),
        # AWS creates the service-linked roles of Auto Scaling and Elastic Load Balancing, as the caller, on an
        # account's first group and load balancer.
        _statement(
            "ServiceLinkedRoles",
            ["iam:CreateServiceLinkedRole"],
            [
                f"arn:{part}:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling",
                f"arn:{part}:iam::{account}:role/aws-service-role/elasticloadbalancing.amazonaws.com/"
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
    if config.traffic_steps != (100,):
        # A traffic step's figures and alarm states (deploy/aws/metrics.py): no resource-level permissions.
        statements.append(
            _statement("TrafficMetrics", ["cloudwatch:GetMetricData", "cloudwatch:DescribeAlarms"], ["*"])
        )
    return {"Version": VERSION, "Statement": statements}


def _load_balancer_statement(config: Config, names: Names, elb: str) -> dict[str, Any]:
    """The environment's own load balancer, of its kind only, by its exact name."""
    if config.load_balancer == "classic":
        return _statement(
            "LoadBalancer",
            [
                "elasticloadbalancing:CreateLoadBalancer",
                "elasticloadbalancing:DeleteLoadBalancer",
                "elasticloadbalancing:CreateLoadBalancerListeners",
                "elasticloadbalancing:DeleteLoadBalancerListeners",
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
            # The slash after the name keeps longer names (alb-webapp-dev01-eu) out.
            f"{elb}:loadbalancer/app/{alb}/*",
            f"{elb}:targetgroup/{group}/*",
            # Each group's own: tg + ten hex digits of NAME's SHA-256 + "-" (a digit is never "-", so neither the
            # shared tg-OTHER of another environment nor another NAME's digits match).
            f"{elb}:targetgroup/{names.group_target_group_prefix}*/*",
            f"{elb}:listener/app/{alb}/*",
        ],
    )


def permissions_table(document: dict[str, Any]) -> str:
    """The permissions section of the docs: one row per statement (Sid, effect, actions, resources, condition)."""
    rows = ["| statement | actions | resources |", "| --- | --- | --- |"]
    for statement in document["Statement"]:
        actions = ", ".join(f"`{action}`" for action in statement["Action"])
        resources = ", ".join(f"`{resource}`" for resource in statement["Resource"])
        condition = f" (condition: `{json.dumps(statement['Condition'])}`)" if "Condition" in statement else ""
        effect = " (**Deny**)" if statement["Effect"] == "Deny" else ""
        rows.append(f"| {statement['Sid']}{effect} | {actions} | {resources}{condition} |")
    return "\n".join(rows) + "\n"
