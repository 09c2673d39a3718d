"""What bake-primal and bake-carnivore share: one Packer build of packer/ROLE.json for an environment, and
the record of what an earlier bake made from which inputs."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from deploy.appcontract import check_user_script, local_app_tags, packer_variables
from deploy.aws.images import forget_images, image_from_inputs, input_tags, tag_image
from deploy.aws.instances import require_instance_type
from deploy.aws.leftovers import packer_leftovers, tag_snapshots
from deploy.aws.network import Rule, ensure_security_group, find_security_group, resolve_network
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.execute import carry_out
from deploy.naming import stamp
from deploy.packer import CLEANUP_GRACE_S, PackerTransientError, run_packer
from deploy.packer_inputs import render_template, render_var_file
from deploy.packer_version import check_packer
from deploy.plans.leftovers import plan_leftovers
from deploy.plans.stages import Made
from deploy.settings import ROOT
from deploy.steps.networking import checked_network

PACKER_DIR = ROOT / "packer"
DENIED_CLEANUP_MIN_S = 5.0  # on an emulator, whose AWS durations are scaled down


def template_digest(role: str) -> str:
    """A digest of packer/ROLE.json and its scripts: a changed template is a new input of the bake."""
    return files_digest(sorted(PACKER_DIR.glob(f"**/{role}*")))


def files_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def packer_builder(environment: Environment) -> str:
    # No instance of an emulator can be reached over ssh: any endpoint gets the no-ssh builder.
    return "local" if environment.config.endpoint_url else "aws"


# Packer gets a frozen copy of the run's credentials: they must outlast a whole bake, its clean-up included.
def credentials_refusal(expiry: datetime | None, now: datetime, needed_s: float, source: str) -> str | None:
    """Why credentials expiring at EXPIRY cannot be handed to a bake that may take NEEDED_S seconds, or None."""
    if expiry is None or expiry - now >= timedelta(seconds=needed_s):
        return None
    left = max(0, int((expiry - now).total_seconds() // 60))
    return (
        f"The AWS credentials this run would hand to Packer expire at {expiry.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        f" (in {left} min), before a bake may end (PACKER_TIMEOUT plus {CLEANUP_GRACE_S:g}s for Packer's clean-up:"
        f" {needed_s / 60:.0f} min): refused before anything is created. Renew them for a longer session (aws sso"
        f" login, a role session of at least {needed_s / 3600:.1f} h), or lower PACKER_TIMEOUT in {source}."
    )


def packer_credentials(environment: Environment, now: datetime | None = None) -> dict[str, str]:
    """The run's own credentials, so Packer acts as the same identity as boto3 (profiles, SSO included); temporary
    ones that would expire before the bake could end are refused, naming their expiry."""
    credentials = environment.aws.session.get_credentials()
    if credentials is None:
        return {}
    frozen = credentials.get_frozen_credentials()  # refreshes credentials that are about to expire
    expiry = getattr(credentials, "_expiry_time", None)  # botocore's RefreshableCredentials (SSO, roles)
    config = environment.config
    refusal = credentials_refusal(
        expiry, now or datetime.now(UTC), config.packer_timeout + CLEANUP_GRACE_S, config.source_of("PACKER_TIMEOUT")
    )
    if refusal:
        raise DeployError(refusal)
    values = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        values["AWS_SESSION_TOKEN"] = frozen.token
    return values


def packer_network(environment: Environment, when: str) -> tuple[dict[str, str], bool]:
    """Where a build instance starts: the environment's VPC, a subnet of it offering INSTANCE_TYPE (BAKE_SUBNET_ID
    on real AWS), the tool's security group NAME-bake (ssh only from BAKE_SSH_CIDR or SSH_CIDR, the machine running
    the bake; no rule where no instance is reached: the `local` builder) and a temporary key pair named after the
    environment: both scoped by the IAM policy. With whether the instance needs a public IP (the subnet gives
    none): only then does the template ask for one (render_template)."""
    config = environment.config
    rules: set[Rule] = set()
    if packer_builder(environment) == "aws":
        source = config.bake_ssh_cidr or config.ssh_cidr
        if not source:
            raise DeployError(
                "Packer reaches its build instance over ssh, opened only to the machine running the bake: set"
                f" BAKE_SSH_CIDR (this machine's public address, such as 203.0.113.7/32) or SSH_CIDR in"
                f" {config.source_of('BAKE_SSH_CIDR')}."
            )
        rules = {Rule(22, cidr=str(source))}
    network = checked_network(environment)
    subnet_id, public_ip = network.bake_subnet()
    name = environment.names.bake_security_group
    group_id, changes = ensure_security_group(
        environment, network.vpc_id, name, f"Packer build instances of {environment.names.stack}", rules
    )
    for change in changes:
        environment.say(f"  {change}")
    values = {
        "vpc_id": network.vpc_id,
        "subnet_id": subnet_id,
        "security_group_id": group_id,
        "key_pair_name": environment.names.packer_key_pair(when),
    }
    return values, public_ip


# A build that failed on throttling or a 5xx answer (which Packer's own retries do not cover everywhere: 1.6.6 does
# not retry its source-image lookup) is run again, after its leftovers are swept, this many times at most.
BAKE_ATTEMPTS = 4
BAKE_BACKOFF_S = 15.0  # before the second attempt; doubled each time (an emulator's time scale applies)


def sweep_bake_leftovers(environment: Environment) -> None:
    """What a failed build left (its instance, key pair, security group), before it runs again."""
    for line in carry_out(environment, plan_leftovers(packer_leftovers(environment), [])):
        environment.say(f"  swept before the next attempt: {line}")


def bake_group_to_create(environment: Environment, made: Made) -> str:
    """A dry run's: the bake security group (NAME-bake) the first bake of this run creates, or "" (it exists, or an
    earlier bake of the run creates it). Read with the environment's other security groups: no request of its own."""
    if not made.planned or made.bake_group:
        return ""
    vpc_id, _ = resolve_network(environment)
    name = environment.names.bake_security_group
    return name if find_security_group(environment, vpc_id, name) is None else ""


