"""The embedded cloud's fixes of moto (deploy/localcloud/fixes.py, traffic_fixes.py), one test per fix, in-process
on mock_aws.

Each test asserts what AWS does; conftest applied `patch_moto()`, so moto in this process behaves as the embedded
cloud's server does. Without its fix, each test fails on moto 5.2.5 (checked by undoing the fix: every fixed
method keeps moto's own as `__wrapped__`).
"""

from __future__ import annotations

import datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import REGION
from moto.autoscaling.models import AutoScalingBackend
from moto.elb.models import ELBBackend

from deploy.localcloud.fixes import FIXED, patch_moto
from deploy.localcloud.traffic_fixes import percentile

ANY_IMAGE = "ami-12345678"  # moto launches any image id


def client(service: str, region: str = REGION) -> Any:
    return boto3.client(service, region_name=region)


def default_subnets(region: str = REGION) -> list[str]:
    return [s["SubnetId"] for s in client("ec2", region).describe_subnets()["Subnets"] if s["DefaultForAz"]]


def classic_load_balancer(name: str = "elb-web", region: str = REGION) -> str:
    client("elb", region).create_load_balancer(
        LoadBalancerName=name,
        Listeners=[{"Protocol": "HTTP", "LoadBalancerPort": 80, "InstanceProtocol": "HTTP", "InstancePort": 80}],
        Subnets=default_subnets(region)[:1],
    )
    return name


def target_group(name: str = "tg-web", listener: bool = True) -> str:
    """A target group of the load balancer alb-web (created once), which its listener forwards to (LISTENER): on
    AWS only a target group a listener rule references is health checked."""
    elbv2 = client("elbv2")
    subnets = default_subnets()
    vpc_id = client("ec2").describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["VpcId"]
    found = elbv2.describe_load_balancers()["LoadBalancers"]
    balancer = (
        found[0] if found else elbv2.create_load_balancer(Name="alb-web", Subnets=subnets[:2])["LoadBalancers"][0]
    )
    arn = str(
        elbv2.create_target_group(Name=name, Protocol="HTTP", Port=80, VpcId=vpc_id, TargetType="instance")[
            "TargetGroups"
        ][0]["TargetGroupArn"]
    )
    if listener:
        forward = [{"Type": "forward", "TargetGroupArn": arn}]
        elbv2.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"], Protocol="HTTP", Port=80, DefaultActions=forward
        )
    return arn


def group(name: str, size: int = 2, **attachment: Any) -> list[str]:
    """A group of SIZE instances attached as ATTACHMENT says (LoadBalancerNames=…, TargetGroupARNs=…)."""
    ec2, autoscaling = client("ec2"), client("autoscaling")
    if not ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": ["lt-web"]}])[
        "LaunchTemplates"
    ]:
        ec2.create_launch_template(
            LaunchTemplateName="lt-web", LaunchTemplateData={"ImageId": ANY_IMAGE, "InstanceType": "t3.micro"}
        )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": "lt-web"},
        MinSize=0,
        MaxSize=4,
        DesiredCapacity=size,
        VPCZoneIdentifier=",".join(default_subnets()),
        **attachment,
    )
    return instances(name)


def instances(name: str) -> list[str]:
    [found] = client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    return sorted(i["InstanceId"] for i in found["Instances"])


def scale(name: str, size: int) -> None:
    client("autoscaling").update_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, DesiredCapacity=size)


def at_classic(name: str = "elb-web") -> dict[str, str]:
    """Every instance registered at the classic load balancer NAME, with its state (listed once each)."""
    states = client("elb").describe_instance_health(LoadBalancerName=name)["InstanceStates"]
    ids = [s["InstanceId"] for s in states]
    assert len(ids) == len(set(ids)), f"an instance is listed twice: {ids}"
    return {s["InstanceId"]: s["State"] for s in states}


def targets(arn: str) -> dict[str, str]:
    """Every target registered in the target group ARN, with its state."""
    found = client("elbv2").describe_target_health(TargetGroupArn=arn)["TargetHealthDescriptions"]
    return {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in found}


# --- images ---------------------------------------------------------------------------------------


