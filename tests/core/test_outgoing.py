"""Outgoing: the program's TCP and UDP leave from the pod; loopback, Unix sockets and chosen
destinations stay on this machine."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Iterator

import pytest

from tests.core.conftest import podside_exec
from tests.topology import PYTHON, Pod


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_tcp_to_an_address_only_the_pod_reaches_leaves_from_the_pod(pod: Pod) -> None:
    direct = subprocess.run(
        ["curl", "-sS", "-m", "3", f"http://{pod.cluster_ip}/direct"],
        capture_output=True,
        text=True,
    )
    assert direct.returncode != 0  # unreachable from this machine
    answer = _json(podside_exec(pod, "curl", "-sS", "-m", "10", f"http://{pod.cluster_ip}/via-pod"))
    assert answer["server"] == "backend"
    assert answer["path"] == "/via-pod"
    assert answer["client"] == pod.cluster_gateway  # the pod's own address on that network


def test_getpeername_of_a_tunnelled_socket_is_the_original_destination(pod: Pod) -> None:
    script = (
        "import socket\n"
        f"s = socket.create_connection(({pod.cluster_ip!r}, 80))\n"
        "print(s.getpeername())\n"
        "s6 = socket.socket(socket.AF_INET6)\n"
        f"s6.connect(('::ffff:{pod.cluster_ip}', 80))\n"
        "print(s6.getpeername()[:2])\n"
    )
    result = podside_exec(pod, PYTHON, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"('{pod.cluster_ip}', 80)",
        f"('::ffff:{pod.cluster_ip}', 80)",
    ]


def test_bytes_arrive_intact_in_both_directions(pod: Pod) -> None:
    size = 24 * 1024 * 1024 + 123
    download = subprocess.run(
        [
            *pod.podside_exec(),
            "--",
            "curl",
            "-sS",
            "-m",
            "60",
            f"http://{pod.cluster_ip}/bytes/{size}",
        ],
        capture_output=True,
        timeout=120,
    )
    assert download.returncode == 0, download.stderr
    pattern = bytes(range(256)) * 256
    expected = (pattern * (size // len(pattern) + 1))[:size]
    assert hashlib.sha256(download.stdout).hexdigest() == hashlib.sha256(expected).hexdigest()

    body = os.urandom(8 * 1024 * 1024)
    with tempfile.NamedTemporaryFile() as upload:
        upload.write(body)
        upload.flush()
        answer = _json(
            podside_exec(
                pod,
                "curl",
                "-sS",
                "-m",
                "60",
                "--data-binary",
                f"@{upload.name}",
                f"http://{pod.cluster_ip}/upload",
                timeout=120,
            )
        )
    assert answer["length"] == len(body)
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()


def test_connection_refused_in_the_pod_is_refused_for_the_program(pod: Pod) -> None:
    script = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({pod.cluster_ip!r}, 81), timeout=10)\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
    )
    result = podside_exec(pod, PYTHON, "-c", script)
    assert result.stdout.strip() == "refused", result.stderr


def test_non_blocking_connect_completes_through_the_tunnel(pod: Pod) -> None:
    script = (
        "import asyncio\n"
        "async def main():\n"
        f"    reader, writer = await asyncio.open_connection({pod.cluster_ip!r}, 80)\n"
        "    writer.write(b'GET /async HTTP/1.0\\r\\n\\r\\n')\n"
        "    print((await reader.read()).split(b'\\r\\n\\r\\n', 1)[1].decode())\n"
        "asyncio.run(main())\n"
    )
    answer = _json(podside_exec(pod, PYTHON, "-c", script))
    assert answer["path"] == "/async"


class _AddressEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(f"{self.client_address[0]}\n".encode())


@pytest.fixture
def host_server(pod: Pod) -> Iterator[tuple[str, int]]:
    """A server on this machine's end of the pod link: it says which address called it."""
    server = socketserver.ThreadingTCPServer((pod.host_ip, 0), _AddressEcho)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[0], server.server_address[1]
    server.shutdown()
    server.server_close()


