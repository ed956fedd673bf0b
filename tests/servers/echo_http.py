"""A tiny HTTP server for tests: answers every request with who it is, the request line, the
client address it saw and a digest of the body (Content-Length or chunked); `GET /bytes/N`
answers N bytes of a fixed pattern; `GET /slow` answers after 2 s; a request with `Upgrade: echo` is answered 101 and the
connection then echoes raw bytes; `GET /bad/KIND` answers something no intermediary can
frame (`BAD_ANSWERS`), and `/bad/late` a good beginning whose bad rest waits for a request to
`/bad/resume` (so the beginning has surely gone on first). Logs one line per request. Usage:
echo_http.py HOST PORT NAME"""

import hashlib
import http.server
import json
import socket
import sys
import threading
import time

PATTERN = bytes(range(256)) * 256
BAD_ANSWERS = {
    "/bad/chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "/bad/length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ),
    "/bad/status": b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
    "/bad/trailers": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
        + b"".join(b"X-Trailer-%d: %s\r\n" % (n, b"t" * 1000) for n in range(70))
        + b"\r\n"
    ),
}
LATE_BEGINNING = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
RESUME_LATE = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without this, Nagle and delayed ACKs add ~40 ms to
    # every keep-alive exchange.
    disable_nagle_algorithm = True

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            pieces = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                pieces.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass  # trailers
            return b"".join(pieces)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _upgrade(self) -> None:
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "echo")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        print(f"{self.server.name} upgraded {self.path}", flush=True)  # type: ignore[attr-defined]
        while data := self.connection.recv(65536):
            self.connection.sendall(data)
        self.close_connection = True

    def _bad_answer(self) -> None:
        if self.path == "/bad/late":
            self.wfile.write(LATE_BEGINNING)
            self.wfile.flush()
            RESUME_LATE.wait(30)
            self.wfile.write(b"zz\r\n")
        else:
            self.wfile.write(BAD_ANSWERS[self.path])
        self.wfile.flush()
        self.close_connection = True

    def _answer(self) -> None:
        if (self.headers.get("Upgrade") or "").lower() == "echo":
            self._upgrade()
            return
        if self.path in BAD_ANSWERS or self.path == "/bad/late":
            print(f"{self.server.name} bad answer to {self.path}", flush=True)  # type: ignore[attr-defined]
            self._bad_answer()
            return
        if self.path == "/bad/resume":
            RESUME_LATE.set()
        body = self._read_body()
        if self.path == "/slow":
            time.sleep(2)
        digest = hashlib.sha256(body).hexdigest()
        if self.command == "GET" and self.path.startswith("/bytes/"):
            size = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            for start in range(0, size, len(PATTERN)):
                self.wfile.write(PATTERN[: min(len(PATTERN), size - start)])
        else:
            payload = json.dumps(
                {
                    "server": self.server.name,  # type: ignore[attr-defined]
                    "method": self.command,
                    "path": self.path,
                    "client": self.client_address[0],
                    "length": len(body),
                    "sha256": digest,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        name = self.server.name  # type: ignore[attr-defined]
        print(
            f"{name} {self.command} {self.path} from {self.client_address[0]} "
            f"body {len(body)} {digest}",
            flush=True,
        )

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            # IPv6 alone: beside an IPv4 server on the same port, as a pod's app may be.
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        super().server_bind()


if __name__ == "__main__":
    host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if ":" in host:
        Server.address_family = socket.AF_INET6
    server = Server((host, port), Handler)
    server.daemon_threads = True
    server.name = name  # type: ignore[attr-defined]
    print(f"{name} listening on {host}:{port}", flush=True)
    server.serve_forever()
