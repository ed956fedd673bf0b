"""A pod on this machine for tests: real network namespaces, veths, servers and an agent.

    host  ──(198.19.B.1 ↔ 198.19.B.2)──  pod  ──(198.19.B.129 ↔ 198.19.B.130)──  cluster

The pod has its own mount namespace with its own resolv.conf and hosts; its main process (the
agent's target) is a small HTTP server. The cluster namespace stands for everything only the
pod can reach: a DNS server (dnsmasq) that knows `*.test.svc.cluster.local`, an HTTP backend and
a UDP echo server. The host gets an `unreachable` route for the cluster's range first, so a bug
that connects directly fails here instead of sending packets elsewhere. Everything is removed
on close, also when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SERVERS = Path(__file__).resolve().parent / "servers"


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=check, capture_output=True, text=True)


def wait_for(condition, timeout: float = 15.0, interval: float = 0.05, what: str = "") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what or condition}")


def _pick_block() -> int:
    """A /24 inside 198.19.0.0/16 no other live test namespace uses."""
    used = set()
    for line in run("ip", "-o", "-4", "addr", "show").stdout.splitlines():
        for word in line.split():
            if word.startswith("198.19."):
                used.add(int(word.split(".")[2]))
    for _ in range(200):
        block = secrets.randbelow(250) + 1
        if block not in used:
            return block
    raise RuntimeError("no free 198.19.x.0/24 block")


@dataclass
class Pod:
    name: str
    block: int
    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    agent_port: int = 7000
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    app: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None

    @property
    def host_ip(self) -> str:
        return f"198.19.{self.block}.1"

    @property
    def pod_ip(self) -> str:
        return f"198.19.{self.block}.2"

    @property
    def host_ip6(self) -> str:
        return f"fd00:5e00:0:{self.block}::1"

    @property
    def pod_ip6(self) -> str:
        """The pod's IPv6 address (on the host link only: the pod's cluster side is IPv4)."""
        return f"fd00:5e00:0:{self.block}::2"

    @property
    def ipv6_range(self) -> str:
        return f"fd00:5e00:0:{self.block}::/64"

    @property
    def cluster_gateway(self) -> str:
        return f"198.19.{self.block}.129"

    @property
    def cluster_ip(self) -> str:
        """The backend, DNS and UDP echo servers that only the pod can reach."""
        return f"198.19.{self.block}.130"

    @property
    def cluster_range(self) -> str:
        return f"198.19.{self.block}.128/25"

    @property
    def pod_files(self) -> Path:
        """Mounted on /srv in the pod's mount namespace only (see POD_ONLY_FILES)."""
        return self.workdir / "pod-srv"

    @property
    def pod_netns(self) -> str:
        return f"{self.name}-pod"

    @property
    def cluster_netns(self) -> str:
        return f"{self.name}-cl"

    @property
    def agent_address(self) -> str:
        return f"{self.pod_ip}:{self.agent_port}"

    def podside_exec(self, *options: str) -> list[str]:
        """`podside exec` against this pod's agent, up to (not including) the `--`."""
        return [
            PYTHON,
            "-m",
            "podside",
            "exec",
            "--agent",
            self.agent_address,
            "--token",
            self.token,
            *options,
        ]

    def in_pod(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.pod_netns, *command]

    def in_cluster(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.cluster_netns, *command]

    def spawn(self, command: list[str], log_name: str, **kwargs) -> subprocess.Popen[bytes]:  # type: ignore[no-untyped-def]
        with open(self.workdir / log_name, "wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.workdir / name).read_text(errors="replace")

    def start_agent(self, *extra: str, token: str | None = None) -> subprocess.Popen[bytes]:
        self.agent = self.spawn(
            self.in_pod(
                PYTHON,
                "-m",
                "podside_agent",
                "--listen",
                "0.0.0.0",
                "--port",
                str(self.agent_port),
                "--token",
                token or self.token,
                *extra,
            ),
            "agent.log",
        )
        wait_for(lambda: "listening on" in self.log("agent.log"), what="the agent to listen")
        return self.agent

    def restart_app(self, pod_env: dict[str, str]) -> None:
        """The app container restarted: the same command, a new process (and environment)."""
        assert self.app is not None
        _terminate(self.app)
        self.processes.remove(self.app)
        _spawn_pod_app(self, pod_env)

    def stop_agent(self) -> None:
        if self.agent is not None:
            _terminate(self.agent)
            self.agent = None


def _terminate(process: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)


@contextlib.contextmanager
def make_pod(pod_env: dict[str, str] | None = None) -> Iterator[Pod]:
    block = _pick_block()
    name = f"pst{block}"
    workdir = Path(tempfile.mkdtemp(prefix=f"podside-{name}-"))
    pod = Pod(name=name, block=block, workdir=workdir)
    host_veth, cluster_veth = f"{name}h", f"{name}c"
    created_route = created_route6 = False
    try:
        run("ip", "route", "add", "unreachable", pod.cluster_range)
        created_route = True
        # Behind the link's own route: what is not on the veth never leaves this machine.
        run("ip", "-6", "route", "add", "unreachable", pod.ipv6_range, "metric", "2048")
        created_route6 = True
        run("ip", "netns", "add", pod.pod_netns)
        run("ip", "netns", "add", pod.cluster_netns)
        # host <-> pod
        run(
            "ip",
            "link",
            "add",
            host_veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            pod.pod_netns,
        )
        run("ip", "addr", "add", f"{pod.host_ip}/30", "dev", host_veth)
        run("ip", "link", "set", host_veth, "up")
        run(*pod.in_pod("ip", "addr", "add", f"{pod.pod_ip}/30", "dev", "eth0"))
        run("ip", "addr", "add", f"{pod.host_ip6}/64", "dev", host_veth, "nodad")
        run(*pod.in_pod("ip", "addr", "add", f"{pod.pod_ip6}/64", "dev", "eth0", "nodad"))
        run(*pod.in_pod("ip", "link", "set", "eth0", "up"))
        run(*pod.in_pod("ip", "link", "set", "lo", "up"))
        # pod <-> cluster
        run(
            *pod.in_pod(
                "ip",
                "link",
                "add",
                cluster_veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                pod.cluster_netns,
            )
        )
        run(*pod.in_pod("ip", "addr", "add", f"{pod.cluster_gateway}/30", "dev", cluster_veth))
        run(*pod.in_pod("ip", "link", "set", cluster_veth, "up"))
        run(*pod.in_cluster("ip", "addr", "add", f"{pod.cluster_ip}/30", "dev", "eth0"))
        run(*pod.in_cluster("ip", "link", "set", "eth0", "up"))
        run(*pod.in_cluster("ip", "link", "set", "lo", "up"))
        run(*pod.in_cluster("ip", "route", "add", "default", "via", pod.cluster_gateway))
        run(*pod.in_pod("sysctl", "-qw", "net.ipv4.ip_forward=0"))

        _start_cluster_services(pod)
        _start_pod_app(pod, pod_env or {})
        yield pod
    finally:
        for process in reversed(pod.processes):
            _terminate(process)
        for netns in (pod.pod_netns, pod.cluster_netns):
            pids = run("ip", "netns", "pids", netns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", netns, check=False)
        run("ip", "link", "del", host_veth, check=False)
        if created_route:
            run("ip", "route", "del", "unreachable", pod.cluster_range, check=False)
        if created_route6:
            run(
                "ip",
                "-6",
                "route",
                "del",
                "unreachable",
                pod.ipv6_range,
                "metric",
                "2048",
                check=False,
            )
        shutil.rmtree(workdir, ignore_errors=True)


def _start_cluster_services(pod: Pod) -> None:
    dns_log = pod.workdir / "dnsmasq.log"
    pod.spawn(
        pod.in_cluster(
            "dnsmasq",
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            f"--listen-address={pod.cluster_ip}",
            "--local=/cluster.local/",
            f"--address=/backend.test.svc.cluster.local/{pod.cluster_ip}",
            f"--address=/udp-echo.test.svc.cluster.local/{pod.cluster_ip}",
            # This machine's end of the pod link, by a name only the pod's DNS knows.
            f"--address=/laptop.test.svc.cluster.local/{pod.host_ip}",
            "--log-queries",
            f"--log-facility={dns_log}",
            "--user=root",
            f"--pid-file={pod.workdir / 'dnsmasq.pid'}",
        ),
        "dnsmasq.out",
    )
    pod.spawn(
        pod.in_cluster(PYTHON, str(SERVERS / "echo_http.py"), pod.cluster_ip, "80", "backend"),
        "backend.log",
    )
    pod.spawn(
        pod.in_cluster(PYTHON, str(SERVERS / "udp_echo.py"), pod.cluster_ip, "5353"),
        "udp-echo.log",
    )
    wait_for(lambda: _reachable_in(pod.cluster_netns, pod.cluster_ip, 80), what="the backend")
    wait_for(lambda: "ready" in pod.log("udp-echo.log"), what="the UDP echo server")
    wait_for(lambda: dns_log.exists() and "started" in dns_log.read_text(), what="dnsmasq")


def _start_pod_app(pod: Pod, pod_env: dict[str, str]) -> None:
    resolv = pod.workdir / "pod-resolv.conf"
    resolv.write_text(
        "search test.svc.cluster.local svc.cluster.local cluster.local\n"
        f"nameserver {pod.cluster_ip}\n"
        "options ndots:5\n"
    )
    hosts = pod.workdir / "pod-hosts"
    hosts.write_text(
        f"127.0.0.1 localhost\n{pod.pod_ip} test-pod\n{pod.cluster_ip} hosts-only-name\n"
    )
    _write_pod_only_files(pod.pod_files)
    _spawn_pod_app(pod, pod_env)


def _spawn_pod_app(pod: Pod, pod_env: dict[str, str]) -> None:
    resolv, hosts = pod.workdir / "pod-resolv.conf", pod.workdir / "pod-hosts"
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/pod-home",
        "POD_ONLY_VAR": "from-the-pod",
        "POD_SECRET_TOKEN": "do-not-leak",
        "SHARED_NAME": "pod-value",
        **pod_env,
    }
    # /srv/podside-config (a folder only the pod has) stands for a ConfigMap volume, read-only
    # as the kubelet mounts those; /srv/podside-data for a writable emptyDir.
    # Its own UTS namespace, as a pod has, named as a pod is (the agent is outside it).
    script = (
        f"echo {POD_HOSTNAME} > /proc/sys/kernel/hostname && "
        'mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/hosts && '
        'mount --bind "$3" /srv && '
        f"mount --bind {POD_CONFIG} {POD_CONFIG} && mount -o remount,bind,ro {POD_CONFIG} && "
        'shift 3 && exec "$@"'
    )
    pod.app = pod.spawn(
        pod.in_pod(
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(resolv),
            str(hosts),
            str(pod.pod_files),
            PYTHON,
            str(SERVERS / "echo_http.py"),
            "0.0.0.0",
            "8080",
            "pod-app",
        ),
        "pod-app.log",
        env=env,
    )
    wait_for(lambda: _reachable_in(pod.pod_netns, pod.pod_ip, 8080), what="the pod's app")


POD_CONFIG = "/srv/podside-config"
POD_HOSTNAME = "test-pod"
POD_LARGE_FILE = "/srv/podside-config/large.bin"
POD_LARGE_SIZE = 5 * 1024 * 1024 + 12345  # several of the agent's chunks, and a partial one
POD_DATA = "/srv/podside-data"  # writable, with notes.txt and a root-only locked.txt


def pod_large_contents() -> bytes:
    return bytes(index * 7 % 251 for index in range(POD_LARGE_SIZE))


def _write_pod_only_files(folder: Path) -> None:
    """A ConfigMap-like volume: a `..data` folder and symlinks to it, plus one large file."""
    config = folder / "podside-config"
    data = config / "..2026_01_01"
    data.mkdir(parents=True)
    (data / "app.json").write_text('{"greeting": "hello from the pod"}\n')
    (data / "mode").write_text("production\n")
    (config / "..data").symlink_to(data.name)
    for name in ("app.json", "mode"):
        (config / name).symlink_to(f"..data/{name}")
    (config / "large.bin").write_bytes(pod_large_contents())
    data = folder / "podside-data"
    data.mkdir(mode=0o777)
    data.chmod(0o777)
    (data / "notes.txt").write_text("first line\n")
    (data / "notes.txt").chmod(0o666)
    (data / "locked.txt").write_text("root only\n")
    (data / "locked.txt").chmod(0o600)


def _reachable_in(netns: str, host: str, port: int) -> bool:
    result = run(
        "ip",
        "netns",
        "exec",
        netns,
        PYTHON,
        "-c",
        f"import socket; socket.create_connection(({host!r}, {port}), timeout=1).close()",
        check=False,
    )
    return result.returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
