"""pods/portforward over WebSocket, with the wire facts of a real API server and kubelet."""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import Any

import pytest
import websockets

from tests.sandbox.conftest import pod_phase, run_pod, wait_for

ECHO_SERVER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', 7000)); s.listen()\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    while data := c.recv(65536):\n"
    "        c.sendall(data)\n"
    "    c.close()\n"
)


@pytest.fixture
def echo_pod(core: Any, namespace: str) -> tuple[str, str]:
    run_pod(
        core,
        namespace,
        "echo",
        [sys.executable, "-c", ECHO_SERVER],
        terminationGracePeriodSeconds=1,
    )
    wait_for(lambda: pod_phase(core, namespace, "echo") == "Running", what="echo pod running")
    return namespace, "echo"


def _connect(sandbox: Any, path: str, protocol: str) -> Any:
    from podside.sandbox.control import _read_state, admin_token

    port = _read_state(sandbox)["port"]  # type: ignore[index]
    context = ssl.create_default_context(cafile=str(sandbox.ca_cert))
    return websockets.connect(
        f"wss://127.0.0.1:{port}{path}",
        ssl=context,
        subprotocols=[protocol],
        additional_headers={"Authorization": f"Bearer {admin_token(sandbox)}"},
        max_size=32 * 1024 * 1024,
    )


def test_forwarded_bytes_reach_a_server_in_the_pod(sandbox: Any, echo_pod: tuple[str, str]) -> None:
    namespace, name = echo_pod

    async def exchange() -> tuple[list[bytes], bytes]:
        async with _connect(
            sandbox,
            f"/api/v1/namespaces/{namespace}/pods/{name}/portforward?ports=7000",
            "v4.channel.k8s.io",
        ) as ws:
            # The client may send before the port headers arrive.
            await ws.send(b"\x00" + b"hello " * 1000)
            headers = [await ws.recv(), await ws.recv()]
            echoed = b""
            while len(echoed) < 6000:
                message = await ws.recv()
                assert message[0] == 0
                echoed += message[1:]
            return headers, echoed

    headers, echoed = asyncio.run(exchange())
    assert headers == [
        b"\x00" + (7000).to_bytes(2, "little"),
        b"\x01" + (7000).to_bytes(2, "little"),
    ]
    assert echoed == b"hello " * 1000


def test_closed_port_reports_on_the_error_channel(sandbox: Any, echo_pod: tuple[str, str]) -> None:
    namespace, name = echo_pod

    async def exchange() -> tuple[list[Any], int | None]:
        async with _connect(
            sandbox,
            f"/api/v1/namespaces/{namespace}/pods/{name}/portforward?ports=7001",
            "v4.channel.k8s.io",
        ) as ws:
            messages = [message async for message in ws]
            return messages, ws.close_code

    messages, close_code = asyncio.run(exchange())
    errors = [m[1:].decode() for m in messages if m[0] == 1 and len(m) > 3]
    assert "connect: connection refused" in errors[0]
    assert errors[0].startswith("error forwarding port 7001 to pod ")
    assert close_code == 1000


def test_bad_requests_are_rejected(sandbox: Any, echo_pod: tuple[str, str]) -> None:
    namespace, name = echo_pod

    async def status_of(query: str, protocol: str) -> int:
        try:
            async with _connect(
                sandbox, f"/api/v1/namespaces/{namespace}/pods/{name}/portforward{query}", protocol
            ):
                return 101
        except websockets.InvalidStatus as error:
            return int(error.response.status_code)

    assert asyncio.run(status_of("", "v4.channel.k8s.io")) == 400
    assert asyncio.run(status_of("?ports=7000", "v9.channel.k8s.io")) == 403
