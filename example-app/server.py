"""Tiny example web app: a health endpoint and a page showing the build version.

Standard library only, so the image needs nothing beyond python3. Every answer carries the build's version
in an X-App-Version header. On SIGTERM it stops accepting and finishes the requests in flight.

A bad release on purpose (its environment, from app.env): FAIL_RATE (0 to 1) is the fraction of requests other
than the health check answered 500, DELAY_MS the milliseconds each of them waits first. The health check stays
fast and answers 200: the release passes its health wait and fails only real requests.
"""

import html
import json
import os
import random
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEALTH_PATH = os.environ.get("HEALTH_CHECK_PATH", "/api/status/health")


def fault(name: str, low: float, high: float) -> float:
    """A fault setting from the environment, within LOW..HIGH; unset or unreadable: none (0), said once."""
    text = os.environ.get(name, "").strip()
    try:
        value = float(text) if text else 0.0
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        print(f"example-app: ignoring {name}={text!r} (not a number from {low:g} to {high:g})", flush=True)
        return 0.0
    return value


FAIL_RATE = fault("FAIL_RATE", 0.0, 1.0)
DELAY_S = fault("DELAY_MS", 0.0, 600_000.0) / 1000


def load_version() -> dict:
    """Read version.json written by build.py; a missing file means an unbuilt dev copy."""
    try:
        return json.loads((HERE / "version.json").read_text())
    except (OSError, ValueError):
        return {"built_at": "dev", "env": "dev"}


VERSION = load_version()
# One short text per build: the build time (unique per build) and the environment it was built for.
VERSION_HEADER = f"{VERSION.get('built_at', 'dev')} {VERSION.get('env', 'dev')}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == HEALTH_PATH:
            body = json.dumps({"status": "ok", "version": VERSION}).encode()
            self.reply(200, "application/json", body)
            return
        if DELAY_S:
            time.sleep(DELAY_S)
        if FAIL_RATE and random.random() < FAIL_RATE:
            self.reply(500, "application/json", b'{"status":"failed on purpose (FAIL_RATE)"}')
        elif path == "/":
            text = html.escape(json.dumps(VERSION))
            page = f"<!doctype html><title>example-app</title><h1>example-app</h1><p>Version: {text}</p>\n"
            self.reply(200, "text/html; charset=utf-8", page.encode())
        else:
            self.reply(404, "application/json", b'{"status":"not found"}')

    def reply(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION_HEADER)
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port = int(os.environ.get("PORT", "80"))
    # HOST: every interface by default (an instance behind a load balancer); the embedded cloud gives 127.0.0.1.
    server = ThreadingHTTPServer((os.environ.get("HOST", ""), port), Handler)
    server.daemon_threads = False  # server_close() waits for the requests in flight
    # SIGTERM (systemd stopping the service, an instance shutting down): stop accepting, finish what is in flight.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    faults = f", FAIL_RATE {FAIL_RATE:g}, DELAY_MS {DELAY_S * 1000:g}" if FAIL_RATE or DELAY_S else ""
    print(f"example-app listening on :{port}, health at {HEALTH_PATH}, version {VERSION_HEADER}{faults}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("example-app stopped", flush=True)


if __name__ == "__main__":
    main()
