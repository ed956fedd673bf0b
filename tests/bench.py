"""`make bench`: podside's costs as ratios to a baseline measured in the same run.

Every figure is printed next to its baseline; the README keeps the latest output. Nothing here
asserts a goal: timings belong in this report, not in tests that would flake on a busy machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from podside.session import AgentSession
from podside_protocol import mirror
from tests.topology import PYTHON, SERVERS, Pod, make_pod, wait_for

BLAST = str(SERVERS / "blast.py")
GIB = 1024**3
LINES: list[str] = []


def report(line: str) -> None:
    LINES.append(line)
    print(line, flush=True)


def podside(pod: Pod, *command: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *pod.podside_exec("-q"),
            "--",
            *command,
        ],
        capture_output=capture,
        text=True,
        timeout=600,
        check=True,
    )


def in_pod(pod: Pod, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pod.in_pod(*command), capture_output=True, text=True, timeout=600, check=True
    )


def best_of(runs: int, measure) -> float:  # type: ignore[no-untyped-def]
    return min(measure() for _ in range(runs))


def outgoing(pod: Pod) -> None:
    report("## Outgoing (podside exec --agent, agent in a network namespace)")
    loopback = subprocess.Popen(
        [PYTHON, BLAST, "serve", "127.0.0.1", "9001"], stdout=subprocess.PIPE
    )
    assert loopback.stdout is not None
    loopback.stdout.readline()
    try:
        plain = best_of(
            3,
            lambda: float(
                subprocess.run(
                    [PYTHON, BLAST, "download", "127.0.0.1", "9001", str(GIB)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            ),
        )
    finally:
        loopback.terminate()
    direct = best_of(
        3,
        lambda: float(
            in_pod(pod, PYTHON, BLAST, "download", pod.cluster_ip, "9000", str(GIB)).stdout
        ),
    )
    tunnelled = best_of(
        3,
        lambda: float(
            podside(pod, PYTHON, BLAST, "download", pod.cluster_ip, "9000", str(GIB)).stdout
        ),
    )
    gbit = lambda seconds: 8 * GIB / seconds / 1e9  # noqa: E731
    report(
        f"- 1 GiB single stream: plain loopback {gbit(plain):.1f} Gbit/s; direct from the pod "
        f"{gbit(direct):.1f} Gbit/s; through podside {gbit(tunnelled):.1f} Gbit/s = "
        f"**{direct / tunnelled:.2f}x direct** (goal ≥ 0.25)"
    )

    def p50(output: str) -> float:
        return statistics.median(float(v) for v in output.split())

    direct_rtt = p50(in_pod(pod, PYTHON, BLAST, "pingpong", pod.cluster_ip, "9000", "5000").stdout)
    tunnelled_rtt = p50(
        podside(pod, PYTHON, BLAST, "pingpong", pod.cluster_ip, "9000", "5000").stdout
    )
    report(
        f"- 64-byte request/response on an open connection, p50: direct {direct_rtt:.0f} µs, "
        f"through podside {tunnelled_rtt:.0f} µs = **+{tunnelled_rtt - direct_rtt:.0f} µs** "
        "(goal ≤ +100 µs)"
    )


SYSCALLS = r"""
import os, socket, sys, time
N = 3000
listener = socket.socket(); listener.bind(('127.0.0.1', 0)); listener.listen(4096)
address = listener.getsockname()
def per_call(function):
    started = time.perf_counter()
    for _ in range(N):
        function()
    return (time.perf_counter() - started) / N * 1e6
def local_connect():
    s = socket.socket(); s.connect(address); s.close(); listener.accept()[0].close()
def remote_connect():
    s = socket.create_connection((sys.argv[1], 9000)); s.sendall(bytes(8)); s.recv(1); s.close()
def open_close():
    os.close(os.open('/dev/null', os.O_RDONLY))
results = [per_call(local_connect), per_call(open_close)]
if sys.argv[1] != "-":
    results.append(per_call(remote_connect))
