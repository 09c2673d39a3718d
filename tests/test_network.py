"""Networks checked before anything is created: an ALB's two zones, a missing default VPC, the zones where
INSTANCE_TYPE is offered (DescribeInstanceTypeOfferings); the subnet and public IP of a Packer build."""

from __future__ import annotations

import json
import shutil

import boto3
import pytest
from conftest import REGION, ServerSite, succeeded
from operator_env import create_zone, make_environment

from deploy.aws.network import Rule, find_security_group, rules_of
from deploy.config import ROOT
from deploy.errors import DeployError
from deploy.plans.model import Subnet
from deploy.plans.network import bake_subnet, network_refusal, offered_subnets, zone_refusal
from deploy.steps.baking import packer_network
from deploy.steps.networking import checked_network, checked_subnets
from deploy.steps.setup import run_setup

A = Subnet("subnet-a", "us-east-1a", public_ip=False)
B = Subnet("subnet-b", "us-east-1b", public_ip=True)
E = Subnet("subnet-e", "us-east-1e", public_ip=True)


def test_an_application_load_balancer_needs_two_zones() -> None:
    refused = network_refusal([A], {"us-east-1a"}, "t3.micro", "application", 2, "env/dev.env")
    assert refused is not None and "at least 2 availability zones" in refused
    assert "SUBNET_IDS in env/dev.env" in refused and "subnet-a (us-east-1a)" in refused
    assert network_refusal([A], {"us-east-1a"}, "t3.micro", "classic", 1, "env/dev.env") is None
    assert network_refusal([A, B], {"us-east-1a"}, "t3.micro", "application", 2, "env/dev.env") is None


def test_subnets_are_filtered_by_the_zones_offering_the_instance_type() -> None:
    assert offered_subnets([A, E, B], {"us-east-1a", "us-east-1b"}) == ["subnet-a", "subnet-b"]
    refused = network_refusal([A, E], {"us-east-1c"}, "t3.micro", "classic", 1, "env/dev.env")
    assert refused is not None and "INSTANCE_TYPE t3.micro is not offered" in refused


def test_a_bake_gets_a_public_ip_only_where_the_subnet_gives_none() -> None:
    assert bake_subnet([E, A, B], {"us-east-1a", "us-east-1b"}) == ("subnet-a", True)
    assert bake_subnet([E, B], {"us-east-1b"}) == ("subnet-b", False)


def nothing_created() -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    assert [g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]] in ([], ["default"])
    assert boto3.client("elbv2", region_name=REGION).describe_load_balancers()["LoadBalancers"] == []
    assert boto3.client("elb", region_name=REGION).describe_load_balancers()["LoadBalancerDescriptions"] == []
    assert ec2.describe_key_pairs()["KeyPairs"] == []


def test_setup_refuses_an_application_load_balancer_in_one_zone_before_creating_anything(cloud, tmp_path):
    create_zone()
    [subnet] = [
        s["SubnetId"]
        for s in boto3.client("ec2", region_name=REGION).describe_subnets()["Subnets"]
        if s["AvailabilityZone"] == "us-east-1a"
    ]
    environment = make_environment(tmp_path, kind="application", extra=f"SUBNET_IDS={subnet}\n")
    with pytest.raises(DeployError, match="at least 2 availability zones") as caught:
        run_setup(environment)
    assert "Add a subnet of another zone to SUBNET_IDS in" in str(caught.value)
    nothing_created()


def test_setup_refuses_an_account_without_a_default_vpc_saying_what_to_set(cloud, tmp_path):
    create_zone()
    ec2 = boto3.client("ec2", region_name=REGION)
    [default] = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    for subnet in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [default["VpcId"]]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=default["VpcId"])
    with pytest.raises(DeployError, match="has no default VPC") as caught:
        run_setup(make_environment(tmp_path))
    assert "set VPC_ID and SUBNET_IDS" in str(caught.value)
    nothing_created()


def test_the_group_subnets_leave_out_zones_without_the_instance_type(cloud, tmp_path):
    environment = make_environment(tmp_path, extra="INSTANCE_TYPE=t3.small\n")
    network = checked_network(environment)
    offered = boto3.client("ec2", region_name=REGION).describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["t3.small"]}]
    )["InstanceTypeOfferings"]
    zones = {o["Location"] for o in offered}
    assert set(network.group_subnet_ids) < set(network.subnet_ids)  # us-east-1e has no t3 (moto, as AWS)
    assert {s.zone for s in network.subnets if s.id in network.group_subnet_ids} == zones


