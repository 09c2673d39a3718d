"""Invoke tasks: the steps of the original setup and deploy scripts. Thin by design.

Each task parses its flags and calls its step, deploy/steps/TASK_NAME.py (views: deploy/views); the deploy's
stages are defined once, in deploy/pipeline.py, whose `needs` chain them make-style as pre-tasks
(deploy/chain.py). `inv --list` shows them; `inv --help TASK` documents every flag. A task imports its step when
it runs, so that listing tasks and reading help load no AWS library.
"""

import sys

from invoke.context import Context
from invoke.tasks import task

from deploy.flags import Count, Rate, Seconds

ENV_HELP = "Environment: env/NAME.env (default: $DEPLOY_ENV, then $NODE_ENV, then staging)."
IMAGE_HELP = "Deploy this image (ami-…) instead of building and baking one; once promoted, it is never deleted."
PRIMAL_HELP = "Bake on this base image (ami-…) instead of the recorded or a newly baked primal image."
TIMEOUT_HELP = "Seconds to wait for the new group to be healthy (default: HEALTH_TIMEOUT)."
WAIT_HELP = (
    "Block until AWS has drained and terminated the outdated groups (the one kept for KEEP_PREVIOUS_SECONDS once its"
    " window is over), then delete them: the old behaviour. Polled every POLL_SECONDS, never a fixed sleep."
)
KEEP_HELP = "On a failed health wait, keep the new group for debugging instead of removing it."
HISTORY_LIMIT = Count(20)  # a --limit that is not a whole number of at least 1 is a parse error
TRAFFIC_SECONDS = Count(30)
TRAFFIC_RATE = Rate(10.0)  # requests a second, at most 1000
NO_TIMEOUT = Seconds(0)  # the default: HEALTH_TIMEOUT; a --timeout that is not a number is a parse error
DRY_RUN_HELP = "Print what would be created, changed and deleted, in order, and change nothing (AWS only gets reads)."


@task(
    help={
        "env": ENV_HELP,
        "dry_run": DRY_RUN_HELP,
        "take_over_dns": "Replace a record at the host that points elsewhere (refused otherwise: it may be live).",
    }
)
def setup(c: Context, env: str | None = None, dry_run: bool = False, take_over_dns: bool = False) -> None:
    """Create the load balancer, security groups, DNS alias and ssh key pair of an environment (idempotent)."""
    from deploy.cli import run_step
    from deploy.steps.setup import run_setup, setup_plan

    action = setup_plan if dry_run else (lambda e: run_setup(e, take_over_dns=take_over_dns))
    run_step("setup", env, action, locking=True, dry_run=dry_run)


@task(help={"env": ENV_HELP, "primal_id": PRIMAL_HELP})
def bake_primal(c: Context, env: str | None = None, primal_id: str | None = None) -> None:
    """Bake the base ("primal") image from SOURCE_AMI with Packer, unless one is given or recorded."""
    from deploy.pipeline import run_task
    from deploy.plans.stages import Request

    run_task("bake-primal", env, Request(primal_id=primal_id))


@task(help={"env": ENV_HELP})
def build_app(c: Context, env: str | None = None) -> None:
    """Build the application: run BUILD_COMMAND in APP_DIR."""
    from deploy.pipeline import run_task
    from deploy.plans.stages import Request

    run_task("build-app", env, Request())


@task(help={"env": ENV_HELP})
def copy_over(c: Context, env: str | None = None) -> None:
    """Stage what the server needs (APP_FILES and the environment's settings) into tmp/appserver/ENV/RUN."""
    from deploy.pipeline import run_task
    from deploy.plans.stages import Request

    run_task("copy-over", env, Request())


@task(help={"env": ENV_HELP, "image_id": IMAGE_HELP, "primal_id": PRIMAL_HELP})
def bake_carnivore(
    c: Context, env: str | None = None, image_id: str | None = None, primal_id: str | None = None
) -> None:
    """Bake the deployment ("carnivore") image: the primal image plus the staged app."""
    from deploy.pipeline import run_task
    from deploy.plans.stages import Request

    run_task("bake-carnivore", env, Request(image_id=image_id, primal_id=primal_id))


@task(help={"env": ENV_HELP, "image_id": IMAGE_HELP, "primal_id": PRIMAL_HELP})
def launch_asg(c: Context, env: str | None = None, image_id: str | None = None, primal_id: str | None = None) -> None:
    """Launch a new launch template and Auto Scaling group with the image, behind the load balancer."""
    from deploy.pipeline import run_task
    from deploy.plans.stages import Request

    run_task("launch-asg", env, Request(image_id=image_id, primal_id=primal_id))


