"""Protocol clients for tests that talk to the agent directly: its status, the copies it sends
a mirror subscriber, and a raw client on a plain socket for tests that misbehave on purpose."""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from podside.session import AgentSession
from podside_agent.peer import Peer
from podside_protocol import (
    Connection,
    Event,
    Pong,
    Response,
    Role,
    StreamOpenRequested,
    Welcome,
    mirror,
    status,
)
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


@dataclass
class MirroredCopy:
    """One `mirror` stream the agent opened: where the connection came from, its bytes."""

    source: tuple[str, int]
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: bool = False  # the agent dropped it (or the client reset the connection)

    def requests(self) -> list[str]:
        """The request lines in the copied bytes ("GET /path")."""
        return [
            f"{method.decode()} {target.decode()}"
            for method, target in re.findall(rb"(?:^|\n)([A-Z]+) (\S+) HTTP/1\.1\r\n", self.data)
        ]


class _Recording:
    """The test's end of one mirror stream: keeps every byte and acknowledges it, or not (a
    subscriber that has stopped keeping up)."""

    def __init__(
        self, peer: Peer, stream_id: int, copy: MirroredCopy, *, acknowledge: bool
    ) -> None:
        self._peer, self._stream_id, self._copy = peer, stream_id, copy
        self._acknowledge = acknowledge

    def data_received(self, data: bytes) -> None:
        self._copy.data += data
        if self._acknowledge:
            self._peer.acknowledge(self._stream_id, len(data))

    def eof_received(self) -> None:
        self._copy.ended = True

    def writable(self) -> None:
        pass

    def reset(self, reason: str) -> None:
        self._copy.ended = self._copy.reset = True


@contextmanager
def mirror_recorder(
    pod: Pod, port: int, *, acknowledge: bool = True
) -> Iterator[list[MirroredCopy]]:
    """A client of its own that mirrors `port` and records each copy the agent sends it, in
    the order the agent opened them (the list grows while the block runs)."""
    copies: list[MirroredCopy] = []
    loop = asyncio.new_event_loop()
    ready: concurrent.futures.Future[AgentSession] = concurrent.futures.Future()

    def record(session: AgentSession, request: StreamOpenRequested) -> bool:
        if request.kind != mirror.STREAM:
            return False
        assert session.peer is not None
        _port, source, _destination = mirror.parse_stream_params(request.params)
        copy = MirroredCopy(source)
        copies.append(copy)
        session.peer.accept_stream(
            request.stream_id,
            _Recording(session.peer, request.stream_id, copy, acknowledge=acknowledge),
        )
        session.peer.send_eof(request.stream_id)  # nothing goes back on a copy
        return True

    async def start() -> None:
        try:
            session = AgentSession(pod.token, description="the test agent")
            session.stream_handlers.append(lambda request: record(session, request))
            host, agent_port = pod.agent_address.split(":")
            await session.connect_tcp(host, int(agent_port))
            await session.request(mirror.SUBSCRIBE, mirror.subscribe_params(port))
        except BaseException as error:
            ready.set_exception(error)
        else:
            ready.set_result(session)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop)
    try:
        session = ready.result(timeout=30)
        try:
            yield copies
        finally:
            asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
