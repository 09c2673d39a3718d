"""`inv traffic`: requests through an environment's URL, one line a second, and where an environment answers.

The URL is the environment's host (`http://HOST/`, https with a certificate) on AWS. An emulated load balancer
listens elsewhere and says where in its tag `LocalCloudURL` (the embedded cloud tags every load balancer it
serves): that is the one mechanism by which the tool learns it, and it is used wherever the tool shows the URL
(`inv status --json` as `load_balancer.url`, the deploy summary, this command).

Each request counts as ok (HTTP 2xx/3xx) or failed (anything else, a timeout, a refused connection); its version
is the `X-App-Version` header, else a digest of the body. Requests are sent at RATE a second, each in a thread of
its own (a slow answer never slows the rate), for SECONDS seconds; the clock and the sleep are injected in tests.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TextIO

from deploy.errors import DeployError
from deploy.flags import MAX_RATE

URL_TAG = "LocalCloudURL"  # set by an emulator on a load balancer it serves somewhere else than its DNS name
VERSION_HEADER = "X-App-Version"
REQUEST_TIMEOUT_S = 5.0
MAX_WORKERS = 32
MAX_SECONDS = 24 * 3600


def service_url(environment: Any, summary: dict[str, Any] | None = None) -> str:
    """Where the environment answers: its load balancer's LocalCloudURL tag if it has one (the embedded cloud's
    load balancers listen on a local port), else the host's URL (no request: on AWS the name is the host's)."""
    if summary is not None:
        tags = summary.get("tags") or {}
    else:
        tags = environment.load_balancer.tags() if environment.config.local_cloud else {}
    local = tags.get(URL_TAG)
    if local:
        return str(local).rstrip("/") + "/"
    scheme = "https" if 443 in environment.load_balancer.ingress_ports() else "http"
    return f"{scheme}://{environment.names.host}/"


@dataclass
class Result:
    """One request: when it started and ended (the injected clock's seconds), ok or not, the version, the error."""

    started: float
    ended: float
    ok: bool
    status: int | None
    version: str | None
    error: str | None = None


def version_of(headers: Any, body: bytes) -> str:
    header = headers.get(VERSION_HEADER) if headers is not None else None
    return str(header) if header else "body " + hashlib.sha256(body).hexdigest()[:12]


def fetch(url: str, timeout: float = REQUEST_TIMEOUT_S) -> tuple[int | None, str | None, str | None]:
    """(status, version, error) of one GET; never raises."""
    request = urllib.request.Request(url, headers={"User-Agent": "immutable-deploy-traffic"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
            return response.status, version_of(response.headers, body), None
    except urllib.error.HTTPError as error:
        body = error.read() if error.fp is not None else b""
        return error.code, version_of(error.headers, body), f"HTTP {error.code}"
    except (OSError, ValueError) as error:
        return None, None, f"{type(error).__name__}: {error}"


@dataclass
class Traffic:
    """Requests to URL at RATE a second for SECONDS seconds (or until STOP is set); every result is kept."""

    url: str
    seconds: float = 30.0
    rate: float = 10.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    fetcher: Callable[[str], tuple[int | None, str | None, str | None]] = fetch
    stop: threading.Event = field(default_factory=threading.Event)
    results: list[Result] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self, started: float) -> None:
        status, version, error = self.fetcher(self.url)
        ok = status is not None and 200 <= status < 400 and error is None
        with self.lock:
            self.results.append(Result(started, self.clock(), ok, status, version if ok else None, error))

    def run(self, on_second: Callable[[int, list[Result]], None] | None = None) -> list[Result]:
        """Send the requests; ON_SECOND(second, results of that second) is called once a second, and at the end."""
        seconds = min(max(self.seconds, 0.0), MAX_SECONDS)
        rate = min(max(self.rate, 0.1), MAX_RATE)  # the flag accepts no more (deploy/flags.py)
        interval = 1.0 / rate
        start = self.clock()
        total = int(seconds * rate)
        reported = 0
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            for number in range(total):
                if self.stop.is_set():
                    break
                due = start + number * interval
                delay = due - self.clock()
                if delay > 0:
                    self.sleep(delay)
                pool.submit(self.one, self.clock())
                reported = self._report(start, reported, on_second, final=False)
        self._report(start, reported, on_second, final=True)
        return self.results

    def _report(
        self, start: float, reported: int, on_second: Callable[[int, list[Result]], None] | None, final: bool
    ) -> int:
        if on_second is None:
            return reported
        now_second = int(self.clock() - start)
        last = now_second + 1 if final else now_second
        for second in range(reported, last):
            with self.lock:
                done = [r for r in self.results if int(r.started - start) == second]
            on_second(second, done)
        return max(reported, last)


def summarize(results: list[Result]) -> dict[str, Any]:
    """Pure: totals, versions (with when each was first and last served), and the failures."""
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    versions: dict[str, dict[str, Any]] = {}
    for result in sorted(ok, key=lambda r: r.started):
        entry = versions.setdefault(str(result.version), {"requests": 0, "first": result.started, "last": result.ended})
        entry["requests"] += 1
        entry["last"] = max(entry["last"], result.ended)
    return {
        "requests": len(results),
        "ok": len(ok),
        "failed": len(failed),
        "versions": versions,
        "errors": dict(Counter(str(r.error or r.status) for r in failed)),
    }


def second_line(second: int, results: list[Result]) -> str:
    """Pure: `  12s  ok 10  failed 0  versions: v1 ×6, v2 ×4`."""
    ok = [r for r in results if r.ok]
    failed = len(results) - len(ok)
    counts = Counter(str(r.version) for r in ok)
    versions = ", ".join(f"{version} ×{count}" for version, count in sorted(counts.items())) or "-"
    errors = Counter(str(r.error or r.status) for r in results if not r.ok)
    why = f"  ({', '.join(f'{e} ×{n}' for e, n in errors.items())})" if errors else ""
    return f"  {second + 1:>4}s  ok {len(ok):>3}  failed {failed:>3}  versions: {versions}{why}"


def run_traffic(
    environment: Any, seconds: float, rate: float, as_json: bool, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> dict[str, Any]:
    """`inv traffic`: send the requests, print a line a second, the summary; DeployError if any request failed."""
    if seconds <= 0 or rate <= 0:
        raise DeployError("--seconds and --rate must be more than 0.")
    if rate > MAX_RATE:
        raise DeployError(f"--rate takes at most {MAX_RATE:g} requests a second (the most `inv traffic` sends).")
    summary = environment.load_balancer.describe_summary()
    if not summary.get("exists"):
        raise DeployError(
            f"Load balancer {environment.load_balancer.name} does not exist: run `inv setup --env {environment.env}`"
            " and `inv deploy` first."
        )
    url = service_url(environment, summary)
    lines = err if as_json else out
    print(f"traffic: {rate:g} requests a second to {url} for {seconds:g}s", file=lines, flush=True)
    traffic = Traffic(url, seconds=seconds, rate=rate)
    results = traffic.run(lambda second, done: print(second_line(second, done), file=lines, flush=True))
    summary = {"url": url, "seconds": seconds, "rate": rate, **summarize(results)}
    if as_json:
        out.write(json.dumps(summary, indent=2) + "\n")
    else:
        versions = ", ".join(f"{v} ({e['requests']})" for v, e in summary["versions"].items()) or "none"
        print(
            f"traffic: {summary['requests']} requests, {summary['ok']} ok, {summary['failed']} failed;"
            f" versions served: {versions}",
            file=out,
        )
    out.flush()
    if summary["failed"]:
        raise DeployError(f"{summary['failed']} of {summary['requests']} requests to {url} failed.")
    return summary