def test_an_image_made_from_an_instance_is_ebs_backed(cloud):
    """moto reported root device type `standard`, which Packer's amazon-ebs builder refuses as a source."""
    ec2 = client("ec2")
    instance = ec2.run_instances(ImageId=ANY_IMAGE, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image_id = ec2.create_image(InstanceId=instance, Name="primal")["ImageId"]

    [image] = ec2.describe_images(ImageIds=[image_id])["Images"]

    assert image["RootDeviceType"] == "ebs"


def test_a_root_volume_mapping_without_size_starts_from_the_images_snapshot(cloud):
    """moto refused the launch (MissingParameter: size/snapshot) unless the mapping stated a size."""
    ec2 = client("ec2")
    instance = ec2.run_instances(ImageId=ANY_IMAGE, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    image_id = ec2.create_image(InstanceId=instance, Name="primal")["ImageId"]
    [image] = ec2.describe_images(ImageIds=[image_id])["Images"]
    [root] = [m for m in image["BlockDeviceMappings"] if m["DeviceName"] == image["RootDeviceName"]]
    ec2.create_launch_template(
        LaunchTemplateName="lt-encrypted",
        LaunchTemplateData={
            "ImageId": image_id,
            "InstanceType": "t3.micro",
            "BlockDeviceMappings": [
                {"DeviceName": image["RootDeviceName"], "Ebs": {"Encrypted": True, "VolumeType": "gp3"}}
            ],
        },
    )

    [launched] = ec2.run_instances(LaunchTemplate={"LaunchTemplateName": "lt-encrypted"}, MinCount=1, MaxCount=1)[
        "Instances"
    ]

    [mapping] = [m for m in launched["BlockDeviceMappings"] if m["DeviceName"] == image["RootDeviceName"]]
    [volume] = ec2.describe_volumes(VolumeIds=[mapping["Ebs"]["VolumeId"]])["Volumes"]
    assert (volume["Size"], volume["SnapshotId"], volume["Encrypted"]) == (
        root["Ebs"]["VolumeSize"],
        root["Ebs"]["SnapshotId"],
        True,
    )


# --- classic load balancer ------------------------------------------------------------------------


def test_two_groups_on_one_classic_load_balancer_both_stay_registered_through_the_overlap(cloud):
    """moto made the instance list equal to the last created or updated group's instances."""
    classic_load_balancer()
    old = group("asg-old", LoadBalancerNames=["elb-web"])
    new = group("asg-new", LoadBalancerNames=["elb-web"])

    assert at_classic() == dict.fromkeys(old + new, "InService")

    client("autoscaling").update_auto_scaling_group(AutoScalingGroupName="asg-old", MaxSize=3)
    scale("asg-new", 3)

    assert at_classic() == dict.fromkeys(old + instances("asg-new"), "InService")


def test_scaling_a_group_to_zero_removes_only_its_own_instances_from_a_classic_load_balancer(cloud):
    """moto deregistered the other group instead (the emptied group's instance list is empty)."""
    classic_load_balancer()
    group("asg-old", LoadBalancerNames=["elb-web"])
    new = group("asg-new", LoadBalancerNames=["elb-web"])

    scale("asg-old", 0)

    assert at_classic() == dict.fromkeys(new, "InService")


def test_a_scale_in_deregisters_the_instance_that_leaves(cloud):
    classic_load_balancer()
    old = group("asg-old", size=1, LoadBalancerNames=["elb-web"])
    group("asg-new", size=2, LoadBalancerNames=["elb-web"])

    scale("asg-new", 1)

    assert at_classic() == dict.fromkeys(old + instances("asg-new"), "InService")


def test_detaching_deregisters_the_group_only_from_the_classic_load_balancer_named(cloud):
    """moto deregistered the group from every load balancer attached to it."""
    classic_load_balancer("elb-web")
    classic_load_balancer("elb-other")
    old = group("asg-old", LoadBalancerNames=["elb-web", "elb-other"])
    new = group("asg-new", LoadBalancerNames=["elb-web"])

    client("autoscaling").detach_load_balancers(AutoScalingGroupName="asg-old", LoadBalancerNames=["elb-web"])

    assert at_classic("elb-web") == dict.fromkeys(new, "InService")
    assert at_classic("elb-other") == dict.fromkeys(old, "InService")


def test_deleting_a_group_deregisters_only_its_instances_from_a_classic_load_balancer(cloud):
    classic_load_balancer()
    group("asg-old", LoadBalancerNames=["elb-web"])
    new = group("asg-new", LoadBalancerNames=["elb-web"])

    client("autoscaling").delete_auto_scaling_group(AutoScalingGroupName="asg-old", ForceDelete=True)

    assert at_classic() == dict.fromkeys(new, "InService")


def test_deleting_a_group_deregisters_even_its_instances_protected_from_scale_in(cloud):
    """moto's deletion scales to 0, which spares protected instances: they stayed registered."""
    classic_load_balancer()
    arn = target_group()
    group("asg-old", LoadBalancerNames=["elb-web"], TargetGroupARNs=[arn], NewInstancesProtectedFromScaleIn=True)
    new = group("asg-new", LoadBalancerNames=["elb-web"], TargetGroupARNs=[arn])

    client("autoscaling").delete_auto_scaling_group(AutoScalingGroupName="asg-old", ForceDelete=True)

    assert at_classic() == dict.fromkeys(new, "InService")
    assert targets(arn) == dict.fromkeys(new, "healthy")


def test_a_classic_load_balancer_has_one_list_of_registered_instances(cloud):
    """moto kept two lists (by hand, by a group): registering twice listed an instance twice, and deregistering
    by hand left what a group had registered."""
    classic_load_balancer()
    ids = group("asg-web", LoadBalancerNames=["elb-web"])
    elb = client("elb")

    elb.register_instances_with_load_balancer(LoadBalancerName="elb-web", Instances=[{"InstanceId": ids[0]}])
    assert at_classic() == dict.fromkeys(ids, "InService")  # listed once

    elb.deregister_instances_from_load_balancer(LoadBalancerName="elb-web", Instances=[{"InstanceId": ids[1]}])
    assert at_classic() == {ids[0]: "InService"}


@pytest.mark.parametrize(("region", "zone_id"), [("us-east-1", "Z35SXDOTRQ7X7K"), ("eu-west-1", "Z32O12XQLNTSW2")])
def test_a_classic_load_balancer_description_has_its_hosted_zone_and_regional_dns_name(cloud, region, zone_id):
    """moto left CanonicalHostedZoneNameID out and named every load balancer NAME.us-east-1.elb.amazonaws.com."""
    classic_load_balancer(region=region)

    [found] = client("elb", region).describe_load_balancers(LoadBalancerNames=["elb-web"])["LoadBalancerDescriptions"]

    assert found["CanonicalHostedZoneNameID"] == zone_id
    assert found["DNSName"].startswith("elb-web-")
    assert found["DNSName"].removeprefix("elb-web-").split(".", 1)[1] == f"{region}.elb.amazonaws.com"
    assert found["DNSName"].removeprefix("elb-web-").split(".", 1)[0].isdigit()


# --- application load balancer: target groups -----------------------------------------------------


def test_targets_of_a_deleted_group_are_deregistered(cloud):
    """moto kept them registered and `healthy`, terminated as they were."""
    arn = target_group()
    group("asg-old", TargetGroupARNs=[arn])
    new = group("asg-new", TargetGroupARNs=[arn])

    client("autoscaling").delete_auto_scaling_group(AutoScalingGroupName="asg-old", ForceDelete=True)

    assert targets(arn) == dict.fromkeys(new, "healthy")


def test_targets_of_a_group_scaled_to_zero_are_deregistered(cloud):
    arn = target_group()
    old = group("asg-old", TargetGroupARNs=[arn])
    new = group("asg-new", TargetGroupARNs=[arn])

    scale("asg-old", 0)

    assert targets(arn) == dict.fromkeys(new, "healthy")
    health = client("elbv2").describe_target_health(TargetGroupArn=arn, Targets=[{"Id": i} for i in old])
    assert {d["TargetHealth"]["State"] for d in health["TargetHealthDescriptions"]} == {"unused"}


def test_detaching_a_target_group_works_when_an_instance_is_no_longer_registered(cloud):
    """moto failed with InvalidTarget (after detaching) when one of the group's instances was not registered."""
    arn = target_group()
    ids = group("asg-old", TargetGroupARNs=[arn])
    new = group("asg-new", TargetGroupARNs=[arn])
    client("elbv2").deregister_targets(TargetGroupArn=arn, Targets=[{"Id": ids[0]}])

    client("autoscaling").detach_load_balancer_target_groups(AutoScalingGroupName="asg-old", TargetGroupARNs=[arn])

    assert targets(arn) == dict.fromkeys(new, "healthy")
    attached = client("autoscaling").describe_load_balancer_target_groups(AutoScalingGroupName="asg-old")
    assert attached["LoadBalancerTargetGroups"] == []


def test_the_replacement_of_an_instance_terminated_through_ec2_serves_and_detaches(cloud):
    """moto registered the replacement only with classic load balancers, and detaching then failed."""
    arn = target_group()
    ids = group("asg-web", TargetGroupARNs=[arn])

    client("ec2").terminate_instances(InstanceIds=ids[:1])
    now = instances("asg-web")

    assert ids[0] not in now and len(now) == 2
    assert {i: state for i, state in targets(arn).items() if state == "healthy"} == dict.fromkeys(now, "healthy")
    client("autoscaling").detach_load_balancer_target_groups(AutoScalingGroupName="asg-web", TargetGroupARNs=[arn])
    assert not any(state == "healthy" for state in targets(arn).values())


def test_a_target_group_no_listener_forwards_to_is_not_checked_its_targets_are_unused(cloud):
    """moto reported the targets of a target group no listener references `healthy`."""
    serving = target_group()
    waiting = target_group("tg-new", listener=False)
    old = group("asg-old", TargetGroupARNs=[serving])
    new = group("asg-new", TargetGroupARNs=[waiting])

    health = client("elbv2").describe_target_health(TargetGroupArn=waiting)["TargetHealthDescriptions"]
    assert {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in health} == dict.fromkeys(new, "unused")
    assert {d["TargetHealth"]["Reason"] for d in health} == {"Target.NotInUse"}
    assert targets(serving) == dict.fromkeys(old, "healthy")


def test_a_target_group_at_weight_0_in_the_forward_action_is_checked(cloud):
    serving = target_group()
    waiting = target_group("tg-new", listener=False)
    new = group("asg-new", TargetGroupARNs=[waiting])
    elbv2 = client("elbv2")
    [listener] = elbv2.describe_listeners(
        LoadBalancerArn=elbv2.describe_load_balancers()["LoadBalancers"][0]["LoadBalancerArn"]
    )["Listeners"]

    weights = [{"TargetGroupArn": serving, "Weight": 100}, {"TargetGroupArn": waiting, "Weight": 0}]
    elbv2.modify_listener(
        ListenerArn=listener["ListenerArn"],
        DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": weights}}],
    )

    assert targets(waiting) == dict.fromkeys(new, "healthy")


# --- CloudWatch: percentiles --------------------------------------------------------------------------


def response_times(values: list[float], **extra: Any) -> tuple[Any, datetime.datetime]:
    """CloudWatch with VALUES published as one request each (as an application load balancer does)."""
    cloudwatch = client("cloudwatch")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    datum = {"MetricName": "TargetResponseTime", "Dimensions": LB_DIMENSION, "Timestamp": now, "Unit": "Seconds"}
    cloudwatch.put_metric_data(
        Namespace="AWS/ApplicationELB", MetricData=[{**datum, "Values": values, "Counts": [1.0] * len(values), **extra}]
    )
    return cloudwatch, now


LB_DIMENSION = [{"Name": "LoadBalancer", "Value": "app/alb-web/0123456789abcdef"}]


def test_get_metric_data_answers_a_percentile(cloud):
    """moto failed with a server error on Stat p99 (it computes no percentile)."""
    cloudwatch, now = response_times([i / 1000 for i in range(1, 201)])  # 1 ms ... 200 ms
    metric = {"Namespace": "AWS/ApplicationELB", "MetricName": "TargetResponseTime", "Dimensions": LB_DIMENSION}
    queries = [
        {"Id": name.replace(".", "_"), "MetricStat": {"Metric": metric, "Period": 60, "Stat": name}}
        for name in ("p99", "p50", "p99.9", "p100", "Average")
    ]

    answer = cloudwatch.get_metric_data(
        MetricDataQueries=queries,
        StartTime=now - datetime.timedelta(seconds=30),
        EndTime=now + datetime.timedelta(seconds=30),
    )

    found = {result["Id"]: result["Values"] for result in answer["MetricDataResults"]}
    assert found == {"p99": [0.198], "p50": [0.1], "p99_9": [0.2], "p100": [0.2], "Average": [pytest.approx(0.1005)]}


def test_get_metric_statistics_answers_extended_statistics(cloud):
    """moto ignored ExtendedStatistics."""
    cloudwatch, now = response_times([0.01] * 99 + [2.0])

    [point] = cloudwatch.get_metric_statistics(
        Namespace="AWS/ApplicationELB",
        MetricName="TargetResponseTime",
        Dimensions=LB_DIMENSION,
        StartTime=now - datetime.timedelta(seconds=30),
        EndTime=now + datetime.timedelta(seconds=30),
        Period=60,
        Statistics=["SampleCount"],
        ExtendedStatistics=["p99", "p100"],
    )["Datapoints"]

    assert (point["SampleCount"], point["ExtendedStatistics"]) == (100.0, {"p99": 0.01, "p100": 2.0})


def test_a_percentile_of_statistic_sets_is_answered_only_where_aws_can(cloud):
    """AWS computes percentiles from raw values: a statistic set counts only when its values are all one value."""
    cloudwatch = client("cloudwatch")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    metric = {"Namespace": "Custom", "MetricName": "Latency", "Dimensions": LB_DIMENSION}

    def p99(name: str) -> list[float]:
        query = {"Id": "p", "MetricStat": {"Metric": {**metric, "MetricName": name}, "Period": 60, "Stat": "p99"}}
        window = {"StartTime": now - datetime.timedelta(seconds=30), "EndTime": now + datetime.timedelta(seconds=30)}
        return list(cloudwatch.get_metric_data(MetricDataQueries=[query], **window)["MetricDataResults"][0]["Values"])

    same = {"SampleCount": 10, "Sum": 5.0, "Minimum": 0.5, "Maximum": 0.5}
    spread = {"SampleCount": 10, "Sum": 5.0, "Minimum": 0.1, "Maximum": 0.9}
    for name, stats in (("Same", same), ("Spread", spread)):
        datum = {"MetricName": name, "Dimensions": LB_DIMENSION, "Timestamp": now, "StatisticValues": stats}
        cloudwatch.put_metric_data(Namespace="Custom", MetricData=[datum])

    assert (p99("Same"), p99("Spread")) == ([0.5], [])


def test_nearest_rank_percentiles():
    assert [percentile([3.0, 1.0, 2.0, 4.0], rank) for rank in (0, 25, 50, 75, 99, 100)] == [
        1.0,
        1.0,
        2.0,
        3.0,
        4.0,
        4.0,
    ]
    assert percentile([], 99) is None
    assert percentile([1.0, -1.0], 50) is None  # AWS gives no percentile of negative values


def test_an_application_load_balancer_has_its_regions_hosted_zone(cloud):
    """moto answered the placeholder Z2P70J7EXAMPLE in every region."""
    target_group()
    [found] = client("elbv2").describe_load_balancers(Names=["alb-web"])["LoadBalancers"]
    assert found["CanonicalHostedZoneId"] == "Z35SXDOTRQ7X7K"


# --- what needs no fix, and the fixes themselves ---------------------------------------------------


def test_creating_an_existing_parameter_without_overwrite_is_parameter_already_exists(cloud):
    """The deploy lock relies on AWS's code; moto 5.2.5 answers it already (in-process and in server mode)."""
    ssm = client("ssm")
    ssm.put_parameter(Name="/lock", Value="a", Type="String", Overwrite=False)
    with pytest.raises(ClientError) as caught:
        ssm.put_parameter(Name="/lock", Value="b", Type="String", Overwrite=False)
    assert caught.value.response["Error"]["Code"] == "ParameterAlreadyExists"


def test_patch_moto_is_idempotent():
    fixed = ELBBackend.register_instances
    patch_moto()
    patch_moto()
    assert ELBBackend.register_instances is fixed
    for method in (ELBBackend.register_instances, AutoScalingBackend.update_attached_elbs):
        assert getattr(method, FIXED)
        assert not getattr(method.__wrapped__, FIXED, False)  # moto's own: wrapped once


def test_iam_checks_unknown_requests_by_action_for_conditioned_allows_and_scoped_denies():
    """AWS: an Allow whose condition does not hold does not apply, and a Deny applies only to the resources it
    names. moto, knowing neither the resource nor the condition keys of an EC2 or Auto Scaling request, denied
    every tag-conditioned Allow outright and applied a scoped Deny to everything: it now checks the action."""
    from moto.iam.access_control import IAMPolicyStatement, PermissionResult

    tagged = {
        "Effect": "Allow",
        "Action": ["ec2:TerminateInstances"],
        "Resource": ["arn:aws:ec2:us-east-1:*:instance/*"],
        "Condition": {"StringEquals": {"aws:ResourceTag/Env": "dev01"}},
    }
    assert IAMPolicyStatement(tagged).is_action_permitted("ec2:TerminateInstances") == PermissionResult.PERMITTED
    assert IAMPolicyStatement(tagged).is_action_permitted("ec2:StopInstances") == PermissionResult.NEUTRAL
    scoped_deny = {
        "Effect": "Deny",
        "Action": ["autoscaling:*"],
        "Resource": ["arn:aws:autoscaling:us-east-1:*:autoScalingGroup:*:autoScalingGroupName/asg-webapp-dev01-*-*"],
    }
    statement = IAMPolicyStatement(scoped_deny)
    assert statement.is_action_permitted("autoscaling:DeleteAutoScalingGroup") == PermissionResult.NEUTRAL
    everything = {**scoped_deny, "Resource": "*"}  # a Deny of every resource still denies
    assert IAMPolicyStatement(everything).is_action_permitted("autoscaling:DeleteAutoScalingGroup") == (
        PermissionResult.DENIED
    )
