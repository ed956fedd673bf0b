"""Whoever reaches the agent's port cannot grow its memory or flood its log, and a session of
someone else keeps working meanwhile.

Memory is the agent process's own resident set (VmRSS), measured while the attack is on; the
bounds are generous (an attack that the agent buffered would cost it over 150 MB).
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import time

from podside_protocol import StreamRefused, files, mirror, steal
from podside_protocol.frames import MAX_FRAME_BODY
from tests.core.agent_client import RawClient, agent_status
from tests.core.conftest import podside_exec
from tests.topology import POD_LARGE_FILE, Pod, wait_for

MIB = 1024 * 1024
GROWTH_LIMIT = 64 * MIB


def _agent_pid(pod: Pod) -> int:
    assert pod.agent is not None
    pid = pod.agent.pid  # `ip netns exec` execs the agent in its own process
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        assert b"podside_agent" in cmdline.read()
    return pid


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _a_session_works(pod: Pod) -> None:
    result = podside_exec(pod, "curl", "-sS", "-m", "10", "http://backend/during")
    assert json.loads(result.stdout)["path"] == "/during", result.stderr


def test_connections_announcing_huge_frames_before_hello_cost_the_agent_little(pod: Pod) -> None:
    pid = _agent_pid(pod)
    before = peak = _rss(pid)
    attackers = [socket.create_connection((pod.pod_ip, pod.agent_port)) for _ in range(20)]
    chunk = b"\0" * MIB
    try:
        for sock in attackers:
            sock.settimeout(5)
            sock.sendall(MAX_FRAME_BODY.to_bytes(4, "big"))
        for _ in range(MAX_FRAME_BODY // MIB):
            for sock in attackers:
                with contextlib.suppress(OSError):  # the agent closed it: good
                    sock.sendall(chunk)
            peak = max(peak, _rss(pid))
        _a_session_works(pod)
        peak = max(peak, _rss(pid))
    finally:
        for sock in attackers:
            sock.close()
    assert peak - before < GROWTH_LIMIT, f"the agent grew by {(peak - before) // MIB} MiB"


def test_a_client_that_never_reads_its_answers_is_bounded_then_dropped(pod: Pod) -> None:
    pid = _agent_pid(pod)
    before = peak = _rss(pid)
    greedy = RawClient(pod)
    for _ in range(150):
        greedy.connection.send_request(
            files.READ_CHUNK, {"path": POD_LARGE_FILE, "offset": 0, "length": MIB}
        )
    greedy.sock.sendall(b"".join(greedy.connection.data_to_send()))
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            peak = max(peak, _rss(pid))
            time.sleep(0.05)
        _a_session_works(pod)
        peak = max(peak, _rss(pid))
        assert peak - before < GROWTH_LIMIT, f"the agent grew by {(peak - before) // MIB} MiB"
        # It neither reads nor pings: the heartbeat drops it, and what it left goes with it.
        wait_for(lambda: agent_status(pod)["clients"] == 0, timeout=20, what="the drop")
        wait_for(
            lambda: _rss(pid) - before < 16 * MIB,
            timeout=10,
            what=f"the memory back (now {(_rss(pid) - before) // MIB} MiB above)",
        )
    finally:
        greedy.close()
    assert "dropping a client silent" in pod.log("agent.log")


def test_malformed_open_and_request_parameters_are_refused_in_one_line_each(pod: Pod) -> None:
    logged_before = len(pod.log("agent.log"))
    client = RawClient(pod)
    try:
        client.connection.open_stream("tcp", {"destination": "nowhere"})
        client.sock.sendall(b"".join(client.connection.data_to_send()))
        refused = client.next_event()
        assert isinstance(refused, StreamRefused), refused
        assert refused.errno == errno.EINVAL
        client.ping()  # the same client is still served
        bad_requests = [
            (mirror.SUBSCRIBE, {"port": "eighty"}),
            (steal.SUBSCRIBE, {"port": 8080, "headers": "not a list"}),
            (files.MKDIR, {"path": "/srv/podside-data/new", "mode": "not a mode"}),
        ]
        for method, params in bad_requests:
            answer = client.request(method, params)
            assert not answer.ok and answer.result["errno"] in (errno.EINVAL, errno.EIO), answer
        client.ping()
    finally:
        client.close()
    _a_session_works(pod)
    log = pod.log("agent.log")[logged_before:]
    assert "Traceback" not in log and "Fatal error" not in log, log
    lines = log.splitlines()
    assert len([line for line in lines if "nowhere" in line]) == 1, log
    for method in (mirror.SUBSCRIBE, steal.SUBSCRIBE):
        assert len([line for line in lines if method in line]) == 1, log
    assert len([line for line in lines if files.MKDIR in line]) <= 1, log


def test_idle_connections_before_hello_are_bounded_and_crowded_out_oldest_first(
    pod: Pod,
) -> None:
    idle = [socket.create_connection((pod.pod_ip, pod.agent_port)) for _ in range(40)]
    try:
        for sock in idle:
            sock.settimeout(3)  # well under the handshake deadline

        def closed_by_the_agent(sock: socket.socket) -> bool:
            try:
                return sock.recv(1) == b""
            except TimeoutError:
                return False
            except OSError:
                return True

        _a_session_works(pod)  # a real client gets in: it is the newest
        assert all(closed_by_the_agent(sock) for sock in idle[:8])
        assert "connections wait for their handshake: closing the oldest" in pod.log("agent.log")
    finally:
        for sock in idle:
            sock.close()
