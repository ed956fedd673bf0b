"""Protocol clients for tests that talk to the agent directly: its status, and a raw client
on a plain socket for tests that misbehave on purpose."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from podside.session import AgentSession
from podside_protocol import Connection, Event, Pong, Response, Role, Welcome, status
from tests.topology import Pod


def agent_status(pod: Pod) -> dict[str, Any]:
    async def ask() -> dict[str, Any]:
        session = AgentSession(pod.token, description="the test agent")
        host, port = pod.agent_address.split(":")
        await session.connect_tcp(host, int(port))
        try:
            result: dict[str, Any] = await session.request(status.STATUS)
        finally:
            await session.close()
        # This client itself is counted: report the others.
        result["clients"] -= 1
        return result

    return asyncio.run(ask())


class RawClient:
    """A protocol client on a plain blocking socket, for tests that misbehave on purpose
    (or check, between misdeeds, that the agent still answers)."""

    def __init__(self, pod: Pod, *, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((pod.pod_ip, pod.agent_port), timeout=timeout)
        self.connection = Connection(Role.CLIENT, pod.token, name="raw-test-client")
        self._events: list[Event] = []
        self._send()
        welcome = self.next_event()
        assert isinstance(welcome, Welcome), welcome

    def _send(self) -> None:
        self.sock.sendall(b"".join(self.connection.data_to_send()))

    def next_event(self) -> Event:
        """The next event from the agent (pongs included); raises EOFError if it closed."""
        while not self._events:
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError("the agent closed the connection")
            self._events.extend(self.connection.receive_data(data))
            self._send()  # PONGs and credit
        return self._events.pop(0)

    def request(self, method: str, params: dict[str, Any]) -> Response:
        request_id = self.connection.send_request(method, params)
        self._send()
        while True:
            event = self.next_event()
            if isinstance(event, Response) and event.request_id == request_id:
                return event

    def ping(self) -> None:
        """One round trip: the agent still reads and answers this client."""
        nonce = self.connection.ping()
        self._send()
        while not (isinstance(event := self.next_event(), Pong) and event.nonce == nonce):
            pass

    def close(self) -> None:
        self.sock.close()