# --- Packer's aws builder ------------------------------------------------------------------------------


def test_a_bake_on_real_aws_without_an_ssh_source_is_refused_before_packer_runs(cloud, tmp_path):
    with pytest.raises(DeployError, match="set BAKE_SSH_CIDR"):
        packer_network(make_environment(tmp_path), "20260101000000")
    nothing_created()


def test_the_aws_builder_uses_the_environments_vpc_and_a_subnet_offering_the_type(cloud, tmp_path):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    private = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.2.0/24", AvailabilityZone="us-east-1b")["Subnet"]
    ec2.modify_subnet_attribute(SubnetId=public["SubnetId"], MapPublicIpOnLaunch={"Value": True})
    extra = f"VPC_ID={vpc}\nBAKE_SSH_CIDR=203.0.113.7/32\nSSH_CIDR=198.51.100.0/24\n"

    first = make_environment(tmp_path, extra=extra + f"SUBNET_IDS={private['SubnetId']},{public['SubnetId']}\n")
    network, public_ip = packer_network(first, "20260101000000")
    [bake_group] = ec2.describe_security_groups(GroupNames=["webapp-staging-bake"])["SecurityGroups"]
    assert network == {
        "vpc_id": vpc,
        "subnet_id": private["SubnetId"],
        "security_group_id": bake_group["GroupId"],  # the tool's, tagged: Packer creates none
        "key_pair_name": "packer_webapp-staging_20260101000000",
    }
    assert public_ip is True  # the subnet gives none: the template asks for one, or the instance is unreachable
    assert bake_group["VpcId"] == vpc
    assert rules_of(bake_group["IpPermissions"]) == {Rule(22, cidr="203.0.113.7/32")}  # BAKE_SSH_CIDR first
    assert {t["Key"]: t["Value"] for t in bake_group["Tags"]}["Env"] == "staging"
    second = make_environment(tmp_path, extra=extra + f"SUBNET_IDS={public['SubnetId']},{private['SubnetId']}\n")
    assert packer_network(second, "20260101000001")[1] is False  # the subnet's own public IP: left unset


@pytest.mark.parametrize("role", ["primal", "carnivore"])
def test_the_aws_builder_opens_ssh_to_the_bake_machine_only_and_removes_packers_key(role):
    template = json.loads((ROOT / "packer" / f"{role}.json").read_text())
    [aws] = [b for b in template["builders"] if b["name"] == "aws"]
    assert "temporary_security_group_source_cidrs" not in aws  # the tool's group, opened to BAKE_SSH_CIDR only
    for builder in template["builders"]:
        assert builder["security_group_id"] == "{{user `security_group_id`}}"
        assert builder["temporary_key_pair_name"] == "{{user `key_pair_name`}}"
    assert (aws["vpc_id"], aws["subnet_id"]) == ("{{user `vpc_id`}}", "{{user `subnet_id`}}")
    assert "associate_public_ip_address" not in aws  # set (to true) by render_template only where needed
    last = template["provisioners"][-1]
    assert last["only"] == ["aws"] and "/.ssh/authorized_keys" in " ".join(last["inline"])
    assert "rm -f" in last["inline"][0]


# --- the load balancer's subnets, the instances', the bake's ---------------------------------------------------

A2 = Subnet("subnet-a2", "us-east-1a", public_ip=True)


@pytest.mark.parametrize("kind, zones", [("application", 2), ("classic", 1)])
def test_two_subnets_of_one_zone_are_refused_for_a_load_balancer(kind, zones) -> None:
    refused = zone_refusal([A, A2, B], kind, zones, "env/dev.env", "LB_SUBNET_IDS")
    assert refused is not None
    assert "at most one subnet per availability zone: subnet-a, subnet-a2 are all in us-east-1a" in refused
    assert "LB_SUBNET_IDS in env/dev.env" in refused
    assert zone_refusal([A, B], kind, zones, "env/dev.env") is None