def _caller_seen_by(pod: Pod, address: tuple[str, int], *options: str) -> str:
    """Who the server at `address` says connected: the program's address as the server saw
    it. A host "laptop" is looked up by the program itself (the pod's DNS) first."""
    host, port = address
    script = (
        "import socket\n"
        f"address = socket.gethostbyname({host!r})\n"
        f"print(socket.create_connection((address, {port})).recv(100).decode().strip())\n"
    )
    result = podside_exec(pod, PYTHON, "-c", script, options=options)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_outgoing_local_keeps_matching_destinations_here(
    pod: Pod, host_server: tuple[str, int]
) -> None:
    host, port = host_server
    assert _caller_seen_by(pod, host_server) == pod.pod_ip
    assert _caller_seen_by(pod, host_server, "--outgoing-local", f"{host}/32") == pod.host_ip
    assert _caller_seen_by(pod, host_server, "--outgoing-local", f"{host}:{port}") == pod.host_ip
    assert _caller_seen_by(pod, host_server, "--outgoing-local", f"{host}:{port + 1}") == pod.pod_ip


def test_outgoing_remote_lets_only_matching_destinations_leave_from_the_pod(
    pod: Pod, host_server: tuple[str, int]
) -> None:
    host, port = host_server
    assert _caller_seen_by(pod, host_server, "--outgoing-remote", f"{host}/32") == pod.pod_ip
    assert _caller_seen_by(pod, host_server, "--outgoing-remote", f"tcp://:{port}") == pod.pod_ip
    assert _caller_seen_by(pod, host_server, "--outgoing-remote", "udp://0.0.0.0/0") == pod.host_ip
    assert _caller_seen_by(pod, host_server, "--outgoing-remote", "192.0.2.0/24") == pod.host_ip
    both = ("--outgoing-remote", f"{host}/32", "--outgoing-local", f"{host}:{port}")
    assert _caller_seen_by(pod, host_server, *both) == pod.host_ip  # local wins


def _caller_by_name_seen_by(pod: Pod, port: int, *options: str) -> str:
    return _caller_seen_by(pod, ("laptop", port), *options)


def test_rules_by_name_hold_for_addresses_the_program_resolved(
    pod: Pod, host_server: tuple[str, int]
) -> None:
    _, port = host_server
    assert _caller_by_name_seen_by(pod, port) == pod.pod_ip
    assert _caller_by_name_seen_by(pod, port, "--outgoing-local", "laptop") == pod.host_ip
    assert _caller_by_name_seen_by(pod, port, "--outgoing-local", f"laptop:{port + 1}") == (
        pod.pod_ip
    )
    assert _caller_by_name_seen_by(pod, port, "--outgoing-remote", "laptop") == pod.pod_ip
    assert _caller_by_name_seen_by(pod, port, "--outgoing-remote", "backend") == pod.host_ip


def test_tcp_and_udp_are_switched_separately(pod: Pod, host_server: tuple[str, int]) -> None:
    assert _caller_seen_by(pod, host_server, "--no-outgoing-tcp") == pod.host_ip
    assert _caller_seen_by(pod, host_server, "--no-outgoing-udp") == pod.pod_ip
    script = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)\n"
        "address = socket.gethostbyname('udp-echo')\n"  # DNS still asks the pod
        "try:\n"
        "    s.sendto(b'one', (address, 5353))\n"
        "    print(s.recvfrom(100)[0].decode())\n"
        "except OSError as error:\n"
        "    print('no answer:', type(error).__name__)\n"
    )
    through_pod = podside_exec(pod, PYTHON, "-c", script, options=("--no-outgoing-tcp",))
    assert through_pod.stdout.split() == ["echo:one"], through_pod.stderr
    here = podside_exec(pod, PYTHON, "-c", script, options=("--no-outgoing-udp",))
    assert here.returncode == 0, here.stderr
    # From here the echo's address is unreachable (the host's route for the pod's networks).
    assert here.stdout.startswith("no answer:"), here.stdout


def test_no_outgoing_keeps_every_connection_here(pod: Pod, host_server: tuple[str, int]) -> None:
    assert _caller_seen_by(pod, host_server, "--no-outgoing") == pod.host_ip
    result = podside_exec(
        pod, "curl", "-sS", "-m", "3", f"http://{pod.cluster_ip}/", options=("--no-outgoing",)
    )
    assert result.returncode != 0


def test_loopback_stays_on_this_machine(pod: Pod) -> None:
    server = socketserver.TCPServer(("127.0.0.1", 0), _AddressEcho)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert _caller_seen_by(pod, server.server_address) == "127.0.0.1"  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()


