"""A watchdog for a process group the tool starts (Packer's): it ends that group when the tool dies, however."""

from __future__ import annotations

import contextlib
import subprocess
import sys

# The watchdog: a process of its own session that learns Packer's process group through a pipe. When the pipe
# closes without "done" (the tool died, however: kill -9 included), it interrupts the whole group as Ctrl-C would
# (Packer deletes what it made), and kills what is left of it after the grace. A parent-death signal alone reaches
# only `packer`, not its plugin processes, and Packer held in a silent wait may never act on it.
WATCHDOG = r"""
import os, signal, sys, time
pgid, grace = None, float(sys.argv[1])
for line in sys.stdin:
    command, _, value = line.strip().partition(" ")
    pgid = int(value) if command == "watch" else None
def members():
    found = 0
    for entry in os.listdir("/proc"):
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        found += fields[0] != "Z" and int(fields[2]) == pgid
    return found
if pgid is not None:
    deadline = time.monotonic() + grace
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except OSError:
            break
        while members() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not members():
            break
"""


class GroupWatchdog:
    """The watchdog process of one process group (`watch PGID`); `close` once the group has ended."""

    def __init__(self, grace_s: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, str(grace_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or signal to the tool's group must not end it first
            text=True,
        )

    def tell(self, line: str) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(OSError):
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()

    def close(self) -> None:
        """Packer has ended: the watchdog ends without acting."""
        self.tell("done")
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
