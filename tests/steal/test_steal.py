"""Steal: the local program answers the pod's traffic; the pod is never left unreachable."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

from tests.steal.conftest import (
    LocalProgram,
    agent_status,
    ask,
    nft_tables,
    redirected_ports,
    stealing,
)
from tests.topology import PYTHON, SERVERS, Pod, run, wait_for


def test_whole_port_steal_answers_with_the_program_and_gives_the_port_back(pod: Pod) -> None:
    assert ask(pod)["server"] == "pod-app"
    with stealing(pod) as program:
        assert "podside_steal" in nft_tables(pod)
        for index in range(3):
            answer = ask(pod, f"/hello/{index}", method="POST", body=b"x" * index)
            assert answer["server"] == "local"
            assert answer["path"] == f"/hello/{index}"
            assert answer["length"] == index
        connection = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
        for _ in range(3):
            assert ask(pod, connection=connection)["server"] == "local"
        connection.close()
        assert "local POST /hello/2" in program.output()
    wait_for(lambda: not redirected_ports(pod), what="the redirect to go")
    assert ask(pod)["server"] == "pod-app"
    assert agent_status(pod)["stolen_ports"] == {}


def test_a_filter_takes_only_matching_requests_on_one_keep_alive_connection(pod: Pod) -> None:
    with stealing(pod, "--http-filter", "X-Dev: ^alice$", "--method-filter", "GET,POST"):
        connection = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
        for index in range(4):
            mine = ask(pod, f"/m/{index}", headers={"X-Dev": "alice"}, connection=connection)
            assert (mine["server"], mine["path"]) == ("local", f"/m/{index}")
            body = b"b" * (1000 * index)
            other = ask(pod, f"/o/{index}", method="POST", body=body, connection=connection)
            assert (other["server"], other["length"]) == ("pod-app", len(body))
            put = ask(pod, "/p", method="PUT", headers={"X-Dev": "alice"}, connection=connection)
            assert put["server"] == "pod-app"
        connection.close()


def test_with_filter_match_any_one_filter_suffices_per_request(pod: Pod) -> None:
    flags = ("--http-filter", "X-Dev: ^alice$", "--path-filter", "^/api/", "--filter-match", "any")
    with stealing(pod, *flags):
        connection = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
        for index in range(2):
            by_header = ask(pod, f"/web/{index}", headers={"X-Dev": "alice"}, connection=connection)
            assert (by_header["server"], by_header["path"]) == ("local", f"/web/{index}")
            by_path = ask(pod, f"/api/{index}", headers={"X-Dev": "bob"}, connection=connection)
            assert (by_path["server"], by_path["path"]) == ("local", f"/api/{index}")
            neither = ask(pod, f"/web/{index}", headers={"X-Dev": "bob"}, connection=connection)
            assert neither["server"] == "pod-app"
        connection.close()


def test_filters_scoped_to_other_ports_leave_this_port_stolen_whole(pod: Pod) -> None:
    with stealing(pod, "--path-filter", "^/api/", "--filter-ports", "9090"):
        assert ask(pod, "/web")["server"] == "local"  # 8080 is not a filtered port: whole
    with stealing(pod, "--path-filter", "^/api/", "--filter-ports", "8080,9090"):
        assert ask(pod, "/web")["server"] == "pod-app"
        assert ask(pod, "/api/x")["server"] == "local"


def test_probes_reach_the_app_while_the_program_is_stopped(pod: Pod) -> None:
    with stealing(pod) as program:
        assert ask(pod)["server"] == "local"
        os.kill(_program_pid(program), signal.SIGSTOP)
        try:
            for _ in range(5):
                probe = ask(pod, "/healthz", headers={"User-Agent": "kube-probe/1.36"})
                assert probe["server"] == "pod-app"
        finally:
            os.kill(_program_pid(program), signal.SIGCONT)


def _program_pid(program: LocalProgram) -> int:
    children = run("pgrep", "-P", str(program.process.pid), "-f", "echo_http").stdout.split()
    assert children, program.output()
    return int(children[0])


def test_two_filtered_sessions_share_a_port_and_a_second_whole_steal_is_refused(pod: Pod) -> None:
    with (
        stealing(pod, "--http-filter", "X-Dev: alice", name="alice"),
        stealing(pod, "--http-filter", "X-Dev: bob", name="bob", port=8081),
    ):
        connection = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
        for _ in range(2):
            for who in ("alice", "bob", "carol"):
                answer = ask(pod, "/", headers={"X-Dev": who}, connection=connection)
                assert answer["server"] == {"carol": "pod-app"}.get(who, who)
        connection.close()
        with stealing(pod, name="whole", wait=False, port=8082) as whole:
            assert whole.process.wait(30) == 1
            assert "port 8080 is already stolen" in whole.output()
            assert "podside exec pid" in whole.output()


def test_loopback_inside_the_pod_is_never_redirected(pod: Pod) -> None:
    with stealing(pod):
        assert ask(pod)["server"] == "local"
        inside = run(*pod.in_pod("curl", "-s", "http://127.0.0.1:8080/sidecar")).stdout
        assert json.loads(inside)["server"] == "pod-app"


def test_sigkill_of_the_agent_gives_the_port_back_at_once(pod: Pod) -> None:
    with stealing(pod) as program:
        assert ask(pod)["server"] == "local"
        assert pod.agent is not None
        os.killpg(pod.agent.pid, signal.SIGKILL)
        pod.agent.wait(10)
        wait_for(lambda: "podside_steal" not in nft_tables(pod), what="the kernel to drop it")
        assert ask(pod)["server"] == "pod-app"
        program.process.wait(30)
    pod.agent = None


def test_sigkill_of_podside_exec_gives_the_port_back_within_the_heartbeat(pod: Pod) -> None:
    with stealing(pod) as program:
        assert ask(pod)["server"] == "local"
        os.killpg(program.process.pid, signal.SIGKILL)
        program.process.wait(10)
        wait_for(lambda: not redirected_ports(pod), timeout=10, what="the steal to end")
        for _ in range(20):
            assert ask(pod)["server"] == "pod-app"


def test_steal_without_net_admin_fails_in_one_line_and_mirror_still_works(pod: Pod) -> None:
    pod.stop_agent()
    pod.agent = pod.spawn(
        pod.in_pod(
            "capsh",
            "--drop=cap_net_admin",
            "--",
            "-c",
            f"exec {PYTHON} -m podside_agent --listen 0.0.0.0 --port {pod.agent_port} "
            f"--token {pod.token}",
        ),
        "agent.log",
    )
    wait_for(lambda: "listening on" in pod.log("agent.log"), what="the agent")
    with stealing(pod, wait=False) as program:
        assert program.process.wait(30) != 0
        lines = [line for line in program.output().splitlines() if "NET_ADMIN" in line]
        assert len(lines) == 1 and "Traceback" not in program.output(), program.output()
    assert ask(pod)["server"] == "pod-app"


def test_an_agent_that_cannot_load_libnftables_still_steals(pod: Pod) -> None:
    """The agent's image is plain Python: no libnftables. Here it is hidden from the agent (a
    bind mount of /dev/null over it, in the agent's own mount namespace), and steal works."""
    libraries = sorted(
        str(path)
        for pattern in ("/usr/lib/libnftables.so*", "/usr/lib/*/libnftables.so*")
        for path in Path("/").glob(pattern.lstrip("/"))
        if not path.is_symlink()
    )
    assert libraries, "libnftables is not installed here, so there is nothing to hide"
    hide = " && ".join(f"mount --bind /dev/null {path}" for path in libraries)
    loads = f"{PYTHON} -c 'import ctypes, ctypes.util; ctypes.CDLL(ctypes.util.find_library(\"nftables\"))'"
    agent = (
        f"{PYTHON} -m podside_agent --listen 0.0.0.0 --port {pod.agent_port} --token {pod.token}"
    )
    pod.stop_agent()
    pod.agent = pod.spawn(
        pod.in_pod(
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"{hide} && if {loads} 2>/dev/null; then echo libnftables still loads; exit 1; fi; "
            f"exec {agent}",
        ),
        "agent.log",
    )
    wait_for(
        lambda: "listening on" in pod.log("agent.log") or pod.agent.poll() is not None,
        what="the agent",
    )
    assert "listening on" in pod.log("agent.log"), pod.log("agent.log")
    with stealing(pod) as program:
        assert ask(pod)["server"] == "local"
        assert "local GET /" in program.output()
    wait_for(lambda: not redirected_ports(pod), what="the redirect to go")
    assert ask(pod)["server"] == "pod-app"


