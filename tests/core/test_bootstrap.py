"""The bootstrap as a real process on real sockets, run by this machine's interpreter outside
podside's virtual environment (as a plain python image has no podside): it takes only the code
its arguments name, closes what is not a delivery, survives idle connections (more than it
reads at once) and hostile ones, and runs the agent on its own listening socket; it refuses a
Python older than the agent needs, and the agent refuses to run under another protocol's
mark."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from podside.kube.agent_code import agent_code, bootstrap_source
from podside.session import AgentSession
from podside_agent.bootstrap import MAGIC, MAX_DELIVERIES
from podside_protocol.tokens import new_token, verifier_of
from tests.topology import PYTHON

PLAIN_PYTHON = [getattr(sys, "_base_executable", None) or sys.executable, "-s"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _bootstrap(token: str, *extra: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    code, port = agent_code(), _free_port()
    process = subprocess.Popen(
        [
            *(*PLAIN_PYTHON, "-c", bootstrap_source()),
            *("--code-sha256", code.sha256, "--code-size", str(code.size)),
            *("--port", str(port), "--target-pid", str(os.getpid()), *extra),
        ],
        env={"PATH": "/usr/bin:/bin", "PODSIDE_AGENT_TOKEN_SHA256": verifier_of(token)},
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "waiting for code" in process.stdout.readline()
        yield process, port
    finally:
        process.terminate()
        process.wait(10)


def _deliver(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(data)
        answer = b""
        while piece := conn.recv(4096):
            answer += piece
        return answer


async def _session(port: int, token: str) -> dict[str, object]:
    session = AgentSession(token, description="the bootstrapped agent")
    await session.connect_tcp("127.0.0.1", port)
    try:
        assert session.welcome is not None
        return dict(session.welcome.info)
    finally:
        await session.close()


def test_only_the_named_code_starts_the_agent_on_the_same_port() -> None:
    token = new_token()
    code = agent_code()
    with _bootstrap(token) as (process, port):
        # More idle connections than it reads at once: the oldest make room.
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_DELIVERIES + 4)]
        # A podside client that came before the code: closed at once, without a word.
        assert _deliver(port, b"\x00\x00\x00\x20not a delivery") == b""
        wrong = MAGIC + bytes(code.size)
        assert _deliver(port, wrong) == (
            b"refused: this code's SHA-256 is not the one the agent's container names\n"
        )
        assert _deliver(port, MAGIC + code.data) == b"ok\n"
        info = asyncio.run(_session(port, token))
        assert info["heartbeat_timeout"] == 3.0
        for conn in idle:
            conn.close()
        assert process.stdout is not None
        rest = process.stdout.readline() + process.stdout.readline()
        assert "refused a delivery" in rest
        assert "listening on 127.0.0.1:" in rest


def test_a_python_older_than_the_agent_needs_is_one_line() -> None:
    runner = (
        "import sys; sys.argv[1:] = ['--port', '1', '--code-sha256', 'ab', '--code-size', '1']\n"
        "import podside_agent.bootstrap as bootstrap\n"
        "bootstrap.MINIMUM_PYTHON = (99, 0)\n"
        "raise SystemExit(bootstrap.main(sys.argv[1:]))\n"
    )
    result = subprocess.run([PYTHON, "-c", runner], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    version = sys.version.split()[0]
    assert result.stderr == (
        f"podside-agent: the agent needs Python 99.0 or newer; this image has {version}\n"
    )


def test_an_agent_marked_with_another_protocol_does_not_start() -> None:
    result = subprocess.run(
        [PYTHON, "-m", "podside_agent", "--port", str(_free_port()), "--token", new_token()],
        env={"PATH": "/usr/bin:/bin", "PODSIDE_AGENT_PROTOCOL": "0"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "podside-agent: this agent speaks protocol version 1, but its container is marked "
        "PODSIDE_AGENT_PROTOCOL=0: use the agent image of the same podside release"
    ]