def bake(environment: Environment, role: str, variables: dict[str, str], inputs: dict[str, str]) -> str:
    """Run one Packer build of packer/ROLE.json and return the new image id, tagged with its INPUTS."""
    config = environment.config
    check_packer()  # an unsupported Packer, or one without the amazon plugin, is refused before anything exists
    require_instance_type(environment)
    check_user_script(config, role, say=environment.say)
    when = stamp()
    network, public_ip = packer_network(environment, when)  # refused before Packer creates anything
    builder = packer_builder(environment)
    # The template as this bake runs it, under its own name in the run's log folder.
    template = render_template(PACKER_DIR / f"{role}.json", environment.log.dir / "packer" / f"{role}.json", public_ip)
    log_path = environment.log.file_for(f"packer-{role}")
    for attempt in range(1, BAKE_ATTEMPTS + 1):
        if attempt > 1:  # new names: a failed attempt's image or key pair may still be taken
            when = stamp()
            network["key_pair_name"] = environment.names.packer_key_pair(when)
        image_name = environment.names.image(role, when)
        context = {
            "region": config.region,
            "endpoint": config.endpoint_url or "",
            "instance_type": config.instance_type,
            "image_name": image_name,
            "app_name": config.app_name,
            "env": config.env,
            "health_check_path": config.health_check_path,
            "ssh_username": "admin",
            **packer_variables(config, role),
            **network,
            **variables,
        }
        var_file = render_var_file(
            f"packer-{role}.vars.json.j2", context, environment.log.file_for(f"packer-{role}-vars", ".json")
        )
        environment.say(f"  packer build -only={builder} packer/{role}.json → {image_name}")
        try:
            image_id = run_packer(
                template,
                var_file,
                builder,
                log_path,
                on_progress=lambda line: environment.say(f"    {line}"),
                timeout_s=config.packer_timeout,
                env=packer_credentials(environment),
                # After a refused permission: Packer's cleanup as long as AWS takes to terminate its instance.
                denied_grace_s=max(DENIED_CLEANUP_MIN_S, environment.aws_seconds(CLEANUP_GRACE_S)),
            )
            break
        except PackerTransientError as error:
            if attempt == BAKE_ATTEMPTS:
                raise DeployError(f"{error} (attempt {attempt} of {BAKE_ATTEMPTS})") from None
            delay = environment.aws_seconds(BAKE_BACKOFF_S * 2 ** (attempt - 1))
            next_try = f"attempt {attempt + 1} of {BAKE_ATTEMPTS} in {delay:g}s"
            environment.say(f"  the build failed on {error.cause} (AWS: try later); {next_try}")
            sweep_bake_leftovers(environment)
            environment.sleep(delay)
    forget_images(environment)  # a new image of this environment: the run's listing of them is read again
    # The inputs as tags: any machine (a fresh clone, a CI runner) finds this image for the same inputs. On an
    # emulator the image also names the app it carries (the tool tags it: Packer would evaluate a `{{` in a value).
    app_tags = local_app_tags(config, role, context) if builder == "local" else {}
    tag_image(environment, image_id, {**input_tags(inputs), **app_tags})
    tag_snapshots(environment, image_id)  # an orphan snapshot is found by them if a deregistration is cut short
    environment.say(f"  baked {role} image {image_id} (full Packer log: {log_path})")
    return image_id


def recorded_image(environment: Environment, role: str, inputs: dict[str, str]) -> str | None:
    """The image of ROLE this environment baked from these INPUTS, still available: read from the account (its
    tags), never from a local file, so every machine decides the same."""
    return image_from_inputs(environment, role, inputs)
