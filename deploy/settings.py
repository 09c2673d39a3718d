"""Every key an env file may set: how its value is read and checked, and what it means (docs/configuration.md)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from deploy.traffic_values import TRAFFIC_HELP, alarm_names, number_between, traffic_steps

# Letters, digits and hyphens: what load balancer, target group and DNS label names accept.
NAME_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")
ROOT = Path(__file__).resolve().parent.parent  # scripts are named relative to the repository root


def _text(value: str) -> str:
    return value


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError("must be a whole number") from None


def _positive(value: str) -> int:
    number = _integer(value)
    if number < 1:
        raise ValueError("must be 1 or more")
    return number


def _non_negative(value: str) -> int:
    number = _integer(value)
    if number < 0:
        raise ValueError("must be 0 or more")
    return number


# Upper bounds, refused beyond before any AWS call (an absurd value would reach AWS, overflow a timer, or
# wait for ever). Documented in the configuration table (docs/configuration.md).
MAX_CAPACITY_LIMIT = 1000  # instances in one group
MAX_DURATION_S = 86400  # a day: every timeout
MAX_POLL_S = 3600  # an hour between two polls


def _bounded(low: int, high: int, unit: str = "") -> Callable[[str], int]:
    """A whole number from LOW to HIGH (UNIT named in the message)."""

    def check(value: str) -> int:
        number = _integer(value)
        if number < low:
            raise ValueError(f"must be {low} or more")
        if number > high:
            raise ValueError(f"must be at most {high}{unit}")
        return number

    return check


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false (yes/no)")


def _pattern(regex: str, hint: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(hint)
        return value

    return check


def _name_part(value: str) -> str:
    if not NAME_PART.fullmatch(value):
        raise ValueError("may hold only letters, digits and inner hyphens (AWS load balancer names)")
    return value


def _domain(value: str) -> str:
    name = value.rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(NAME_PART.fullmatch(label) for label in labels):
        raise ValueError("must be a DNS domain such as example.com")
    return name


def _cidr(value: str) -> str:
    """A canonical CIDR block: 10.1.2.3/8 is refused, naming 10.0.0.0/8 (it would open far more than written)."""
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("must be a CIDR block such as 203.0.113.7/32") from None
    if str(network) != value.strip():
        address = value.split("/")[0].strip()
        single = f"{address}/{network.max_prefixlen}"
        raise ValueError(
            f"is not a canonical CIDR block: it means {network} ({network.num_addresses} addresses); write {network},"
            f" or {single} for that one address"
        )
    return str(network)


def _endpoint(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", value):
        raise ValueError("must be a URL such as http://127.0.0.1:5055")
    return value.rstrip("/")


def _path(value: str) -> str:
    # What the systemd unit and the health checks take verbatim (packer/scripts/carnivore.sh checks the same).
    if not re.fullmatch(r"/[A-Za-z0-9._~/-]*", value):
        raise ValueError(
            "must be a URL path starting with / of letters, digits and . _ ~ / - only, such as /api/status/health"
        )
    return value


def _id_list(prefix: str) -> Callable[[str], tuple[str, ...]]:
    def check(value: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in value.split(",") if item.strip())
        bad = [item for item in items if not re.fullmatch(rf"{prefix}-[0-9a-f]{{8,17}}", item)]
        if bad:
            raise ValueError(f"must be comma-separated {prefix}-… ids; not {', '.join(bad)}")
        return items

    return check


LOAD_BALANCER_KINDS = ("classic", "application")


def _load_balancer_kind(value: str) -> str:
    kind = value.strip().lower()
    if kind not in LOAD_BALANCER_KINDS:
        raise ValueError("must be application (an Application Load Balancer) or classic (the original scripts')")
    return kind


def _certificate_arn(value: str) -> str:
    if not re.fullmatch(r"arn:aws[a-z-]*:acm:[a-z]{2}(-[a-z]+)+-\d:\d{12}:certificate/[0-9a-f-]{36}", value):
        raise ValueError(
            "must be an ACM certificate ARN such as"
            " arn:aws:acm:us-east-1:123456789012:certificate/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
        )
    return value


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError("must be one line (a shell command)")
    return value


def _port(value: str) -> int:
    number = _integer(value)
    if not 1 <= number <= 65535:
        raise ValueError("must be a TCP port, 1 to 65535")
    return number


DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+")


def _packages(value: str) -> tuple[str, ...]:
    items = tuple(item for item in re.split(r"[\s,]+", value) if item)
    bad = [item for item in items if not DEBIAN_PACKAGE.fullmatch(item)]
    if bad:
        raise ValueError(f"must be Debian package names separated by spaces or commas; not {', '.join(bad)}")
    return items


def _script(value: str) -> str:
    path = ROOT / value
    try:
        path.is_file()
    except OSError as error:  # e.g. a name longer than the file system allows
        raise ValueError(f"names a file the system refuses ({error.strerror})") from None
    if not path.is_file():
        raise ValueError(f"must name a shell script relative to the repository root; {path} is not a file")
    if "{{" in str(path):  # Packer would evaluate it as a template (deploy/packer_inputs.py)
        raise ValueError("must not hold '{{' (Packer would evaluate it): rename the script or its folder")
    return value


def _time_scale(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError("must be a number such as 0.05") from None
    if not 0 < number <= 10:
        raise ValueError("must be more than 0 and at most 10 (1: AWS's own durations)")
    return number


def _globs(value: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in value.split(",") if item.strip())
    if not items:
        raise ValueError("must list at least one file pattern")
    return items


@dataclass(frozen=True)
class Setting:
    """One key an env file may set: how to read it and what it means (the reference: docs/configuration.md)."""

    key: str
    parse: Callable[[str], object]
    help: str
    required: bool = True


SETTINGS: tuple[Setting, ...] = (
    Setting("APP_NAME", _name_part, "Application name; resources are named after APP_NAME-ENV."),
    Setting(
        "AWS_ACCOUNT_ID",
        _pattern(r"\d{12}", "must be a 12-digit AWS account id such as 123456789012"),
        "The account the environment lives in: every task that writes refuses other credentials' account"
        " (one sts:GetCallerIdentity first); empty: not checked. Also scopes `inv iam-policy` to it.",
        required=False,
    ),
    Setting("DOMAIN", _domain, "DNS domain; the host is ENV.DOMAIN, or DOMAIN itself for production."),
    Setting(
        "HOSTED_ZONE_ID",
        _pattern(r"[A-Z0-9]{1,32}", "must be a Route 53 zone id such as Z0123456789ABC"),
        "Route 53 zone id; when empty, the public zone named DOMAIN is used.",
        required=False,
    ),
    Setting(
        "AWS_REGION",
        _pattern(r"[a-z]{2}(-[a-z]+)+-\d", "must be an AWS region such as eu-west-1"),
        "AWS region of every resource.",
    ),
    Setting(
        "AWS_ENDPOINT_URL",
        _endpoint,
        "Endpoint of an AWS emulator (the embedded cloud); empty for real AWS.",
        required=False,
    ),
    Setting("LOCAL_CLOUD", _boolean, "true: start and use the embedded local cloud at AWS_ENDPOINT_URL."),
    Setting(
        "INSTANCE_TYPE",
        _pattern(r"[a-z][a-z0-9-]*\.[a-z0-9]+", "must be an EC2 instance type such as t3.micro"),
        "EC2 instance type of the web servers and of the Packer builds.",
    ),
    Setting("MIN_CAPACITY", _bounded(0, MAX_CAPACITY_LIMIT), "Smallest size of the Auto Scaling group."),
    Setting("MAX_CAPACITY", _bounded(1, MAX_CAPACITY_LIMIT), "Largest size of the Auto Scaling group."),
    Setting("DESIRED_CAPACITY", _bounded(1, MAX_CAPACITY_LIMIT), "Instances a deploy launches and waits for."),
    Setting(
        "SOURCE_AMI",
        _pattern(
            r"ami-[0-9a-f]{8,17}|[A-Za-z0-9][A-Za-z0-9 ()\[\]./'@_*-]{2,127}",
            "must be an image id (ami-…) or an image name pattern",
        ),
        "Base image of the primal bake: an ami-… id, or a name pattern (newest match of SOURCE_AMI_OWNER).",
    ),
    Setting(
        "SOURCE_AMI_OWNER",
        _pattern(r"self|amazon|aws-marketplace|\d{12}", "must be self, amazon or an account id"),
        "Owner searched when SOURCE_AMI is a name pattern.",
    ),
    Setting("HEALTH_CHECK_PATH", _path, "HTTP path the load balancer checks on APP_PORT."),
    Setting(
        "LOAD_BALANCER",
        _load_balancer_kind,
        "Kind of load balancer: application (alb-NAME with target group tg-NAME) or classic (elb-NAME).",
    ),
    Setting(
        "CERTIFICATE_ARN",
        _certificate_arn,
        "ACM certificate of ENV.DOMAIN: an HTTPS listener on 443, HTTP redirected to it (application only).",
        required=False,
    ),
    Setting(
        "HEALTH_TIMEOUT",
        _bounded(1, MAX_DURATION_S, " seconds (a day)"),
        "Seconds a deploy waits for the new group to become healthy.",
    ),
    Setting("POLL_SECONDS", _bounded(1, MAX_POLL_S, " seconds (an hour)"), "Seconds between two polls of a wait."),
    Setting("SSH_CIDR", _cidr, "CIDR allowed to reach port 22 of the instances; empty: no ssh.", required=False),
    Setting(
        "VPC_ID",
        _pattern(r"vpc-[0-9a-f]{8,17}", "must be a VPC id such as vpc-0abc1234"),
        "VPC of the environment; empty: the default VPC.",
        required=False,
    ),
    Setting(
        "SUBNET_IDS",
        _id_list("subnet"),
        "Comma-separated subnets of the instances (may be private); empty: LB_SUBNET_IDS, else the default"
        " subnets of the VPC.",
        required=False,
    ),
    Setting(
        "LB_SUBNET_IDS",
        _id_list("subnet"),
        "Comma-separated subnets of the load balancer (public for an internet-facing one; an application load"
        " balancer: two zones or more, one subnet per zone); empty: SUBNET_IDS.",
        required=False,
    ),
    Setting(
        "BAKE_SUBNET_ID",
        _pattern(r"subnet-[0-9a-f]{8,17}", "must be a subnet id such as subnet-0abc1234"),
        "Subnet where Packer's build instance starts on real AWS; empty: the first instance subnet offering"
        " INSTANCE_TYPE, or the first LB_SUBNET_IDS one when the instances' subnets are not the load balancer's.",
        required=False,
    ),
    Setting("APP_DIR", _text, "Directory of the application, relative to the repository root."),
    Setting("BUILD_COMMAND", _text, "Shell command that builds the app in APP_DIR ({env} is replaced by ENV)."),
    Setting(
        "APP_FILES",
        _globs,
        "Comma-separated globs (relative to APP_DIR) of what the server needs; `dist/*` stages dist's files.",
    ),
    Setting(
        "START_COMMAND",
        _one_line,
        "Shell command that starts the app in its installed folder (it gets PORT, HEALTH_CHECK_PATH, app.env).",
    ),
    Setting("APP_PORT", _port, "Port the app listens on (PORT); the load balancer's port 80 forwards to it."),
    Setting(
        "PRIMAL_PACKAGES",
        _packages,
        "Extra Debian packages installed into the primal image (space- or comma-separated).",
        required=False,
    ),
    Setting(
        "PRIMAL_SCRIPT",
        _script,
        "Your shell script run last when the primal image is baked (relative to the repository root).",
        required=False,
    ),
    Setting(
        "CARNIVORE_SCRIPT",
        _script,
        "Your shell script run last when the deployment image is baked (relative to the repository root).",
        required=False,
    ),
    Setting(
        "LOCAL_TIME_SCALE",
        _time_scale,
        "Embedded cloud (or any AWS_ENDPOINT_URL emulator): factor applied to every AWS duration it models (boot,"
        " health checks, draining); the tool's first checks of a wait follow it.",
    ),
    Setting(
        "PRIMAL_ID",
        _pattern(r"ami-[0-9a-f]{8,17}", "must be an image id (ami-…)"),
        "Use this base image instead of baking one.",
        required=False,
    ),
    Setting(
        "IMAGE_ID",
        _pattern(r"ami-[0-9a-f]{8,17}", "must be an image id (ami-…)"),
        "Deploy this image instead of baking one.",
        required=False,
    ),
    Setting("CLEANUP", _boolean, "no: keep every image after a deploy (groups are still retired)."),
    Setting("PACKER_TIMEOUT", _bounded(1, MAX_DURATION_S, " seconds (a day)"), "Seconds one Packer build may take."),
    Setting("BUILD_TIMEOUT", _bounded(1, MAX_DURATION_S, " seconds (a day)"), "Seconds the app build may take."),
    Setting("LOG_RUNS", _positive, "Run log folders kept per environment in deploy/log/ENV; older ones are pruned."),
    Setting("RETAIN_IMAGES", _non_negative, "Earlier deployed images kept for `inv rollback` (the live one aside)."),
    Setting(
        "BAKE_SSH_CIDR",
        _cidr,
        "Address of the machine running Packer (such as 203.0.113.7/32): the only source its temporary security"
        " group lets reach the build instance's port 22 on real AWS; empty: SSH_CIDR.",
        required=False,
    ),
    Setting(
        "PRIMAL_RETAIN",
        _non_negative,
        "Newest primal images cleanup keeps (besides any a deployment image or a running bake uses).",
    ),
)
# Progressive delivery (docs/progressive-delivery.md): how a new group takes traffic, and what judges each step.
A_DAY = " seconds (a day)"
TRAFFIC_SETTINGS: tuple[Setting, ...] = (
    Setting("TRAFFIC_STEPS", traffic_steps, TRAFFIC_HELP["TRAFFIC_STEPS"]),
    Setting("STEP_SECONDS", _bounded(1, MAX_DURATION_S, A_DAY), TRAFFIC_HELP["STEP_SECONDS"]),
    Setting("MAX_ERROR_RATE", number_between(0, 100, "1 or 0.5"), TRAFFIC_HELP["MAX_ERROR_RATE"]),
    Setting("MAX_LATENCY_MS", _bounded(1, MAX_DURATION_S * 1000, " ms (a day)"), TRAFFIC_HELP["MAX_LATENCY_MS"], False),
    Setting("MIN_REQUESTS", _bounded(0, 1_000_000_000), TRAFFIC_HELP["MIN_REQUESTS"]),
    Setting("ALARM_NAMES", alarm_names, TRAFFIC_HELP["ALARM_NAMES"], required=False),
    Setting("KEEP_PREVIOUS_SECONDS", _bounded(0, MAX_DURATION_S, A_DAY), TRAFFIC_HELP["KEEP_PREVIOUS_SECONDS"]),
    # The example app's faults (example-app/server.py), staged into app.env when set: a bad release, shown locally.
    Setting("FAIL_RATE", number_between(0, 1, "0.5"), TRAFFIC_HELP["FAIL_RATE"], required=False),
    Setting("DELAY_MS", _bounded(0, 600_000, " ms (10 minutes)"), TRAFFIC_HELP["DELAY_MS"], required=False),
)
SETTINGS = SETTINGS + TRAFFIC_SETTINGS
SETTINGS_BY_KEY = {setting.key: setting for setting in SETTINGS}
