"""`inv local-cloud`: start (and seed) the embedded cloud of an environment and print its endpoint, or stop it."""

from __future__ import annotations

from invoke.exceptions import Exit

from deploy.cli import run_step
from deploy.config import command_config
from deploy.environment import Environment
from deploy.errors import DeployError
from deploy.localcloud import process as localcloud
from deploy.localcloud.seed import seed


def seeded(environment: Environment) -> Environment:
    """Seed the started cloud with all an account would have: other commands seed only what they need, when they
    need it; this one makes the cloud ready for any."""
    with localcloud.starting(str(environment.config.endpoint_url)):  # two at once seed one zone and one image
        seed(environment.config, environment.aws.ec2, environment.aws.route53, say=environment.say)
    return environment


def manage_local_cloud(env: str | None, stop: bool) -> None:
    """`inv local-cloud`: start (and seed) the embedded cloud of ENV and print its endpoint, or stop it."""
    try:
        config = command_config(env)
        if not config.local_cloud:
            raise DeployError(f"env/{config.env}.env does not use the embedded cloud (LOCAL_CLOUD is false).")
        if stop:
            print(localcloud.stop(str(config.endpoint_url)))
            return
    except DeployError as error:
        raise Exit(f"error: {error}", code=1) from None
    environment = run_step("local-cloud", env, seeded)
    print(f"embedded cloud listening at {environment.config.endpoint_url}")
    print(
        f"  use it with: AWS_ENDPOINT_URL={environment.config.endpoint_url} AWS_ACCESS_KEY_ID=testing"
        " AWS_SECRET_ACCESS_KEY=testing aws ..."
    )
