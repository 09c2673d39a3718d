"""One invocation: what one `inv` command line opened, however many tasks it runs, closed when it ends.

The executor (deploy/chain.py) opens an invocation around all the tasks of a command line; each task
asks it for its environment, so `inv setup --env X status --env X` shares what it can and, when the
command ends, every deploy lock any of its tasks took is released, whichever task took it. Kept free
of boto3 so that `inv --list` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar, cast

T = TypeVar("T")


class Invocation:
    def __init__(self, command: str = "") -> None:
        self._opened: dict[Hashable, Any] = {}
        self._closers: list[Callable[[], None]] = []
        self.command = command  # the command line's tasks ("deploy", "destroy"): named in the deploy lock

    def open(self, key: Hashable, make: Callable[[], T], close: Callable[[T], None]) -> T:
        """What MAKE made for KEY in this invocation, made once; CLOSE(it) runs when the invocation ends."""
        if key not in self._opened:
            made = make()
            self._opened[key] = made
            self._closers.append(lambda: close(made))
        return cast(T, self._opened[key])  # what MAKE made for this key

    def close(self) -> None:
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            closer()
        self._opened.clear()


_current: ContextVar[Invocation | None] = ContextVar("invocation", default=None)


@contextmanager
def invocation(command: str = "") -> Iterator[Invocation]:
    """A new invocation for the tasks run inside this block (COMMAND: the command line's tasks); closed however
    the block ends."""
    opened = Invocation(command)
    token = _current.set(opened)
    try:
        yield opened
    finally:
        _current.reset(token)
        opened.close()


@contextmanager
def current_invocation() -> Iterator[Invocation]:
    """The running invocation, or one of its own for a step called outside any (closed when it returns)."""
    running = _current.get()
    if running is not None:
        yield running
        return
    with invocation() as own:
        yield own