@task(help={"env": ENV_HELP, "timeout": TIMEOUT_HELP, "keep_on_failure": KEEP_HELP})
def wait_health(c: Context, env: str | None = None, timeout: int = NO_TIMEOUT, keep_on_failure: bool = False) -> None:
    """Wait until every instance of the new group is healthy; remove it if it is not in time."""
    from deploy.pipeline import run_task
    from deploy.plans.stages import Request

    run_task("wait-health", env, Request(timeout_s=int(timeout) or None, keep_on_failure=keep_on_failure))


@task(help={"env": ENV_HELP})
def shift_traffic(c: Context, env: str | None = None) -> None:
    """Move the requests to the healthy new group by TRAFFIC_STEPS, judging each step; promote it, or roll back."""
    from deploy.pipeline import run_task
    from deploy.plans.stages import Request

    run_task("shift-traffic", env, Request())


@task(
    help={
        "env": ENV_HELP,
        "keep_images": "Keep every image; only retire outdated groups and templates. Default: CLEANUP.",
        "wait": WAIT_HELP,
        "dry_run": DRY_RUN_HELP,
    }
)
def cleanup(
    c: Context, env: str | None = None, keep_images: bool = False, wait: bool = False, dry_run: bool = False
) -> None:
    """Hand outdated groups to AWS (sized 0: it drains and terminates them; the one the serving group replaced at its
    window's end), delete the empty ones with their launch templates and target groups, then unused images."""
    from deploy.cli import run_step
    from deploy.steps.cleanup import cleanup as step

    action = lambda e: step(e, keep_images=keep_images or None, dry_run=dry_run, wait=wait)  # noqa: E731
    run_step("cleanup", env, action, locking=not dry_run, dry_run=dry_run)


@task(
    help={
        "env": ENV_HELP,
        "image_id": IMAGE_HELP,
        "primal_id": PRIMAL_HELP,
        "cleanup": "--no-cleanup keeps every image (outdated groups are still retired), as CLEANUP=no does.",
        "timeout": TIMEOUT_HELP,
        "keep_on_failure": KEEP_HELP,
        "wait_retirement": WAIT_HELP,
        "dry_run": DRY_RUN_HELP + " No step of the chain runs: the plan covers them all.",
    },
)
def deploy(
    c: Context,
    env: str | None = None,
    image_id: str | None = None,
    primal_id: str | None = None,
    cleanup: bool = True,
    timeout: int = NO_TIMEOUT,
    keep_on_failure: bool = False,
    wait_retirement: bool = False,
    dry_run: bool = False,
) -> None:
    """Bake, launch a new group, wait until it is healthy, give it the traffic, hand the old ones to AWS: returns
    once the new version serves (a zero-downtime deploy)."""
    from deploy.pipeline import plan_task, run_task
    from deploy.plans.stages import Request

    request = Request(
        image_id=image_id,
        primal_id=primal_id,
        timeout_s=int(timeout) or None,
        keep_on_failure=keep_on_failure,
        keep_images=None if cleanup else True,
        wait_retirement=wait_retirement,
    )
    if dry_run:
        plan_task(env, request)
        return
    run_task("finish", env, request)  # its stages ran before it, as its pre-tasks (deploy/pipeline.py)


@task(help={"env": ENV_HELP + " Must have LOCAL_CLOUD=true (default: local).", "stop": "Stop it instead."})
def local_cloud(c: Context, env: str | None = "local", stop: bool = False) -> None:
    """Start the embedded local cloud (a moto server on 127.0.0.1) and print its endpoint, or stop it."""
    from deploy.steps.local_cloud import manage_local_cloud

    manage_local_cloud(env, stop=stop)


@task(
    help={
        "env": ENV_HELP,
        "to": "Roll back to this image (ami-…); default: the most recently promoted earlier image in the history.",
        "timeout": TIMEOUT_HELP,
        "dry_run": DRY_RUN_HELP,
    }
)
def rollback(
    c: Context, env: str | None = None, to: str | None = None, timeout: int = NO_TIMEOUT, dry_run: bool = False
) -> None:
    """Put the previous good image back through the same zero-downtime path, with no build and no bake."""
    from deploy.cli import run_step
    from deploy.pipeline import rollback as step

    action = lambda e: step(e, to=to, timeout_s=timeout or None, dry_run=dry_run)  # noqa: E731
    run_step("rollback", env, action, locking=not dry_run, dry_run=dry_run)


@task(help={"env": ENV_HELP})
def unlock(c: Context, env: str | None = None) -> None:
    """Remove a stale deploy lock left by a crashed run (warns with the holder's name)."""
    from deploy.cli import run_step
    from deploy.steps.unlock import unlock as step

    run_step("unlock", env, step)


