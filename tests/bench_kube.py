"""`make bench`, Kubernetes part: podside exec --target on the local sandbox, against direct
connections made from inside the same pod and against `kubectl port-forward` to the same pod,
in the same run."""

from __future__ import annotations

import contextlib
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator

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
        # What a session through Kubernetes imports (the kube modules load lazily).
        imports = "import podside.exec_command, podside.kube.connect, podside.kube.agent"
        plain = min(_timed([PYTHON, "-c", imports]) for _ in range(3))
        python_alone = min(_timed([PYTHON, "-c", "pass"]) for _ in range(3))
        kubectl_get = min(
            _timed(["kubectl", "--context", "podside-sandbox", "get", "pod", "podside-bench"])
            for _ in range(3)
        )
        report(
            f"- `podside exec --target pod/... -- true`, whole command: first session (new "
            f"ephemeral agent) {cold:.2f} s, later sessions (agent reused) "
            f"**{statistics.median(warm):.2f} s** median (goal ≤ 0.8 s); of which Python start-up "
            f"and imports {plain:.2f} s; beside it `python -c pass` {python_alone:.2f} s and "
            f"`kubectl get pod` {kubectl_get:.2f} s"
        )
        rtt = lambda output: statistics.median(float(v) for v in output.split())  # noqa: E731
        with kubectl_port_forward("pod/podside-bench", 9000) as local_port:
            direct_rtt = rtt(
                subprocess.run(
                    [*on_pod_network, PYTHON, BLAST, "pingpong", ip, "9000", "2000"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            tunnelled_rtt = rtt(_podside(PYTHON, BLAST, "pingpong", ip, "9000", "2000").stdout)
            kubectl_rtt = rtt(_local(BLAST, "pingpong", "127.0.0.1", str(local_port), "2000"))
            report(
                f"- 64-byte request/response p50: direct over the pod network {direct_rtt:.0f} µs, "
                f"through podside's tunnel {tunnelled_rtt:.0f} µs, through `kubectl port-forward` "
                f"{kubectl_rtt:.0f} µs = **{tunnelled_rtt / kubectl_rtt:.2f}x kubectl** (goal ≤ 1.0)"
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
                f"- a new tunnelled connection p50: {tunnelled_connect:.0f} µs (direct over the pod "
                f"network {direct_connect:.0f} µs; goal ≤ 1 ms: a stream on the open port-forward)"
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
            # Taken in turns, so a machine that slows down meanwhile slows both alike.
            tunnelled, through_kubectl = [], []
            for _ in range(3):
                tunnelled.append(
                    float(_podside(PYTHON, BLAST, "download", ip, "9000", str(size)).stdout)
                )
                through_kubectl.append(
                    float(_local(BLAST, "download", "127.0.0.1", str(local_port), str(size)))
                )
            podside_rate = size / MIB / min(tunnelled)
            kubectl_rate = size / MIB / min(through_kubectl)
            report(
                f"- 256 MiB download: direct over the pod network {size / MIB / direct:,.0f} MiB/s, "
                f"through podside's tunnel {podside_rate:,.0f} MiB/s = {direct / min(tunnelled):.2f}x "
                f"direct, through `kubectl port-forward` {kubectl_rate:,.0f} MiB/s: "
                f"**{podside_rate / kubectl_rate:.2f}x kubectl** (goal ≥ 1.0)"
            )
    finally:
        core.delete_namespaced_pod("podside-bench", "default", grace_period_seconds=0)


def _local(*command: str) -> str:
    return subprocess.run(
        [PYTHON, *command], capture_output=True, text=True, check=True, timeout=600
    ).stdout


@contextlib.contextmanager
def kubectl_port_forward(target: str, port: int) -> Iterator[int]:
    """`kubectl port-forward` (its default transport, SPDY inside a WebSocket); the local port."""
    process = subprocess.Popen(
        ["kubectl", "--context", "podside-sandbox", "port-forward", target, f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:  # its first line names the local port
            if found := re.match(rf"Forwarding from 127\.0\.0\.1:(\d+) -> {port}", line):
                yield int(found[1])
                break
        else:
            stderr = process.stderr.read() if process.stderr else ""
            raise RuntimeError(f"kubectl port-forward failed: {stderr}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started
