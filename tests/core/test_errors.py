"""Errors a user can cause: one line on stderr, a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from podside_protocol import Connection, Role
from tests.core.conftest import podside_exec
from tests.topology import PYTHON, Pod, free_port


def _podside(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "podside", *arguments], capture_output=True, text=True, timeout=60
    )


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_unreachable_agent(pod: Pod) -> None:
    port = free_port()
    line = _one_line(_podside("exec", "--agent", f"127.0.0.1:{port}", "--token", "t", "--", "true"))
    assert line == f"podside: cannot reach the agent at 127.0.0.1:{port}: Connection refused"


def test_wrong_token(pod: Pod) -> None:
    result = _podside("exec", "--agent", pod.agent_address, "--token", "wrong", "--", "true")
    assert (
        _one_line(result) == f"podside: the agent at {pod.agent_address} rejected the session token"
    )


@pytest.fixture
def future_agent() -> Iterator[int]:
    """An agent from the future: it speaks protocol version 2 (the real state machine)."""
    loop = asyncio.new_event_loop()
    port = free_port()

    class Future(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.connection = Connection(Role.AGENT, "t", version=2)

        def data_received(self, data: bytes) -> None:
            self.connection.receive_data(data)
            self.transport.writelines(self.connection.data_to_send())  # type: ignore[attr-defined]

    server = loop.run_until_complete(loop.create_server(Future, "127.0.0.1", port))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield port
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_protocol_version_mismatch_names_both_versions(future_agent: int) -> None:
    result = _podside("exec", "--agent", f"127.0.0.1:{future_agent}", "--token", "t", "--", "true")
    assert _one_line(result) == (
        f"podside: the agent at 127.0.0.1:{future_agent} speaks protocol version 2, "
        "this podside speaks version 1: use the same podside release for both"
    )


def test_command_not_found(pod: Pod) -> None:
    result = podside_exec(pod, "no-such-command-xyz")
    assert result.returncode == 127
    assert _one_line(result) == "podside: command not found: no-such-command-xyz"


def test_command_that_cannot_be_executed(pod: Pod, tmp_path: Path) -> None:
    not_executable = tmp_path / "notes.txt"
    not_executable.write_text("just text\n")
    not_executable.chmod(0o644)
    result = podside_exec(pod, str(not_executable))
    assert result.returncode == 126
    assert _one_line(result) == f"podside: cannot run {not_executable}: Permission denied"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((), "podside: no program to run: put it after --"),
        (
            ("--outgoing-local", "10.0.0.0/33"),
            "podside: --outgoing-local '10.0.0.0/33': expected CIDR[:PORT]",
        ),
        (("--port-map", "80"), "podside: --port-map '80': expected LOCAL:REMOTE ports"),
        (("--env", "NOVALUE"), "podside: --env 'NOVALUE': expected NAME=VALUE"),
    ],
)
def test_bad_options(pod: Pod, arguments: tuple[str, ...], message: str) -> None:
    command = ("--", "true") if arguments else ()
    result = _podside(
        "exec", "--agent", pod.agent_address, "--token", pod.token, *arguments, *command
    )
    assert _one_line(result).startswith(message)


def test_agent_without_a_token_says_so() -> None:
    result = subprocess.run(
        [PYTHON, "-m", "podside_agent", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert _one_line(result) == (
        "podside-agent: a session token is required "
        "(--token, --token-sha256 or $PODSIDE_AGENT_TOKEN_SHA256)"
    )


def test_agent_on_a_busy_port_says_so() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [PYTHON, "-m", "podside_agent", "--port", str(port), "--token", "t"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert (
        _one_line(result)
        == f"podside-agent: cannot listen on 127.0.0.1:{port}: Address already in use"
    )


def test_outgoing_unix_needs_a_target() -> None:
    result = _podside("exec", "--targetless", "--outgoing-unix", "^/run/", "--", "true")
    assert result.returncode == 2
    assert _one_line(result) == (
        "podside: --outgoing-unix connects to the target's sockets: --targetless has none"
    )
