"""One environment as the steps see it: its configuration, names, AWS clients, run log and load balancer.

Opened once per invocation (deploy/invocation.py) and shared by every task of a pre-task chain, so one
`inv deploy` writes one log folder, starts the embedded cloud at most once and holds one deploy lock.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TextIO

from deploy.aws.clients import Aws
from deploy.aws.loadbalancers import LoadBalancer, load_balancer_for
from deploy.aws.lock import DeployLock
from deploy.config import Config, command_config, print_warnings
from deploy.facts import Facts
from deploy.localcloud import process as localcloud
from deploy.logs import RunLog
from deploy.naming import Names, names_for
from deploy.waiting import Waiter


@dataclass
class Environment:
    config: Config
    log: RunLog
    aws: Aws
    # Every bounded wait of a run polls on this clock; tests move a fake one instead of sleeping.
    clock: Callable[[], float] = field(default=time.monotonic)
    sleep: Callable[[float], None] = field(default=time.sleep)
    # What this run has read of the account, read once and passed on to every later step (deploy/facts.py).
    facts: Facts = field(default_factory=Facts)

    @property
    def env(self) -> str:
        return self.config.env

    @cached_property
    def names(self) -> Names:
        return names_for(self.config)

    @cached_property
    def load_balancer(self) -> LoadBalancer:
        return load_balancer_for(self.aws, self.names, self.config, self.say)

    @cached_property
    def lock(self) -> DeployLock:
        return DeployLock(self.aws.client("ssm"), self.names.stack, self.env, say=self.say)

    def say(self, message: str) -> None:
        self.log.say(message)

    def aws_seconds(self, seconds: float) -> float:
        """A duration AWS takes (a health check interval, connection draining), as this cloud runs it: an emulator
        (AWS_ENDPOINT_URL, the embedded cloud's or another) models AWS's durations LOCAL_TIME_SCALE times faster.
        Only the first check of a wait comes after it: a wrong factor costs polls, never a wrong answer."""
        return self.config.aws_seconds(seconds)

    def waiter(self, timeout_s: float, stop: threading.Event | None = None) -> Waiter:
        """A bounded wait on this run's clock, polling every POLL_SECONDS; STOP ends it early from another thread."""
        return Waiter(timeout_s, float(self.config.poll_seconds), clock=self.clock, sleep=self.sleep, stop=stop)


def open_environment(env: str | None, dry_run: bool = False, out: TextIO | None = None) -> Environment:
    """Load and validate the configuration, then make the cloud reachable: nothing touches AWS before.

    DRY_RUN: the AWS clients refuse every write; otherwise the credentials' account is checked first
    (AWS_ACCOUNT_ID). The embedded cloud is started here but seeded only by the step
    that needs what it seeds (deploy/localcloud/seed.py): setup the hosted zone, bake-primal the base image.
    OUT: where progress lines go (stderr when stdout carries JSON or a command).
    """
    config = command_config(env)
    print_warnings(config, sys.stderr)
    log = RunLog(config.env, out=out, keep=config.log_runs, read_only=dry_run)
    aws = Aws(config, log, dry_run=dry_run)
    aws.check_credentials()
    environment = Environment(config=config, log=log, aws=aws)
    if config.local_cloud:
        localcloud.start(str(config.endpoint_url), say=log.say, time_scale=config.local_time_scale)
    if not dry_run:  # a task that writes: the account first (AWS_ACCOUNT_ID), before any other call
        aws.check_account()
    return environment


def release_lock(environment: Environment) -> None:
    """Release the deploy lock if this run took it; a failure to release never hides the run's own outcome."""
    if "lock" in environment.__dict__:
        try:
            environment.lock.release()
        except Exception as error:
            print(f"warning: could not release the deploy lock of {environment.env}: {error}", file=sys.stderr)
