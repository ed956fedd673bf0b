"""kubectl's own `port-forward` through the sandbox: SPDY/3.1 inside a WebSocket (kubectl's
default since 1.31) and on the upgraded connection (its fallback), with curl, concurrent
connections, a port the pod refuses and a kubectl killed with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.sandbox.conftest import pod_phase, run_pod, wait_for

# An echo server on 7000 (one thread per connection, each logged) and an HTTP server on 8080.
SERVERS = r"""
import http.server, socket, sys, threading

def echo(connection, number):
    print(f"open {number}", flush=True)
    while data := connection.recv(65536):
        connection.sendall(data)
    print(f"closed {number}", flush=True)
    connection.close()

def serve_echo():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 7000))
    listener.listen()
    number = 0
    while True:
        connection, _ = listener.accept()
        number += 1
        threading.Thread(target=echo, args=(connection, number), daemon=True).start()

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from the pod, {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

threading.Thread(target=serve_echo, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", 8080), Hello).serve_forever()
"""

TRANSPORTS = {
    "websocket": {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "true"},
    "spdy-upgrade": {"KUBECTL_PORT_FORWARD_WEBSOCKETS": "false"},
}


@pytest.fixture
def servers_pod(core: Any, namespace: str) -> tuple[str, str]:
    run_pod(
        core, namespace, "servers", [sys.executable, "-c", SERVERS], terminationGracePeriodSeconds=1
    )
    wait_for(lambda: pod_phase(core, namespace, "servers") == "Running", what="servers pod")
    return namespace, "servers"


def _log(core: Any, namespace: str) -> str:
    return str(core.read_namespaced_pod_log("servers", namespace))


class PortForward:
    """A running `kubectl port-forward`, the local ports it printed, and what it wrote."""

    def __init__(self, process: subprocess.Popen[str], ports: dict[int, int]) -> None:
        self.process = process
        self.ports = ports

    def connect(self, remote: int) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.ports[remote]), timeout=30)

    def stderr_until_exit(self, timeout: float = 30) -> str:
        _, stderr = self.process.communicate(timeout=timeout)
        return stderr


@contextlib.contextmanager
def kubectl_port_forward(
    kubeconfig: Path, namespace: str, transport: str, *remote_ports: int
) -> Iterator[PortForward]:
    process = subprocess.Popen(
        [
            "kubectl",
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            namespace,
            "port-forward",
            "pod/servers",
            *(f":{port}" for port in remote_ports),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **TRANSPORTS[transport]},
    )
    try:
        # A thread reads the lines: select() on a buffered pipe misses lines already read.
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_lines, args=(process.stdout, lines), daemon=True).start()
        ports: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(ports) < len(remote_ports):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if not line:
                process.kill()
                stderr = process.stderr.read() if process.stderr else ""
                raise AssertionError(f"kubectl port-forward did not start: {stderr}")
            if found := re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line):
                ports[int(found[2])] = int(found[1])
        yield PortForward(process, ports)
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)


def _lines(stream: IO[str] | None, lines: queue.Queue[str]) -> None:
    for line in stream or ():
        lines.put(line)
    lines.put("")


def _echo(connection: socket.socket, payload: bytes) -> bytes:
    """Sends `payload` while reading the echo, then half-closes; what came back until EOF."""
    received = bytearray()

    def read() -> None:
        while chunk := connection.recv(65536):
            received.extend(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    connection.sendall(payload)
    connection.shutdown(socket.SHUT_WR)
    reader.join(timeout=60)
    assert not reader.is_alive(), "the echo never ended"
    return bytes(received)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_curl_and_two_concurrent_connections_through_kubectl_port_forward(
    kubeconfig: Path, servers_pod: tuple[str, str], transport: str
) -> None:
    namespace, _ = servers_pod
    with kubectl_port_forward(kubeconfig, namespace, transport, 8080, 7000) as forward:
        for path in ("/first", "/second"):  # two connections, one after the other
            curl = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "--max-time",
                    "30",
                    f"http://127.0.0.1:{forward.ports[8080]}{path}",
                ],
                capture_output=True,
                text=True,
            )
            assert curl.returncode == 0, curl.stderr
            assert curl.stdout == f"hello from the pod, {path}\n"

        # Two connections at once, each with its own bytes, larger than any buffer on the way.
        payloads = [os.urandom(4 * 1024 * 1024), os.urandom(3 * 1024 * 1024 + 17)]
        connections = [forward.connect(7000), forward.connect(7000)]
        results: dict[int, bytes] = {}

        def exchange(index: int) -> None:
            results[index] = _echo(connections[index], payloads[index])

        threads = [threading.Thread(target=exchange, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert results == {0: payloads[0], 1: payloads[1]}
        assert forward.process.poll() is None, "kubectl port-forward ended"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_port_the_pod_refuses_is_the_kubelets_error_and_the_pod_keeps_serving(
    kubeconfig: Path, servers_pod: tuple[str, str], transport: str
) -> None:
    namespace, _ = servers_pod
    with kubectl_port_forward(kubeconfig, namespace, transport, 7999) as forward:
        connection = forward.connect(7999)
        assert connection.recv(1) == b""  # closed without a byte
        stderr = forward.stderr_until_exit()
    assert "an error occurred forwarding" in stderr
    assert "7999" in stderr and "connection refused" in stderr
    assert forward.process.returncode != 0  # kubectl ≥ 1.31 gives up on such an error
    with kubectl_port_forward(kubeconfig, namespace, transport, 7000) as forward:
        assert _echo(forward.connect(7000), b"still serving") == b"still serving"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kubectl_killed_closes_its_connections_in_the_pod(
    kubeconfig: Path, core: Any, servers_pod: tuple[str, str], transport: str
) -> None:
    namespace, _ = servers_pod
    with kubectl_port_forward(kubeconfig, namespace, transport, 7000) as forward:
        connection = forward.connect(7000)
        connection.sendall(b"ping")
        assert connection.recv(4) == b"ping"
        wait_for(lambda: "open 1" in _log(core, namespace), what="the pod's connection")
        forward.process.send_signal(signal.SIGKILL)
        forward.process.wait(timeout=30)
        # The sandbox sees the port-forward's connection drop and closes the pod's side.
        wait_for(lambda: "closed 1" in _log(core, namespace), what="the pod's connection closed")
        connection.close()
    with kubectl_port_forward(kubeconfig, namespace, transport, 7000) as forward:
        assert _echo(forward.connect(7000), b"again") == b"again"
