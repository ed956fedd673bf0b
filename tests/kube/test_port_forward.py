"""`podside port-forward` on the sandbox: local ports reaching what the pod reaches (a Service
by its short name, with the pod's DNS), many connections over one session, and every failure
one line while the forward keeps serving."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import re
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from tests.topology import PYTHON

COMMAND = (PYTHON, "-m", "podside", "port-forward", "--context", "podside-sandbox")


@contextlib.contextmanager
def port_forward(*options: str) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    """podside port-forward running, with the local ports its `Forwarding from` lines name."""
    process = subprocess.Popen(
        [*COMMAND, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        ports: list[int] = []
        wanted = sum(1 for option in options if option == "-L")
        for line in process.stdout:
            found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> ", line)
            assert found, line
            ports.append(int(found[1]))
            if len(ports) == wanted:
                break
        assert len(ports) == wanted, process.stderr.read() if process.stderr else ""
        yield process, ports
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def get(port: int, path: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as response:
        return response.status, response.read()


def test_a_service_by_its_short_name_and_many_connections_over_one_session(
    sandbox: Any,
) -> None:
    with port_forward("--target", "deployment/blog", "-L", "0:auditor:9000") as (process, ports):
        status, body = get(ports[0], "/events")
        assert status == 200 and "events" in json.loads(body)
        # 200 connections at once, all through the one session's stream multiplexing.
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(lambda _: get(ports[0], "/events")[0], range(200)))
        assert answers == [200] * 200
        assert process.poll() is None
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


def test_failures_are_one_line_each_and_the_forward_keeps_serving(sandbox: Any) -> None:
    forwards = (
        *("-L", "0:no-such-service:80"),
        *("-L", "0:127.0.0.1:1"),  # the pod's own loopback: refused there
        *("-L", "0:auditor:9000"),
        *("-L", "0:localhost:8080"),  # the pod's /etc/hosts, then the blog app in the pod
    )
    with port_forward("--target", "deployment/blog", *forwards) as (process, ports):
        missing, refused, good, own = ports
        for port in (missing, refused):
            with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
                connection.settimeout(20)
                connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
                # What a refused connection looks like here: no bytes, then a reset.
                with contextlib.suppress(ConnectionResetError):
                    assert connection.recv(100) == b""
        assert get(good, "/events")[0] == 200
        status, body = get(own, "/")
        assert status == 200 and json.loads(body)["title"] == "Staging blog", body
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert process.stderr is not None
        lines = process.stderr.read().splitlines()
    said = [line for line in lines if "no-such-service" in line or "127.0.0.1:1:" in line]
    assert said == [
        "podside: no-such-service:80: no-such-service: no such host in the pod",
        "podside: 127.0.0.1:1: the pod could not connect: Connection refused",
    ], lines


def test_user_errors_exit_before_the_cluster_is_asked(sandbox: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        for options, code, says in (
            (("-L", "auditor"), 2, "expected [[BIND:]LOCAL:]HOST:PORT"),
            (("-L", "0:auditor:99999"), 2, "is not a port"),
            (("-L", f"{busy}:auditor:9000"), 1, "Address already in use"),
            (("-L", "7001:auditor:9000", "-L", "7001:blog:80"), 2, "listen on one port"),
        ):
            started = time.monotonic()
            # A pod that does not exist: an error about it would mean the cluster was asked.
            result = subprocess.run(
                [*COMMAND, "--target", "pod/not-there", *options],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == code, result.stderr
            assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
            assert "not-there" not in result.stderr
            assert time.monotonic() - started < 30


def test_targetless_forwards_from_an_agent_pod_of_its_own(sandbox: Any) -> None:
    forward = ("-L", "0:auditor.default.svc.cluster.local:9000")  # an absolute-enough name
    with port_forward("--targetless", *forward) as (_, ports):
        status, body = get(ports[0], "/events")
        assert status == 200 and "events" in json.loads(body)