def test_instances_in_a_zone_without_a_load_balancer_subnet_are_refused() -> None:
    zones = {"us-east-1a", "us-east-1b", "us-east-1e"}
    refused = network_refusal([A, E], zones, "t3.micro", "application", 2, "env/dev.env", [A2, B], "LB_SUBNET_IDS")
    assert refused is not None and "zones us-east-1e, where the load balancer has no subnet" in refused
    assert network_refusal([A], zones, "t3.micro", "application", 2, "env/dev.env", [A2, B], "LB_SUBNET_IDS") is None


def test_a_bake_starts_in_a_load_balancer_subnet_when_the_instances_are_private() -> None:
    offered = {"us-east-1a", "us-east-1b"}
    assert bake_subnet([A], offered, [B, A2]) == ("subnet-b", False)  # private instances: the public subnet
    assert bake_subnet([A, B], offered, [A, B]) == ("subnet-a", True)  # the same subnets: as before
    assert bake_subnet([A], offered, [B], given=E) == ("subnet-e", False)  # BAKE_SUBNET_ID


def test_every_named_subnet_is_read_at_once_and_two_of_one_zone_refused_before_anything(cloud, tmp_path):
    create_zone()
    ec2 = boto3.client("ec2", region_name=REGION)
    default = {s["AvailabilityZone"]: s for s in ec2.describe_subnets()["Subnets"]}
    vpc = default["us-east-1a"]["VpcId"]
    private = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for cidr, zone in (("172.31.96.0/20", "us-east-1a"), ("172.31.112.0/20", "us-east-1b"))
    ]
    public = [default["us-east-1a"]["SubnetId"], default["us-east-1b"]["SubnetId"]]
    extra = f"SUBNET_IDS={','.join(private)}\nLB_SUBNET_IDS={','.join(public)}\nBAKE_SUBNET_ID={public[1]}\n"
    environment = make_environment(tmp_path / "split", kind="application", extra=extra)
    network = checked_network(environment)
    assert (network.subnet_ids, network.group_subnet_ids) == (public, private)
    assert network.bake_subnet() == (public[1], False)
    assert sent(tmp_path / "split", "DescribeSubnets") == 1

    both_in_a = f"LB_SUBNET_IDS={public[0]},{private[0]}\n"
    with pytest.raises(DeployError, match="at most one subnet per availability zone") as caught:
        run_setup(make_environment(tmp_path / "one-zone", kind="application", extra=both_in_a))
    assert "LB_SUBNET_IDS in" in str(caught.value)
    nothing_created()


# --- one read of the network per run ---------------------------------------------------------------


def sent(tmp_path, operation: str) -> int:
    """How many OPERATION calls the runs logged under TMP_PATH (one file per AWS call)."""
    return len(list((tmp_path / "log").rglob(f"*-{operation}.json")))


def test_the_default_subnets_are_read_once_with_their_vpc_and_shared_by_the_steps(cloud, tmp_path):
    environment = make_environment(tmp_path, kind="application")
    subnets = checked_subnets(environment)
    network = checked_network(environment)  # launch-asg's read, later in the same run (`inv setup deploy`)
    assert (network.vpc_id, network.subnet_ids) == (subnets.vpc_id, subnets.subnet_ids)
    [default] = boto3.client("ec2", region_name=REGION).describe_vpcs(
        Filters=[{"Name": "isDefault", "Values": ["true"]}]
    )["Vpcs"]
    assert subnets.vpc_id == default["VpcId"] and len(subnets.subnet_ids) >= 2
    assert subnets.subnet_ids == sorted(subnets.subnet_ids)
    assert (sent(tmp_path, "DescribeSubnets"), sent(tmp_path, "DescribeVpcs")) == (1, 0)
    assert sent(tmp_path, "DescribeInstanceTypeOfferings") == 1  # only for the instances' check