print(*results)
"""


def syscalls(pod: Pod) -> None:
    report("## The layer's cost per intercepted call (mean over 3000 calls)")
    plain = [
        float(v)
        for v in subprocess.run(
            [PYTHON, "-c", SYSCALLS, "-"], capture_output=True, text=True, check=True
        ).stdout.split()
    ]
    layered = [
        float(v) for v in podside(pod, PYTHON, "-c", SYSCALLS, pod.cluster_ip).stdout.split()
    ]
    direct_remote = float(in_pod(pod, PYTHON, "-c", SYSCALLS, pod.cluster_ip).stdout.split()[2])
    report(
        f"- `connect()` to a loopback listener (let through): {plain[0]:.1f} µs plain, "
        f"{layered[0]:.1f} µs under the layer = **+{layered[0] - plain[0]:.1f} µs** (goal ≤ 100 µs)"
    )
    report(
        f"- `openat()` (checked against the served files): {plain[1]:.1f} µs plain, "
        f"{layered[1]:.1f} µs under the layer = **+{layered[1] - plain[1]:.1f} µs** (goal ≤ 40 µs)"
    )
    report(
        f"- a new tunnelled TCP connection (connect in the pod first, then local): "
        f"{direct_remote:.0f} µs direct from the pod, {layered[2]:.0f} µs through podside"
    )


def _timed_loop(command: list[str]) -> float:
    return float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def startup(pod: Pod) -> None:
    report("## Program start-up under the layer (30 runs in one podside exec, per run)")
    python = os.path.realpath(shutil.which("python3", path="/usr/bin:/bin") or sys.executable)
    for name, command in (("python3 -c pass", f"{python} -c pass"), ("node -e 0", "node -e 0")):
        loop = f"start=$(date +%s%N); for i in $(seq 30); do {command}; done; echo $(( ($(date +%s%N) - start) / 30000 ))"
        plain = best_of(2, lambda script=loop: _timed_loop(["bash", "-c", script]))
        layered = best_of(2, lambda script=loop: float(podside(pod, "bash", "-c", script).stdout))
        report(
            f"- `{name}`: {plain / 1000:.1f} ms plain, {layered / 1000:.1f} ms under the layer "
            f"= **{layered / plain:.2f}x** (goal ≤ 1.30x)"
        )


SINK = r"""
import asyncio, signal, sys
count = 0
class Sink(asyncio.Protocol):
    def connection_made(self, transport): self.transport = transport
    def data_received(self, data):
        global count
        n = data.count(b'GET /')
        count += n
        self.transport.write(b'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n' * n)