def test_unix_sockets_stay_on_this_machine(pod: Pod, tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "local.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()

    def answer() -> None:
        connection, _ = listener.accept()
        connection.sendall(b"local unix\n")
        connection.close()

    threading.Thread(target=answer, daemon=True).start()
    script = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({path!r}); print(s.recv(100).decode().strip())"
    result = podside_exec(pod, PYTHON, "-c", script)
    listener.close()
    assert result.stdout.strip() == "local unix", result.stderr


def test_udp_reaches_the_pod_and_replies_come_from_the_original_destination(pod: Pod) -> None:
    script = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)\n"
        f"s.sendto(b'one', ({pod.cluster_ip!r}, 5353))\n"
        "data, sender = s.recvfrom(100); print(data.decode(), sender)\n"
        "c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(10)\n"
        f"c.connect(({pod.cluster_ip!r}, 5353)); c.send(b'two')\n"
        "data, sender = c.recvfrom(100); print(data.decode(), sender, c.getpeername())\n"
    )
    result = podside_exec(pod, PYTHON, "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"echo:one ('{pod.cluster_ip}', 5353)",
        f"echo:two ('{pod.cluster_ip}', 5353) ('{pod.cluster_ip}', 5353)",
    ]


def test_node_dgram_sendmsg_and_recvmsg_reach_the_pod(pod: Pod) -> None:
    """libuv sends and receives datagrams with sendmsg/recvmsg, addresses inside msghdr."""
    script = (
        "const s = require('dgram').createSocket('udp4');"
        "s.on('message', (m, r) => { console.log(m.toString(), r.address, r.port); s.close(); });"
        f"s.send('node', 5353, '{pod.cluster_ip}');"
    )
    result = podside_exec(pod, "node", "-e", script)
    assert result.stdout.strip() == f"echo:node {pod.cluster_ip} 5353", result.stderr


def test_python_sendmsg_and_recvmsg_with_addresses(pod: Pod) -> None:
    script = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)\n"
        f"s.sendmsg([b'vec', b'tored'], [], 0, ({pod.cluster_ip!r}, 5353))\n"
        "data, ancillary, flags, sender = s.recvmsg(100)\n"
        "print(data.decode(), sender, flags)\n"
        f"s.sendmsg([b'x' * 50], [], 0, ({pod.cluster_ip!r}, 5353))\n"
        "data, ancillary, flags, sender = s.recvmsg(10)\n"
        "print(len(data), bool(flags & socket.MSG_TRUNC))\n"
    )
    result = podside_exec(pod, PYTHON, "-c", script)
    assert result.stdout.splitlines() == [
        f"echo:vectored ('{pod.cluster_ip}', 5353) 0",
        "10 True",
    ], result.stderr


class _SaysWhere(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(self.server.where)  # type: ignore[attr-defined]


def _unix_server(path: str, where: bytes) -> socketserver.ThreadingUnixStreamServer:
    server = socketserver.ThreadingUnixStreamServer(path, _SaysWhere)
    server.where = where  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_outgoing_unix_connects_to_the_pods_socket_at_that_path(pod: Pod, tmp_path: object) -> None:
    # The pod's /srv is pod.pod_files here: /srv/app.sock exists in the pod only.
    assert not os.path.exists("/srv/app.sock")
    in_pod = _unix_server(str(pod.pod_files / "app.sock"), b"the pod's socket")
    local_path = os.path.join(str(tmp_path), "local.sock")
    here = _unix_server(local_path, b"this machine's socket")
    script = (
        "import socket, sys\n"
        "for path in sys.argv[1:]:\n"
        "    s = socket.socket(socket.AF_UNIX)\n"
        "    try:\n"
        "        s.connect(path)\n"
        "        print(s.recv(100).decode())\n"
        "    except OSError as error:\n"
        "        print(type(error).__name__)\n"
    )
    paths = ("/srv/app.sock", local_path, "/srv/missing.sock", "/srv/podside-config")
    try:
        plain = podside_exec(pod, PYTHON, "-c", script, *paths)
        assert plain.stdout.splitlines() == [
            "FileNotFoundError",
            "this machine's socket",
            "FileNotFoundError",
            "FileNotFoundError",
        ], plain.stderr
        tunnelled = podside_exec(
            pod, PYTHON, "-c", script, *paths, options=("--outgoing-unix", "^/srv/")
        )
        assert tunnelled.stdout.splitlines() == [
            "the pod's socket",
            "this machine's socket",  # not matching: stays here
            "FileNotFoundError",  # the pod's answer: no such socket there
            "ConnectionRefusedError",  # a folder in the pod, not a socket
        ], tunnelled.stderr
    finally:
        for server in (in_pod, here):
            server.shutdown()
            server.server_close()
        os.unlink(pod.pod_files / "app.sock")
