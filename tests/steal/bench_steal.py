"""Steal benchmarks (run as root: python -m tests.steal.bench_steal): latency of a stolen
request and of a request a filter passes to the app, both against the app answering directly
on the same keep-alive setup, and the time from SIGKILL of the agent until the app answers."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import statistics
import time
from collections.abc import Callable

from tests.steal.conftest import stealing
from tests.topology import Pod, make_pod

ROUNDS = 2000


def _p50(pod: Pod, headers: dict[str, str]) -> float:
    connection = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        connection.request("GET", "/", headers=headers)
        connection.getresponse().read()
        samples.append(time.perf_counter() - start)
    connection.close()
    return statistics.median(samples[ROUNDS // 10 :]) * 1e6


def _answers(pod: Pod) -> bool:
    try:
        with socket.create_connection((pod.pod_ip, 8080), timeout=0.2) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return b"pod-app" in sock.recv(4096)
    except OSError:
        return False


def steal(pod: Pod, report: Callable[[str], None]) -> None:
    report("## Steal (keep-alive GETs from outside the pod, 2000 rounds, p50)")
    direct = _p50(pod, {})
    with stealing(pod):
        stolen = _p50(pod, {})
    with stealing(pod, "--http-filter", "X-Dev: alice"):
        passed = _p50(pod, {})
    report(
        f"- answered by the pod's app directly {direct:.0f} µs; stolen and answered by the local "
        f"program {stolen:.0f} µs = **+{stolen - direct:.0f} µs** (goal ≤ +1 ms); not matching a "
        f"filter, passed to the app by the agent {passed:.0f} µs = **+{passed - direct:.0f} µs** "
        "(goal ≤ +100 µs)"
    )
    with stealing(pod) as program:
        assert pod.agent is not None
        start = time.perf_counter()
        os.killpg(pod.agent.pid, signal.SIGKILL)
        while not _answers(pod):
            pass
        took = (time.perf_counter() - start) * 1000
        program.process.wait(30)
    pod.agent = None
    report(
        f"- SIGKILL of the agent until the pod's app answers again: **{took:.1f} ms** (goal ≤ 50 ms)"
    )


def main() -> None:
    with make_pod() as pod:
        pod.start_agent()
        steal(pod, print)


if __name__ == "__main__":
    main()
