"""What the AWS access modules (deploy/aws) need of a run, and nothing more: its clients, its names and settings,
its memo of what it read (deploy/facts.py), its load balancer, where it says things, and its sleep.

A Protocol: deploy/environment.py's Environment is one (each run builds one per environment), so deploy/aws
never imports deploy/environment and the packages form no cycle (tests/test_layout.py checks it). A test may
hand any object with these members.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from deploy.aws.clients import Aws
from deploy.aws.loadbalancers import LoadBalancer
from deploy.config import Config
from deploy.facts import Facts
from deploy.naming import Names


class AwsContext(Protocol):
    aws: Aws  # the run's clients (a dry run's refuse every write)
    config: Config
    facts: Facts  # what this run read of the account, read once (polls never go through it)

    @property
    def env(self) -> str: ...

    @property
    def names(self) -> Names: ...

    @property
    def load_balancer(self) -> LoadBalancer: ...

    @property
    def sleep(self) -> Callable[[float], None]: ...

    def say(self, message: str) -> None: ...
