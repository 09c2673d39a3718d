"""The one place where a task's failure becomes a message: one paragraph, non-zero exit, no traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
    SSOTokenLoadError,
    TokenRetrievalError,
    UnauthorizedSSOTokenError,
)
from invoke.exceptions import Exit

from deploy.config import command_config
from deploy.environment import Environment, open_environment, release_lock
from deploy.errors import DeployError
from deploy.invocation import current_invocation

T = TypeVar("T")


EXPIRED = {
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
}


def run_step(
    step: str,
    env: str | None,
    action: Callable[[Environment], T],
    locking: bool = False,
    dry_run: bool = False,
    out: TextIO | None = None,
) -> T:
    """Open the environment, run ACTION as step STEP, and turn every expected failure into a clear exit.

    LOCKING steps change the environment: they take (or keep) its deploy lock first, which the
    executor releases when the run ends, however it ends. A DRY_RUN step writes nothing (its AWS
    clients refuse writes), so it takes no lock. OUT: where progress lines go (default stdout).
    """
    environment: Environment | None = None
    try:
        with current_invocation() as opened:
            name = command_config(env).env
            environment = opened.open(
                (name, dry_run), lambda: open_environment(env, dry_run=dry_run, out=out), release_lock
            )
            if locking and not dry_run:
                environment.lock.acquire(step, command=opened.command)
            with environment.log.step_context(step):
                return action(environment)
    except DeployError as error:
        raise Exit(_message(f"{step}: {error}", environment), code=1) from None
    except (
        NoCredentialsError,
        TokenRetrievalError,
        UnauthorizedSSOTokenError,
        SSOTokenLoadError,
        CredentialRetrievalError,
        ProfileNotFound,
    ) as error:
        if isinstance(error, ProfileNotFound):
            raise Exit(f"error: {error}. Fix AWS_PROFILE, or try the embedded cloud with --env local.", 1) from None
        raise Exit(
            "error: no usable AWS credentials. Configure them (aws configure, AWS_PROFILE, aws sso login),"
            " or try the embedded local cloud with --env local.",
            code=1,
        ) from None
    except NoRegionError:
        raise Exit("error: no AWS region: set AWS_REGION in the env file.", code=1) from None
    except EndpointConnectionError as error:
        raise Exit(_message(f"{step}: cannot reach {error.kwargs.get('endpoint_url')}.", environment), 1) from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        text = error.response.get("Error", {}).get("Message", "")
        if code in EXPIRED:
            raise Exit(f"error: AWS refused the credentials ({code}): refresh them and retry.", code=1) from None
        operation = getattr(error, "operation_name", "a call")
        raise Exit(_message(f"{step}: AWS refused {operation}: {code}: {text}", environment), code=1) from None
    except BotoCoreError as error:  # timeouts, waiters and other faults of the AWS client itself
        raise Exit(_message(f"{step}: the AWS client failed: {error}", environment), code=1) from None
    except KeyboardInterrupt:
        raise Exit(_message(f"{step}: interrupted.", environment), code=130) from None
    except OSError as error:  # a local fault: a full disk, an unwritable or missing folder
        where = f" ({error.filename})" if error.filename else ""
        raise Exit(
            _message(
                f"{step}: a local file could not be written or read{where}: {error.strerror or error}.", environment
            ),
            code=1,
        ) from None


def _message(text: str, environment: Environment | None) -> str:
    where = f" Logs: {environment.log.relative_dir()}" if environment is not None else ""
    return f"error: {text}{where}"