def test_requests_a_filter_passes_on_reach_the_app_untouched(pod: Pod) -> None:
    """Chunked bodies, Expect: 100-continue and an upgraded connection all go through."""
    body = os.urandom(200_000)
    with stealing(pod, "--http-filter", "X-Dev: alice"):
        chunked = subprocess.run(
            [
                "curl",
                "-sS",
                "-m",
                "20",
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                "@-",
                f"http://{pod.pod_ip}:8080/chunked",
            ],
            input=body,
            capture_output=True,
            check=True,
        )
        answer = json.loads(chunked.stdout)
        assert (
            answer["server"] == "pod-app" and answer["sha256"] == hashlib.sha256(body).hexdigest()
        )
        continued = subprocess.run(
            [
                "curl",
                "-sS",
                "-m",
                "20",
                "-H",
                "Expect: 100-continue",
                "--data-binary",
                "@-",
                "-w",
                "\n%{http_code}",
                f"http://{pod.pod_ip}:8080/continue",
            ],
            input=body,
            capture_output=True,
            check=True,
        )
        payload, code = continued.stdout.rsplit(b"\n", 1)
        assert code == b"200" and json.loads(payload)["length"] == len(body)
        with socket.create_connection((pod.pod_ip, 8080), timeout=10) as upgraded:
            upgraded.sendall(
                b"GET /up HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                head += upgraded.recv(4096)
            assert head.startswith(b"HTTP/1.1 101")
            upgraded.sendall(b"raw bytes after the upgrade")
            echoed = b""
            while len(echoed) < len(b"raw bytes after the upgrade"):
                echoed += upgraded.recv(4096)
            assert echoed == b"raw bytes after the upgrade"


def test_http2_cleartext_passes_to_the_app_unharmed_under_a_filter(pod: Pod) -> None:
    """A connection that opens with the HTTP/2 preface (gRPC) is never taken or cut."""
    with stealing(pod, "--http-filter", "X-Dev: alice") as program:
        with socket.create_connection((pod.pod_ip, 8080), timeout=10) as h2c:
            h2c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            answer = b""
            while chunk := h2c.recv(4096):
                answer += chunk
        # The app (Python's http.server) rejects the preface itself, which proves the bytes
        # reached it as sent.
        assert b"Error code: 505" in answer, answer[:300]
        assert "PRI" not in program.output()


def test_ipv6_clients_are_stolen_too_and_the_others_reach_the_apps_ipv6_socket(pod: Pod) -> None:
    """A dual-stack pod: its app also listens on IPv6; steal takes IPv6 clients as well."""
    pod.spawn(
        pod.in_pod(PYTHON, str(SERVERS / "echo_http.py"), "::", "8080", "pod-app-v6"),
        "pod-app-v6.log",
    )
    wait_for(lambda: "listening" in pod.log("pod-app-v6.log"), what="the pod's IPv6 app")

    def over_ipv6() -> http.client.HTTPConnection:
        return http.client.HTTPConnection(pod.pod_ip6, 8080, timeout=10)

    def ask_once(path: str) -> object:
        with contextlib.closing(over_ipv6()) as connection:
            return ask(pod, path, connection=connection)["server"]

    assert ask_once("/before") == "pod-app-v6"
    with stealing(pod, "--http-filter", "X-Dev: ^alice$") as program:
        assert "ip6" in redirected_ports(pod)
        connection = over_ipv6()
        for index in range(3):
            mine = ask(pod, f"/v6/{index}", headers={"X-Dev": "alice"}, connection=connection)
            assert (mine["server"], mine["path"]) == ("local", f"/v6/{index}")
            other = ask(pod, f"/v6/other/{index}", connection=connection)
            assert other["server"] == "pod-app-v6"
        connection.close()
        assert ask(pod, headers={"X-Dev": "alice"})["server"] == "local"  # IPv4 still
        assert "local GET /v6/2" in program.output()
    wait_for(lambda: not redirected_ports(pod), what="the redirect to go")
    assert ask_once("/after") == "pod-app-v6"
