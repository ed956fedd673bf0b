"""The agent serves several clients at once, and one bad or silent client never hurts the others."""

from __future__ import annotations

import json
import socket
import subprocess
import time

from podside_protocol import Connection, Role
from tests.core.agent_client import agent_status
from tests.core.conftest import podside_exec
from tests.topology import Pod, wait_for


def test_two_sessions_at_once(pod: Pod) -> None:
    command = [
        *pod.podside_exec(),
        "--",
        "sh",
        "-c",
    ]
    fetch = "sleep 1; curl -sS -m 10 http://backend/$0"
    first = subprocess.Popen([*command, fetch, "first"], stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen([*command, fetch, "second"], stdout=subprocess.PIPE, text=True)
    wait_for(lambda: agent_status(pod)["clients"] == 2, what="two clients")
    answers = [json.loads(p.communicate(timeout=30)[0]) for p in (first, second)]
    assert [a["path"] for a in answers] == ["/first", "/second"]


def _hello(pod: Pod) -> socket.socket:
    sock = socket.create_connection((pod.pod_ip, pod.agent_port))
    client = Connection(Role.CLIENT, pod.token, name="raw-test-client")
    sock.sendall(b"".join(client.data_to_send()))
    sock.settimeout(10)
    client.receive_data(sock.recv(65536))
    assert client.state.value == "open"
    return sock


def test_a_client_sending_garbage_is_dropped_and_others_carry_on(pod: Pod) -> None:
    sock = _hello(pod)
    sock.sendall(b"\x00\x00\x00\x03\xc1\xc1\xc1")  # a frame msgpack cannot decode
    assert sock.recv(100) == b""  # the agent closed this client
    sock.close()
    result = podside_exec(pod, "curl", "-sS", "-m", "10", "http://backend/still-served")
    assert json.loads(result.stdout)["path"] == "/still-served"


def test_a_silent_client_is_dropped_after_the_heartbeat_timeout(pod: Pod) -> None:
    sock = _hello(pod)
    started = time.monotonic()
    assert sock.recv(100) == b""
    assert time.monotonic() - started < 9
    sock.close()
