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
from invoke.exceptions import Exit, ParseError

from deploy.config import load_config
from deploy.environment import Environment, open_environment, release_lock
from deploy.errors import DeployError
from deploy.invocation import current_invocation

T = TypeVar("T")


class Seconds(int):
    """The kind of --timeout flags (invoke casts a flag's value with its default's type).

    A value that is not a whole number is a one-line parse error before any task runs, instead of
    the traceback invoke shows when int() fails.
    """

    def __new__(cls, value: object = 0) -> Seconds:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ParseError(f"error: --timeout takes a whole number of seconds, not {value!r}.") from None
        if number < 0:
            raise ParseError(f"error: --timeout takes a whole number of seconds (0: the default), not {number}.")
        return super().__new__(cls, number)


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
            name = load_config(env).env
            environment = opened.open(
                (name, dry_run), lambda: open_environment(env, dry_run=dry_run, out=out), release_lock
            )
            if locking and not dry_run:
                environment.lock.acquire(step)
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


def _message(text: str, environment: Environment | None) -> str:
    where = f" Logs: {environment.log.relative_dir()}" if environment is not None else ""
    return f"error: {text}{where}"


def manage_local_cloud(env: str | None, stop: bool) -> None:
    """`inv local-cloud`: start (and seed) the embedded cloud of ENV and print its endpoint, or stop it."""
    from deploy.config import load_config
    from deploy.localcloud import process as localcloud

    try:
        config = load_config(env)
        if not config.local_cloud:
            raise DeployError(f"env/{config.env}.env does not use the embedded cloud (LOCAL_CLOUD is false).")
        if stop:
            print(localcloud.stop(str(config.endpoint_url)))
            return
    except DeployError as error:
        raise Exit(f"error: {error}", code=1) from None
    environment = run_step("local-cloud", env, lambda e: e)
    print(f"embedded cloud listening at {environment.config.endpoint_url}")
    print(
        f"  use it with: AWS_ENDPOINT_URL={environment.config.endpoint_url} AWS_ACCESS_KEY_ID=testing"
        " AWS_SECRET_ACCESS_KEY=testing aws ..."
    )
