"""A tiny HTTP server for tests: answers every request with who it is, the request line and
the client address it saw; logs one line per request. Usage: echo_http.py HOST PORT NAME"""

import http.server
import json
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        payload = json.dumps(
            {
                "server": self.server.name,  # type: ignore[attr-defined]
                "method": self.command,
                "path": self.path,
                "client": self.client_address[0],
                "body": body.decode(errors="replace"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        print(f"{self.server.name} {self.command} {self.path} from {self.client_address[0]}", flush=True)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
server = http.server.ThreadingHTTPServer((host, port), Handler)
server.daemon_threads = True
server.name = name  # type: ignore[attr-defined]
print(f"{name} listening on {host}:{port}", flush=True)
server.serve_forever()
