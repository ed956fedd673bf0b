"""An agent started with only a token's verifier accepts that token and nothing the verifier
shows; more tokens are enrolled over the pod-local socket, and only by a peer that holds what
the agent holds (its uid and capabilities), never by the pod's other processes."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from podside_protocol import Connection, Role
from podside_protocol.tokens import MAX_VERIFIERS, new_token, verifier_of
from tests.topology import PYTHON, Pod, make_pod, wait_for

# What `setpriv` needs to drop around the enrolling program.
AS_NOBODY = ("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups")
WITHOUT_NET_ADMIN = ("setpriv", "--inh-caps", "-net_admin", "--bounding-set", "-net_admin")
WITHOUT_CAPABILITIES = ("setpriv", "--inh-caps", "-all", "--bounding-set", "-all")
# A user namespace of its own gives a process every capability, counted only inside it.
IN_A_USER_NAMESPACE = ("unshare", "--user", "--map-root-user")
# What a process of the pod with no capabilities at all can do without exec (which would
# drop them again, its uid being unmapped there): unshare(CLONE_NEWUSER), then connect.
UNSHARED_ENROLL = (
    "import ctypes, runpy, sys; "
    "assert ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0, ctypes.get_errno(); "
    "sys.argv[0] = 'podside_agent'; runpy.run_module('podside_agent', run_name='__main__')"
)


@pytest.fixture(scope="module")
def pod() -> Iterator[Pod]:
    with make_pod() as pod:
        # As podside starts it in a cluster: the verifier given, the token nowhere.
        pod.spawn(
            pod.in_pod(
                *(PYTHON, "-m", "podside_agent", "--listen", "0.0.0.0"),
                *("--port", str(pod.agent_port), "--token-sha256", verifier_of(pod.token)),
            ),
            "agent.log",
        )
        wait_for(lambda: "listening on" in pod.log("agent.log"), what="the agent to listen")
        yield pod


def handshake(pod: Pod, token: str) -> str:
    """The state a client presenting `token` ends in: "open", or "closed" when rejected."""
    client = Connection(Role.CLIENT, token, name="enrollment-test")
    with socket.create_connection((pod.pod_ip, pod.agent_port), timeout=10) as sock:
        sock.sendall(b"".join(client.data_to_send()))
        while client.state.value == "awaiting welcome" and (piece := sock.recv(65536)):
            client.receive_data(piece)
    return client.state.value


def enroll(
    pod: Pod, token: str, *wrapper: str, program: tuple[str, ...] = ("-m", "podside_agent")
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        pod.in_pod(
            *wrapper,
            *(PYTHON, *program, "--enroll", "--port", str(pod.agent_port)),
            *("--token-sha256", verifier_of(token)),
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_agent_accepts_the_token_and_not_its_verifier(pod: Pod) -> None:
    assert handshake(pod, pod.token) == "open"
    assert handshake(pod, verifier_of(pod.token)) == "closed"
    assert handshake(pod, "") == "closed"


def test_a_peer_with_the_agents_uid_and_capabilities_enrolls_a_token(pod: Pod) -> None:
    token = new_token()
    assert handshake(pod, token) == "closed"
    result = enroll(pod, token)
    assert result.returncode == 0, result.stderr
    assert handshake(pod, token) == "open"
    assert handshake(pod, pod.token) == "open"  # the first token still works


def test_a_non_root_process_in_the_pod_cannot_enroll(pod: Pod) -> None:
    token = new_token()
    result = enroll(pod, token, *AS_NOBODY)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"podside-agent: enrolling with the agent on port {pod.agent_port}: "
        "refused: the peer runs as uid 65534, the agent as uid 0"
    )
    assert handshake(pod, token) == "closed"
    assert "refused an enrollment" in pod.log("agent.log")


def test_a_root_process_without_the_agents_capabilities_cannot_enroll(pod: Pod) -> None:
    token = new_token()
    result = enroll(pod, token, *WITHOUT_NET_ADMIN)
    assert result.returncode == 1
    assert "refused: the peer lacks capabilities the agent has (mask 0x1000)" in result.stderr
    assert handshake(pod, token) == "closed"


@pytest.mark.parametrize(
    ("who", "program"),
    [
        # A root app of the pod lacking NET_ADMIN, which `unshare -r` gives back inside.
        ((*WITHOUT_NET_ADMIN, *IN_A_USER_NAMESPACE), ("-m", "podside_agent")),
        # Root with no capabilities at all, unsharing its user namespace itself.
        (WITHOUT_CAPABILITIES, ("-c", UNSHARED_ENROLL)),
    ],
    ids=["root-without-net-admin-after-unshare", "root-without-capabilities-unsharing"],
)
def test_capabilities_held_in_a_user_namespace_of_its_own_do_not_enroll(
    pod: Pod, who: tuple[str, ...], program: tuple[str, ...]
) -> None:
    token = new_token()
    result = enroll(pod, token, *who, program=program)
    assert result.returncode == 1, result.stdout
    assert result.stderr.strip() == (
        f"podside-agent: enrolling with the agent on port {pod.agent_port}: refused: the "
        "peer runs in another user namespace than the agent (its capabilities count there only)"
    )
    assert handshake(pod, token) == "closed"


def test_enrolling_needs_the_agents_network_namespace(pod: Pod) -> None:
    """The socket is abstract, so it exists in the pod's network namespace only."""
    result = subprocess.run(
        [PYTHON, "-m", "podside_agent", "--enroll", "--port", str(pod.agent_port)],
        env={"PODSIDE_AGENT_TOKEN_SHA256": verifier_of(new_token()), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no agent listens for enrollments on port" in result.stderr


# Enrolls verifiers of the tokens "filler-0", "filler-1", ... given their count, in one
# process of the pod (a container each would take minutes).
ENROLL_FILLERS = (
    "import sys; from podside_agent.bootstrap import enroll; "
    "from podside_protocol.tokens import verifier_of; "
    "port, count = int(sys.argv[1]), int(sys.argv[2]); "
    "[enroll(port, verifier_of(f'filler-{n}')) for n in range(count)]"
)


def test_a_full_agent_makes_room_for_a_new_session_by_dropping_the_longest_unused() -> None:
    """Sessions without a cached token (CI, another machine) enroll one each: a busy shared
    agent, never idle long enough to exit, must not turn every newcomer away for good."""
    with make_pod() as pod:
        pod.spawn(
            pod.in_pod(
                *(PYTHON, "-m", "podside_agent", "--listen", "0.0.0.0"),
                *("--port", str(pod.agent_port), "--token-sha256", verifier_of(pod.token)),
            ),
            "agent.log",
        )
        wait_for(lambda: "listening on" in pod.log("agent.log"), what="the agent to listen")
        fill = subprocess.run(
            pod.in_pod(PYTHON, "-c", ENROLL_FILLERS, str(pod.agent_port), str(MAX_VERIFIERS - 1)),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert fill.returncode == 0, fill.stderr
        assert handshake(pod, "filler-1") == "open"
        assert handshake(pod, pod.token) == "open"  # the starter's session connects again
        newcomer = new_token()
        result = enroll(pod, newcomer)
        assert result.returncode == 0, result.stderr
        assert handshake(pod, newcomer) == "open"
        # The verifier used longest ago made room; those used since were kept.
        assert handshake(pod, "filler-0") == "closed"
        assert handshake(pod, "filler-1") == "open"
        assert handshake(pod, pod.token) == "open"


# Keeps `count` idle connections to the enrollment socket of the agent on `port` open, ever
# replacing the oldest with a new one, until killed: what any process of the pod may do,
# whatever its uid.
FLOOD_ENROLLMENT_SOCKET = (
    "import socket, sys; from podside_agent.bootstrap import enrollment_socket as socket_name; "
    "port, count = int(sys.argv[1]), int(sys.argv[2]); held = []\n"
    "while True:\n"
    "    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); sock.connect(socket_name(port))\n"
    "    held.append(sock)\n"
    "    if len(held) == count: print('flooding', flush=True)\n"
    "    if len(held) > count: held.pop(0).close()"
)
FLOOD_DESCRIPTOR_LIMIT = 1024


def test_idle_enrollment_connections_cannot_use_up_the_agents_descriptors() -> None:
    """Connections to the enrollment socket before their line are bounded, as the agent's
    handshakes are: a pod process that keeps opening them keeps no client from connecting."""
    with make_pod() as pod:
        agent = pod.spawn(
            pod.in_pod(
                *("prlimit", f"--nofile={FLOOD_DESCRIPTOR_LIMIT}:{FLOOD_DESCRIPTOR_LIMIT}"),
                *(PYTHON, "-m", "podside_agent", "--listen", "0.0.0.0"),
                *("--port", str(pod.agent_port), "--token-sha256", verifier_of(pod.token)),
            ),
            "agent.log",
        )
        wait_for(lambda: "listening on" in pod.log("agent.log"), what="the agent to listen")
        flood = subprocess.Popen(
            pod.in_pod(
                *AS_NOBODY, PYTHON, "-c", FLOOD_ENROLLMENT_SOCKET, str(pod.agent_port), "3000"
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert flood.stdout is not None
            assert flood.stdout.readline().strip() == "flooding"
            most = 0
            for _ in range(20):
                most = max(most, len(os.listdir(f"/proc/{agent.pid}/fd")))
                time.sleep(0.05)
            states = [handshake(pod, pod.token) for _ in range(3)]
        finally:
            flood.kill()
            flood.wait(timeout=30)
        assert states == ["open"] * 3
        # The agent's own descriptors, those waiting (MAX_WAITING_ENROLLMENTS) and those
        # accepted in one loop turn before their tasks run: far from the limit.
        assert most < FLOOD_DESCRIPTOR_LIMIT // 2, most
