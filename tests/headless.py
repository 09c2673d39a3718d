"""A real browser for tests: Debian's Chromium, headless, driven over its DevTools protocol on a pipe.

`open_page(url)` loads a page and answers what it shows: `page.evaluate("document.body.innerText")` is the text as
rendered (CSS applied: hidden elements are not in it), and `page.requests` every URL the page fetched (the document
itself included). No port is opened: the protocol runs on the two pipes Chromium reads and writes
(`--remote-debugging-pipe`, file descriptors 3 and 4, messages ended by a NUL byte).

Chromium is installed by `./run` (Debian's `chromium`); a test that needs it fails, naming that, when it is missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# The flags this machine's browser tests use (the machine's notes): no sandbox as root, and nothing reaching out
# to the network at start (closed here).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
)
TIMEOUT_S = 30.0


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is missing: `./run install` installs Debian's chromium (apt-get install chromium)"
    return found


class Page:
    """One page of a headless Chromium, spoken to over the DevTools protocol."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd, self.read_fd = write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.session: str | None = None
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.write_fd, json.dumps(message).encode() + b"\0")
        while True:
            answer = self.receive()
            if answer.get("id") == self.next_id:
                assert "error" not in answer, (method, answer["error"])
                return dict(answer.get("result", {}))
            self.events.append(answer)

    def receive(self, timeout: float = TIMEOUT_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, "Chromium did not answer in time"
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 65536)
                assert chunk, "Chromium closed its pipe"
                self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return dict(json.loads(message))

    def wait_for(self, method: str) -> dict[str, Any]:
        for seen in self.events:
            if seen.get("method") == method:
                return seen
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            event = self.receive(deadline - time.monotonic())
            self.events.append(event)
            if event.get("method") == method:
                return event
        raise AssertionError(f"no {method} from Chromium")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript EXPRESSION in the page (JSON-able)."""
        answer = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return answer["result"].get("value")

    @property
    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]


def _high(fd: int) -> int:
    """FD moved above 9: duplicating the two pipes onto 3 and 4 must not overwrite one with the other."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


@contextmanager
def open_page(url: str) -> Iterator[Page]:
    """URL loaded in a fresh headless Chromium (its own empty profile), closed at the end."""
    to_browser_read, to_browser_write = (_high(fd) for fd in os.pipe())
    from_browser_read, from_browser_write = (_high(fd) for fd in os.pipe())
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [chromium(), *FLAGS, f"--user-data-dir={profile}", "about:blank"]

        def protocol_fds() -> None:  # in the child, before exec: Chromium reads the protocol on 3, writes on 4
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        process = subprocess.Popen(
            command,
            pass_fds=(3, 4, to_browser_read, from_browser_write),
            preexec_fn=protocol_fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        page = Page(to_browser_write, from_browser_read)
        try:
            target = page.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            page.session = page.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            page.send("Network.enable")
            page.send("Page.enable")
            page.send("Page.navigate", {"url": url})
            page.wait_for("Page.loadEventFired")
            yield page
        finally:
            os.close(to_browser_write)
            os.close(from_browser_read)
            # The browser and its helpers (renderer, zygote) are the process group it leads (its own session).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
