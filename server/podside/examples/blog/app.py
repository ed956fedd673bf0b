"""Demo blog: a small JSON web service that records every write with the auditor.

GET /        list posts
POST /posts  create a post ({"title": ..., "body": ...}); the auditor hears about it
GET /healthz liveness/readiness

Reads BLOG_TITLE, AUDITOR_URL (default http://auditor:9000, a short name that the pod's DNS
search list resolves) and PORT (default 8080). Standard library only.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TITLE = os.environ.get("BLOG_TITLE", "podside demo blog")
AUDITOR_URL = os.environ.get("AUDITOR_URL", "http://auditor:9000")
PORT = int(os.environ.get("PORT", "8080"))

posts: list[dict[str, object]] = []
posts_lock = threading.Lock()


def audit(action: str, post: dict[str, object]) -> str:
    """Tell the auditor about a write; returns what happened, for the response and the log."""
    event = json.dumps({"action": action, "post_id": post["id"], "title": post["title"]}).encode()
    request = urllib.request.Request(
        f"{AUDITOR_URL}/events", data=event, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return f"audited ({response.status})"
    except OSError as error:
        return f"audit failed: {error}"


class BlogHandler(BaseHTTPRequestHandler):
    def send_json(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        if self.path == "/healthz":
            self.send_json(200, {"ok": True})
        elif self.path == "/":
            with posts_lock:
                self.send_json(200, {"title": TITLE, "posts": list(posts)})
        else:
            self.send_json(404, {"error": f"no page {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/posts":
            self.send_json(404, {"error": f"no page {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            fields = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_json(400, {"error": "the body must be JSON"})
            return
        with posts_lock:
            post = {
                "id": len(posts) + 1,
                "title": fields.get("title", "untitled"),
                "body": fields.get("body", ""),
            }
            posts.append(post)
        outcome = audit("created", post)
        print(f"  audit call to {AUDITOR_URL}/events: {outcome}", flush=True)
        self.send_json(201, {"post": post, "audit": outcome})

    def log_message(self, format: str, *args: object) -> None:
        # One line per request on stdout, so `kubectl logs` shows the traffic.
        print(
            f"{self.command} {self.path} from {self.client_address[0]} -> {args[1] if len(args) > 1 else ''}",
            flush=True,
        )


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", PORT), BlogHandler)
    print(f"{TITLE!r}: listening on :{PORT}, auditing to {AUDITOR_URL}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
