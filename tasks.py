"""Invoke tasks: the steps of the original setup and deploy scripts. Thin by design.

Each task parses its flags and calls the `deploy` package; pre-tasks chain the steps make-style
(see deploy/chain.py). `inv --list` shows them; `inv --help TASK` documents every flag.
"""

from invoke import task

from deploy import app, groups, health, images, pipeline
from deploy import cleanup as retire
from deploy.cli import manage_local_cloud, run_step
from deploy.setup import run_setup

ENV_HELP = "Environment: env/NAME.env (default: $DEPLOY_ENV, then $NODE_ENV, then staging)."
IMAGE_HELP = "Deploy this image (ami-…) instead of building and baking one; it is never deleted."
PRIMAL_HELP = "Bake on this base image (ami-…) instead of the recorded or a newly baked primal image."
TIMEOUT_HELP = "Seconds to wait for the new group to be healthy (default: HEALTH_TIMEOUT)."
KEEP_HELP = "On a failed health wait, keep the new group for debugging instead of removing it."


@task(help={"env": ENV_HELP})
def setup(c, env=None):
    """Create the load balancer, security groups, DNS alias and ssh key pair of an environment (idempotent)."""
    run_step("setup", env, run_setup)


@task(help={"env": ENV_HELP, "primal_id": PRIMAL_HELP})
def bake_primal(c, env=None, primal_id=None):
    """Bake the base ("primal") image from SOURCE_AMI with Packer, unless one is given or recorded."""
    run_step("bake-primal", env, lambda e: images.bake_primal(e, primal_id=primal_id))


@task(help={"env": ENV_HELP})
def build_app(c, env=None):
    """Build the application: run BUILD_COMMAND in APP_DIR."""
    run_step("build-app", env, app.build_app)


@task(pre=[build_app], help={"env": ENV_HELP})
def copy_over(c, env=None):
    """Stage what the server needs (APP_FILES and the environment's settings) into tmp/appserver, fresh."""
    run_step("copy-over", env, app.copy_over)


@task(pre=[bake_primal, copy_over], help={"env": ENV_HELP, "image_id": IMAGE_HELP, "primal_id": PRIMAL_HELP})
def bake_carnivore(c, env=None, image_id=None, primal_id=None):
    """Bake the deployment ("carnivore") image: the primal image plus the staged app."""
    run_step("bake-carnivore", env, lambda e: images.bake_carnivore(e, image_id=image_id))


@task(pre=[bake_carnivore], help={"env": ENV_HELP, "image_id": IMAGE_HELP, "primal_id": PRIMAL_HELP})
def launch_asg(c, env=None, image_id=None, primal_id=None):
    """Launch a new launch template and Auto Scaling group with the image, behind the load balancer."""
    run_step("launch-asg", env, lambda e: groups.launch_group(e, image_id=image_id))


@task(help={"env": ENV_HELP, "timeout": TIMEOUT_HELP, "keep_on_failure": KEEP_HELP})
def wait_health(c, env=None, timeout=0, keep_on_failure=False):
    """Wait until every instance of the new group is healthy; remove it if it is not in time."""
    run_step("wait-health", env, lambda e: health.wait_for_new_group(e, timeout or None, keep_on_failure))


@task(
    help={
        "env": ENV_HELP,
        "keep_images": "Keep every image; only retire outdated groups and templates. Default: CLEANUP.",
    }
)
def cleanup(c, env=None, keep_images=False):
    """Retire outdated groups (detach, drain, scale to 0, delete), their launch templates/configs, and images."""
    run_step("cleanup", env, lambda e: retire.retire_outdated(e, keep_images=keep_images or None))


@task(
    pre=[launch_asg, wait_health],
    help={
        "env": ENV_HELP,
        "image_id": IMAGE_HELP,
        "primal_id": PRIMAL_HELP,
        "cleanup": "--no-cleanup keeps every image (outdated groups are still retired), as CLEANUP=no does.",
        "timeout": TIMEOUT_HELP,
        "keep_on_failure": KEEP_HELP,
    },
)
def deploy(c, env=None, image_id=None, primal_id=None, cleanup=True, timeout=0, keep_on_failure=False):
    """Bake, launch a new group, wait until it is healthy, then retire the old ones: a zero-downtime deploy."""
    run_step("finish", env, lambda e: pipeline.finish_deploy(e, keep_images=None if cleanup else True))


@task(help={"env": ENV_HELP + " Must have LOCAL_CLOUD=true (default: local).", "stop": "Stop it instead."})
def local_cloud(c, env="local", stop=False):
    """Start the embedded local cloud (a moto server on 127.0.0.1) and print its endpoint, or stop it."""
    manage_local_cloud(env, stop=stop)