def test_a_vpc_without_default_subnets_and_subnets_of_another_vpc_are_refused(cloud, tmp_path):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", AvailabilityZone="us-east-1a")["Subnet"]
    with pytest.raises(DeployError, match=f"VPC {vpc} has no default subnets: set SUBNET_IDS"):
        checked_subnets(make_environment(tmp_path / "no-subnets", extra=f"VPC_ID={vpc}\n"))
    # SUBNET_IDS without VPC_ID: the default VPC's, which this subnet is not in.
    with pytest.raises(DeployError, match=f"SUBNET_IDS {subnet['SubnetId']} are not in VPC vpc-"):
        checked_subnets(make_environment(tmp_path / "other-vpc", extra=f"SUBNET_IDS={subnet['SubnetId']}\n"))
    given = checked_subnets(
        make_environment(tmp_path / "given", extra=f"VPC_ID={vpc}\nSUBNET_IDS={subnet['SubnetId']}\n")
    )
    assert (given.vpc_id, given.subnet_ids) == (vpc, [subnet["SubnetId"]])


def test_both_security_groups_are_read_at_once_and_what_setup_made_of_them_is_remembered(cloud, tmp_path):
    create_zone()
    environment = make_environment(tmp_path, extra="SSH_CIDR=203.0.113.7/32\n")
    run_setup(environment)
    assert sent(tmp_path, "DescribeSecurityGroups") == 1  # NAME-lb and NAME-web, none there yet
    vpc_id = checked_subnets(environment).vpc_id
    web = find_security_group(environment, vpc_id, "webapp-staging-web")  # launch-asg's, in the same run
    assert sent(tmp_path, "DescribeSecurityGroups") == 1
    [actual] = boto3.client("ec2", region_name=REGION).describe_security_groups(GroupNames=["webapp-staging-web"])[
        "SecurityGroups"
    ]
    assert web is not None and web["GroupId"] == actual["GroupId"]
    assert rules_of(web["IpPermissions"]) == rules_of(actual["IpPermissions"])


# --- end to end: private instances behind a public load balancer --------------------------------------------------


@pytest.mark.skipif(shutil.which("packer") is None, reason="packer is not on PATH")
@pytest.mark.timeout(300)
def test_instances_in_private_subnets_behind_a_public_load_balancer_deploy_and_serve(moto_server, tmp_path):
    site = ServerSite.create(moto_server, "private", tmp_path, LOAD_BALANCER="application", HEALTH_TIMEOUT="30")
    ec2 = site.client("ec2")
    public = {
        s["AvailabilityZone"]: s["SubnetId"]
        for s in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    }
    vpc = ec2.describe_subnets(SubnetIds=[public["us-east-1a"]])["Subnets"][0]["VpcId"]
    private = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=zone)["Subnet"]["SubnetId"]
        for cidr, zone in (("172.31.96.0/20", "us-east-1a"), ("172.31.112.0/20", "us-east-1b"))
    ]
    lb_subnets = [public["us-east-1a"], public["us-east-1b"]]
    env_file = site.env_dir / "private.env"
    env_file.write_text(
        env_file.read_text(encoding="utf-8")
        + f"SUBNET_IDS={','.join(private)}\nLB_SUBNET_IDS={','.join(lb_subnets)}\n",
        encoding="utf-8",
    )
    succeeded(site.inv("setup"))
    succeeded(site.inv("deploy"))
    [group] = site.groups().values()
    assert sorted(group["VPCZoneIdentifier"].split(",")) == sorted(private)
    reservations = ec2.describe_instances(InstanceIds=[i["InstanceId"] for i in group["Instances"]])["Reservations"]
    assert {i["SubnetId"] for r in reservations for i in r["Instances"]} <= set(private)
    [balancer] = site.client("elbv2").describe_load_balancers(Names=["alb-webapp-private"])["LoadBalancers"]
    assert sorted(zone["SubnetId"] for zone in balancer["AvailabilityZones"]) == sorted(lb_subnets)
    served = json.loads(succeeded(site.inv("traffic", "--seconds", "2", "--rate", "5", "--json")))
    assert served["failed"] == 0 and served["ok"] >= 5, served


def test_a_subnet_record_is_built_from_aws_s_description() -> None:
    described = {
        "SubnetId": "subnet-a",
        "AvailabilityZone": "us-east-1a",
        "VpcId": "vpc-1",
        "MapPublicIpOnLaunch": True,
    }
    assert Subnet.from_aws(described) == Subnet("subnet-a", "us-east-1a", public_ip=True, vpc_id="vpc-1")
    assert Subnet.from_aws({"SubnetId": "subnet-b", "AvailabilityZone": "us-east-1b"}).public_ip is False