@task(help={"env": ENV_HELP, "json": "Print JSON for scripts instead of the table (shape: docs/operations.md)."})
def status(c: Context, env: str | None = None, json: bool = False) -> None:
    """Show an environment: DNS, load balancer, groups and their health, templates, images, the deploy lock."""
    from deploy.cli import run_step
    from deploy.steps.cleanup import next_run
    from deploy.views.status import show_status

    show = lambda e: show_status(e, as_json=json, out=sys.stdout, next_run=next_run)  # noqa: E731
    run_step("status", env, show, dry_run=True, out=sys.stderr)


@task(
    help={
        "env": ENV_HELP,
        "json": "Print JSON for scripts instead of the table (shape: README, the `history` task).",
        "limit": "How many of the most recent entries to show (default 20).",
    }
)
def history(c: Context, env: str | None = None, json: bool = False, limit: int = HISTORY_LIMIT) -> None:
    """Show the deploys, rollbacks and aborts of an environment, newest first, as the AWS account records them."""
    from deploy.cli import run_step
    from deploy.views.history import show_history

    action = lambda e: show_history(e, as_json=json, out=sys.stdout, limit=int(limit))  # noqa: E731
    run_step("history", env, action, dry_run=True, out=sys.stderr)


@task(
    help={
        "env": ENV_HELP,
        "yes": "Do not ask for confirmation. For production, --env production must be given as well.",
        "dry_run": DRY_RUN_HELP,
    }
)
def destroy(c: Context, env: str | None = None, yes: bool = False, dry_run: bool = False) -> None:
    """Delete everything the environment owns (DNS record, load balancer, groups, images, keys), after confirmation."""
    from deploy.cli import run_step
    from deploy.steps.destroy import refuse_unconfirmed, run_destroy

    refuse_unconfirmed(env, yes=yes, dry_run=dry_run)
    action = lambda e: run_destroy(e, yes=yes, dry_run=dry_run)  # noqa: E731
    run_step("destroy", env, action, locking=not dry_run, dry_run=dry_run)


@task(
    help={
        "env": ENV_HELP,
        "instance": "ssh into this instance (i-…) of the serving group instead of the first healthy one.",
        "print": "Only print the ssh command (on the embedded cloud too), do not run it.",
    }
)
def ssh(c: Context, env: str | None = None, instance: str | None = None, print_: bool = False) -> None:
    """Open a shell on an instance of the serving group with the environment's key from deploy/keys."""
    from deploy.cli import run_step
    from deploy.steps.ssh import run_ssh

    action = lambda e: run_ssh(e, instance, print_only=print_, out=sys.stdout)  # noqa: E731
    run_step("ssh", env, action, dry_run=True, out=sys.stderr)  # only reads: the dry-run guard holds


@task(
    help={
        "env": ENV_HELP,
        "seconds": "How long to send requests (default 30).",
        "rate": "Requests a second (default 10).",
        "json": "Print the summary as JSON on stdout (the lines a second go to stderr).",
    }
)
def traffic(
    c: Context, env: str | None = None, seconds: float = TRAFFIC_SECONDS, rate: float = TRAFFIC_RATE, json: bool = False
) -> None:
    """Send requests through the environment's URL, print ok/failed/versions each second; non-zero if any failed."""
    from deploy.cli import run_step
    from deploy.views.traffic import run_traffic

    action = lambda e: run_traffic(e, float(seconds), float(rate), as_json=json, out=sys.stdout)  # noqa: E731
    run_step("traffic", env, action, dry_run=True, out=sys.stderr if json else None)  # only reads AWS


@task(
    help={
        "env": ENV_HELP,
        "cloudformation": "Print a CloudFormation template instead: a role holding the policy, assumed by GitHub"
        " Actions through OIDC (docs/ci.md).",
        "github_repo": "With --cloudformation: OWNER/NAME, the repository whose workflows may assume the role.",
        "github_environment": "With --cloudformation: only workflow jobs of this GitHub environment may assume it.",
    }
)
def iam_policy(
    c: Context,
    env: str | None = None,
    cloudformation: bool = False,
    github_repo: str | None = None,
    github_environment: str | None = None,
) -> None:
    """Print the least-privilege IAM policy (JSON) this environment needs: the tool's and Packer's calls."""
    from invoke.exceptions import Exit

    from deploy.errors import DeployError
    from deploy.steps.iam_policy import iam_policy_text

    try:
        text = iam_policy_text(env, cloudformation, github_repo, github_environment)
    except DeployError as error:
        raise Exit(f"error: iam-policy: {error}", code=1) from None
    print(text)


@task(
    help={
        "env": ENV_HELP,
        "run": "The run whose report to give: its log folder's name (deploy/log/ENV/…) or its start (20261205T10).",
    }
)
def report(c: Context, env: str | None = None, run: str | None = None) -> None:
    """Print the path of a deploy's report.html (the newest run's by default): its stages and traffic steps."""
    from deploy.views.run_report import report_path

    print(report_path(env, run))
