"""Demo auditor: remembers the audit events other services send it.

POST /events  record one event (any JSON object)
GET /events   list the events recorded so far
GET /healthz  liveness/readiness

Port 9000 (or PORT). Standard library only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "9000"))

events: list[dict[str, object]] = []
events_lock = threading.Lock()


class AuditorHandler(BaseHTTPRequestHandler):
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
        elif self.path == "/events":
            with events_lock:
                self.send_json(200, {"events": list(events)})
        else:
            self.send_json(404, {"error": f"no page {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/events":
            self.send_json(404, {"error": f"no page {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            event = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_json(400, {"error": "the body must be JSON"})
            return
        record = {
            "received": time.strftime("%H:%M:%S"),
            "from": self.client_address[0],
            "event": event,
        }
        with events_lock:
            events.append(record)
        print(f"audit event from {self.client_address[0]}: {json.dumps(event)}", flush=True)
        self.send_json(201, record)

    def log_message(self, format: str, *args: object) -> None:
        """Events are logged in do_POST; probes and reads stay quiet."""


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", PORT), AuditorHandler)
    print(f"auditor: listening on :{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
