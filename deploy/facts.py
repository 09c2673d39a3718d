"""What one run has read of the account, read once and passed on (issue 13: every request counts).

A fact is read the first time a step needs it and remembered for the rest of the invocation, which every task of
a pre-task chain shares (`inv deploy` = build-app … wait-health + finish): the load balancer, the environment's
groups and images, its network. Whoever changes a fact in AWS tells the memo what it is now (`put`) or that it
must be read again (`forget`), so a later step never decides from a stale copy of the tool's own writes. Polls
never go through it: a poll exists to see a change that someone else (AWS) made.

The keys are the constants below, one per fact, so a reader finds every reader and writer of a fact by name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

LOAD_BALANCER = "load-balancer"  # the load balancer's description (None: it does not exist)
TARGET_GROUP = "target-group"  # an application load balancer's target group (None: it does not exist)
GROUPS = "groups"  # the environment's Auto Scaling groups (list[Group])
IMAGES = "images"  # the environment's images, every role (list of EC2 image descriptions)
SUBNETS = "subnets"  # the subnets the environment runs in
SECURITY_GROUPS = "security-groups"  # the environment's security groups by name
OFFERED_ZONES = "offered-zones"  # the zones that offer INSTANCE_TYPE
HOSTED_ZONE = "hosted-zone"  # the Route 53 zone of DOMAIN
GROUP_HEALTH = "group-health"  # {group name: GroupHealth} as the last poll of this run measured it


class Facts:
    """A run's memo of facts read from the account; safe to share between the threads of one run."""

    def __init__(self) -> None:
        self._known: dict[str, Any] = {}
        self._lock = threading.RLock()

    def once(self, key: str, read: Callable[[], T]) -> T:
        """The fact KEY: remembered, or read now with READ (and remembered, None included)."""
        with self._lock:
            if key not in self._known:
                self._known[key] = read()
            value: T = self._known[key]  # what READ returned, for this key
            return value

    def put(self, key: str, value: Any) -> None:
        """The fact KEY is now VALUE: this run changed it in AWS and knows the result."""
        with self._lock:
            self._known[key] = value

    def update(self, key: str, change: Callable[[Any], Any]) -> None:
        """The fact KEY, if known, is now CHANGE(what it was): read and written under one lock (threads of one run
        retire groups at once)."""
        with self._lock:
            if key in self._known:
                self._known[key] = change(self._known[key])

    def get(self, key: str, default: Any = None) -> Any:
        """The fact KEY if this run knows it, without reading it."""
        with self._lock:
            return self._known.get(key, default)

    def forget(self, *keys: str) -> None:
        """This run changed these facts in a way it does not know in full: read them again when needed."""
        with self._lock:
            for key in keys:
                self._known.pop(key, None)

    def knows(self, key: str) -> bool:
        with self._lock:
            return key in self._known
