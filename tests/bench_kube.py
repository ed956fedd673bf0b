"""`make bench`, Kubernetes part: podside exec --target on the local sandbox, against direct
connections made from inside the same pod in the same run."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Callable

from tests.topology import PYTHON, SERVERS, wait_for

BLAST = str(SERVERS / "blast.py")
MIB = 1024 * 1024

CONNECTS = r"""
import socket, sys, time
times = []
for _ in range(300):
    started = time.perf_counter()
    s = socket.create_connection((sys.argv[1], 9000))
    times.append((time.perf_counter() - started) * 1e6)
    s.close()
print(sorted(times)[len(times) // 2])
"""


def _podside(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            PYTHON,
            "-m",
            "podside",
            "exec",
            "-q",
            "--context",
            "podside-sandbox",
            "--target",
            "pod/podside-bench",
            "--",
            *command,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )


def kube(report: Callable[[str], None]) -> None:
    from kubernetes import client, config

    subprocess.run([PYTHON, "-m", "podside", "sandbox", "up"], check=True, capture_output=True)
    api = config.new_client_from_config(context="podside-sandbox")
    core = client.CoreV1Api(api)
    body = {
        "metadata": {"name": "podside-bench"},
        "spec": {
            "containers": [
                {
                    "name": "blast",
                    "image": "busybox",
                    "command": [PYTHON, BLAST, "serve", "0.0.0.0", "9000"],
                }
            ]
        },
    }
    core.create_namespaced_pod("default", body)
    try:
        wait_for(
            lambda: core.read_namespaced_pod("podside-bench", "default").status.phase == "Running",
            timeout=60,
            what="the bench pod",
        )
        pod = core.read_namespaced_pod("podside-bench", "default")
        ip = pod.status.pod_ip
        # "Direct" is a client on the pod network reaching the pod, as the node does: what a
        # laptop would get if it could route to the cluster's pods.
        from podside.sandbox.layout import StateDir

        on_pod_network = ["ip", "netns", "exec", StateDir.from_env().node_netns]
        report("## Kubernetes (podside exec --target on the sandbox, one WebSocket port-forward)")
        started = time.perf_counter()
        _podside("true")
        cold = time.perf_counter() - started
        warm = []
        for _ in range(5):
            started = time.perf_counter()
            _podside("true")
            warm.append(time.perf_counter() - started)
        plain = min(_timed([PYTHON, "-c", "import podside.exec_command"]) for _ in range(3))
        report(
            f"- `podside exec --target pod/... -- true`, whole command: first session (new "
            f"ephemeral agent) {cold:.2f} s, later sessions (agent reused) "
            f"{statistics.median(warm):.2f} s median (goal ≤ 1.5 s); of which Python start-up "
            f"and imports {plain:.2f} s"
        )
        rtt = lambda output: statistics.median(float(v) for v in output.split())  # noqa: E731
        direct_rtt = rtt(
            subprocess.run(
                [*on_pod_network, PYTHON, BLAST, "pingpong", ip, "9000", "2000"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        tunnelled_rtt = rtt(_podside(PYTHON, BLAST, "pingpong", ip, "9000", "2000").stdout)
        report(
            f"- 64-byte request/response p50: direct over the pod network {direct_rtt:.0f} µs, through "
            f"the port-forward {tunnelled_rtt:.0f} µs"
        )
        direct_connect = float(
            subprocess.run(
                [*on_pod_network, PYTHON, "-c", CONNECTS, ip],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        tunnelled_connect = float(_podside(PYTHON, "-c", CONNECTS, ip).stdout)
        report(
            f"- a new tunnelled connection p50: {tunnelled_connect:.0f} µs (direct over the pod network "
            f"{direct_connect:.0f} µs; goal ≤ 1 ms: a stream on the open port-forward)"
        )
        size = 256 * MIB
        direct = min(
            float(
                subprocess.run(
                    [*on_pod_network, PYTHON, BLAST, "download", ip, "9000", str(size)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for _ in range(2)
        )
        tunnelled = min(
            float(_podside(PYTHON, BLAST, "download", ip, "9000", str(size)).stdout)
            for _ in range(2)
        )
        report(
            f"- 256 MiB download: direct over the pod network {size / MIB / direct:,.0f} MiB/s, through "
            f"the port-forward {size / MIB / tunnelled:,.0f} MiB/s = "
            f"**{direct / tunnelled:.2f}x direct** (goal ≥ 0.10)"
        )
    finally:
        core.delete_namespaced_pod("podside-bench", "default", grace_period_seconds=0)


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started
