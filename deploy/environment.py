"""One environment as the steps see it: its configuration, names, AWS clients, run log and load balancer.

Opened once per process and shared by every task of a pre-task chain, so one `inv deploy` writes one
log folder and starts the embedded cloud at most once.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property
from typing import TextIO

from deploy.aws.clients import Aws
from deploy.aws.loadbalancers import LoadBalancer, load_balancer_for
from deploy.aws.lock import DeployLock
from deploy.config import Config, load_config, print_warnings
from deploy.localcloud import process as localcloud
from deploy.localcloud.seed import seed
from deploy.logs import RunLog
from deploy.naming import Names, names_for
from deploy.state import State


@dataclass
class Environment:
    config: Config
    log: RunLog
    aws: Aws

    @property
    def env(self) -> str:
        return self.config.env

    @cached_property
    def names(self) -> Names:
        return names_for(self.config)

    @cached_property
    def load_balancer(self) -> LoadBalancer:
        return load_balancer_for(self.aws, self.names)

    @cached_property
    def state(self) -> State:
        return State.for_env(self.env)

    @cached_property
    def lock(self) -> DeployLock:
        return DeployLock(self.aws.client("ssm"), self.names.stack, self.env, say=self.say)

    def say(self, message: str) -> None:
        self.log.say(message)


_open: dict[str, Environment] = {}


def open_environment(env: str | None, dry_run: bool = False, out: TextIO | None = None) -> Environment:
    """Load and validate the configuration, then make the cloud reachable: nothing touches AWS before.

    DRY_RUN: the AWS clients refuse every write, and the embedded cloud is started but not seeded
    (seeding writes). OUT: where progress lines go (stderr when stdout carries JSON or a command).
    """
    config = load_config(env)
    if config.env in _open and _open[config.env].aws.dry_run == dry_run:
        return _open[config.env]
    print_warnings(config, sys.stderr)
    log = RunLog(config.env, out=out, keep=config.log_runs)  # type: ignore[arg-type]
    aws = Aws(config, log, dry_run=dry_run)
    aws.check_credentials()
    environment = Environment(config=config, log=log, aws=aws)
    if config.local_cloud:
        localcloud.start(str(config.endpoint_url), say=log.say, time_scale=config.local_time_scale)
        if not dry_run:
            seed(config, aws.ec2, aws.route53, say=log.say)
    _open[config.env] = environment
    return environment


def release_locks() -> None:
    """Release every deploy lock this process holds: called on every exit path of a task run."""
    for environment in _open.values():
        if "lock" in environment.__dict__:
            try:
                environment.lock.release()
            except Exception as error:  # releasing must never hide the run's own outcome
                print(f"warning: could not release the deploy lock of {environment.env}: {error}", file=sys.stderr)


def forget_open_environments() -> None:
    """For tests that run several tasks in one process against fresh clouds."""
    _open.clear()
