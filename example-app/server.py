"""Tiny example web app: a health endpoint and a page showing the build version.

Standard library only, so the image needs nothing beyond python3.
"""

import html
import json
import os
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
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port = int(os.environ.get("PORT", "80"))
    server = ThreadingHTTPServer(("", port), Handler)
    print(f"example-app listening on :{port}, health at {HEALTH_PATH}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