async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, '0.0.0.0', int(sys.argv[1]))
    print('listening', flush=True)
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: print('count', count, flush=True))
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    await stop
asyncio.run(main())
"""

NGINX = """
worker_processes 1; daemon off; pid {dir}/nginx.pid; error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; server {{ listen {ip}:8081 reuseport; location / {{ return 200 "ok"; }} }} }}
"""


def _wrk(url: str, *options: str, connections: int = 8) -> tuple[int, float]:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", "-d5s", "--latency", *options, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", output)
    assert p50 is not None
    scale = {"us": 1.0, "ms": 1000.0, "s": 1e6}[p50.group(2)]
    return total, float(p50.group(1)) * scale


def _mirror_stats(pod: Pod) -> dict[str, int]:
    async def ask() -> dict[str, int]:
        session = AgentSession(pod.token, description="bench")
        await session.connect_tcp(pod.pod_ip, pod.agent_port)
        try:
            return await session.request(mirror.STATS)  # type: ignore[no-any-return]
        finally:
            await session.close()

    return asyncio.run(ask())


def mirroring(pod: Pod) -> None:
    report("## Mirror (nginx in the pod, wrk -c8 from outside, a local sink under podside)")
    config = pod.workdir / "nginx.conf"
    config.write_text(NGINX.format(dir=pod.workdir, ip=pod.pod_ip))
    pod.spawn(pod.in_pod("nginx", "-c", str(config)), "nginx.log")
    wait_for(
        lambda: (
            subprocess.run(["curl", "-s", f"http://{pod.pod_ip}:8081/"], capture_output=True).stdout
            == b"ok"
        ),
        what="nginx",
    )
    url = f"http://{pod.pod_ip}:8081/"
    base_ka, _ = _wrk(url)
    base_new, _ = _wrk(url, "-H", "Connection: close")
    # Latency at a light load (one connection, one request at a time), not at saturation.
    _, base_ka_p50 = _wrk(url, connections=1)
    _, base_new_p50 = _wrk(url, "-H", "Connection: close", connections=1)
    with tempfile.NamedTemporaryFile("w+") as log:
        sink = subprocess.Popen(
            [
                *pod.podside_exec("-q"),
                "--",
                PYTHON,
                "-c",
                SINK,
                "8081",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for(lambda: "listening" in Path(log.name).read_text(), what="sink")
        wait_for(lambda: _mirror_stats(pod).get("received", -1) >= 0, what="subscription")
        time.sleep(0.5)
        before = _mirror_stats(pod)
        keep_alive, _ = _wrk(url)
        new_connections, _ = _wrk(url, "-H", "Connection: close")
        light_ka, keep_alive_p50 = _wrk(url, connections=1)
        light_new, new_p50 = _wrk(url, "-H", "Connection: close", connections=1)
        sent = keep_alive + new_connections + light_ka + light_new
        children = subprocess.run(["pgrep", "-P", str(sink.pid)], capture_output=True, text=True)
        if not children.stdout.split():
            raise RuntimeError(
                "the sink stopped:\n"
                + Path(log.name).read_text()[-3000:]
                + "\nagent:\n"
                + pod.log("agent.log")[-3000:]
            )
        child = int(children.stdout.split()[0])

        def sink_count() -> int:
            if sink.poll() is not None:
                raise RuntimeError(
                    "the sink stopped:\n"
                    + Path(log.name).read_text()[-3000:]
                    + "\nagent:\n"
                    + pod.log("agent.log")[-3000:]
                )
            os.kill(child, signal.SIGUSR1)
            time.sleep(0.3)
            return int(Path(log.name).read_text().split("count")[-1].split()[0])

        # Let the local program work through what is still queued for it.
        counts = [sink_count()]
        while len(counts) < 3 or counts[-1] != counts[-3]:
            time.sleep(1)
            counts.append(sink_count())
        mirrored = counts[-1]
        after = _mirror_stats(pod)
        sink.send_signal(signal.SIGTERM)
        sink.wait(20)
    dropped = after["dropped"] - before["dropped"]
    report(
        f"- keep-alive: {keep_alive / 5:,.0f} req/s served by the pod while mirrored "
        f"({base_ka / 5:,.0f} unmirrored); new connections: {new_connections / 5:,.0f} req/s "
        f"({base_new / 5:,.0f} unmirrored)"
    )
    report(
        f"- the agent followed {after['connections'] - before['connections']:,} connections: "
        f"packets dropped by its socket **{dropped}**, bytes given up in gaps "
        f"**{after['skipped_bytes'] - before['skipped_bytes']}**"
    )
    behind = (after["skipped_connections"] - before["skipped_connections"]) + (
        after["overflowed_connections"] - before["overflowed_connections"]
    )
    report(
        f"- the local program (a Python asyncio sink under the layer, sharing the 2 cores) "
        f"received **{mirrored:,} of {sent:,}** requests; {behind:,} connections were dropped "
        "for it because it fell behind (the pod is never slowed to wait for it)"
    )
    report(
        f"- the pod app's own latency p50 at light load (1 connection) while mirrored: keep-alive {keep_alive_p50:.0f} µs vs "
        f"{base_ka_p50:.0f} µs = **{keep_alive_p50 / base_ka_p50:.2f}x**; new connections "
        f"{new_p50:.0f} µs vs {base_new_p50:.0f} µs = **{new_p50 / base_new_p50:.2f}x** (goal ≤ 1.05x)"
    )


def main() -> int:
    if os.geteuid() != 0:
        print("make bench needs root (network namespaces)", file=sys.stderr)
        return 1
    for tool in ("wrk", "nginx", "node"):
        if shutil.which(tool) is None:
            print(f"make bench needs {tool}", file=sys.stderr)
            return 1
    report(
        f"podside benchmarks, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, "
        f"kernel {os.uname().release}"
    )
    sections = sys.argv[1:] or [
        "outgoing",
        "syscalls",
        "startup",
        "mirror",
        "files",
        "steal",
        "kube",
    ]
    with make_pod() as pod:
        pod.start_agent()
        pod.spawn(pod.in_cluster(PYTHON, BLAST, "serve", pod.cluster_ip, "9000"), "blast.log")
        wait_for(lambda: "ready" in pod.log("blast.log"), what="blast server")
        if "outgoing" in sections:
            outgoing(pod)
        if "syscalls" in sections:
            syscalls(pod)
        if "startup" in sections:
            startup(pod)
        if "mirror" in sections:
            mirroring(pod)
        if "files" in sections:
            from tests.files.bench_files import files_startup

            files_startup(pod, report)
        if "steal" in sections:  # last: it ends by killing the agent
            from tests.steal.bench_steal import steal

            steal(pod, report)
    if "kube" in sections:
        from tests.bench_kube import kube

        kube(report)
    Path(".cache").mkdir(exist_ok=True)
    Path(".cache/bench.md").write_text("\n".join(LINES) + "\n")
    print(json.dumps({"written": ".cache/bench.md"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
