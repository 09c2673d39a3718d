"""Tiny example web app: a health endpoint and a page showing the build version.

Standard library only, so the image needs nothing beyond python3. Every answer carries the build's version
in an X-App-Version header. On SIGTERM it stops accepting and finishes the requests in flight.
"""

import html
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEALTH_PATH = os.environ.get("HEALTH_CHECK_PATH", "/api/status/health")


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
    print(f"example-app listening on :{port}, health at {HEALTH_PATH}, version {VERSION_HEADER}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        print("example-app stopped", flush=True)


if __name__ == "__main__":
    main()
