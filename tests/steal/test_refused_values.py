"""A value that would silently steal the whole port (an empty filter) or otherwise not do what
is meant is refused by `podside exec` before it reaches the agent: one line, exit 2. And the
agent refuses such a filter itself, should a client send one."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Iterator

import pytest

from podside.session import AgentSession
from podside_agent.peer import RequestFailed
from podside_protocol import steal
from tests.steal.conftest import agent_status
from tests.topology import PYTHON, Pod, make_pod


@pytest.fixture(scope="module")
def pod() -> Iterator[Pod]:
    with make_pod() as pod:
        pod.start_agent()
        yield pod


# Each value alone; --mode steal with the echo server, which would answer the pod's traffic.
BAD_OPTIONS = [
    ("--path-filter", ""),
    ("--path-filter", "("),
    ("--method-filter", ","),
    ("--method-filter", ""),
    ("--http-filter", "X-Dev:"),
    ("--http-filter", "X Dev: alice"),
    ("--fs-remote", ""),
    ("--fs-local", "[a"),
    ("--agent-timeout", "0"),
    ("--agent-timeout", "-1"),
    ("--agent-timeout", "nan"),
    ("--agent-timeout", "inf"),
]


# Listens on the pod's port (which a steal would take) and ends by itself.
_LISTEN_A_WHILE = "import socket, time; s = socket.create_server(('0.0.0.0', 8080)); time.sleep(2)"


@pytest.mark.parametrize(("flag", "value"), BAD_OPTIONS)
def test_a_bad_value_is_one_line_and_nothing_reaches_the_agent(
    pod: Pod, flag: str, value: str
) -> None:
    before = pod.log("agent.log").count("connected (")
    result = subprocess.run(
        [
            *pod.podside_exec("--mode", "steal", f"{flag}={value}"),
            "--",
            *(PYTHON, "-c", _LISTEN_A_WHILE),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"podside: {flag} "), result.stderr
    assert pod.log("agent.log").count("connected (") == before  # no session, no subscription
    assert agent_status(pod)["stolen_ports"] == {}


async def _subscribe(pod: Pod, params: dict[str, object]) -> str:
    session = AgentSession(pod.token, description="the test agent")
    host, port = pod.agent_address.split(":")
    await session.connect_tcp(host, int(port))
    try:
        await session.request(steal.SUBSCRIBE, {"port": 8080, **params})
    except RequestFailed as refused:
        return str(refused)
    finally:
        await session.close()
    return "accepted"


@pytest.mark.parametrize(
    "params",
    [{"path": ""}, {"methods": [","]}, {"methods": [""]}, {"headers": [["X-Dev", ""]]}],
)
def test_the_agent_refuses_a_bad_filter_in_one_line(pod: Pod, params: dict[str, object]) -> None:
    answer = asyncio.run(_subscribe(pod, params))
    assert answer.startswith("steal refused: ") and "\n" not in answer, answer
    assert agent_status(pod)["stolen_ports"] == {}
    assert "Traceback" not in pod.log("agent.log")
