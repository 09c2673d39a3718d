"""The one bounded wait of the tool: poll a check until it is done, a deadline passes, or a stop is asked.

Clock and sleep are injected, so that tests advance a number instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Waiter:
    """Polls a check until it is done or a deadline passes: bounded in time and in number of polls."""

    timeout_s: float
    poll_s: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    stop: threading.Event | None = None  # set from another thread: give up at the next poll

    def until(
        self,
        check: Callable[[], tuple[bool, str]],
        progress: Callable[[str], None] = lambda _: None,
        first_after: float = 0.0,
    ) -> tuple[bool, str]:
        """(done, last status): CHECK answers (done, a status line); PROGRESS sees every status line.
        FIRST_AFTER: seconds before the first check, when AWS cannot be done sooner (a check then is a wasted
        request); bounded by the timeout, and cut short by STOP."""
        deadline = self.clock() + self.timeout_s
        max_polls = int(self.timeout_s / self.poll_s) + 2
        status = ""
        waited, first_after = 0.0, min(first_after, self.timeout_s)
        while waited < first_after and not (self.stop is not None and self.stop.is_set()):
            step = min(self.poll_s, first_after - waited)  # a stop is seen within a poll interval
            self.sleep(step)
            waited += step
        for _ in range(max_polls):
            done, status = check()
            progress(status)
            if done:
                return True, status
            remaining = deadline - self.clock()
            if remaining <= 0 or (self.stop is not None and self.stop.is_set()):
                break
            self.sleep(min(self.poll_s, remaining))
        return False, status
