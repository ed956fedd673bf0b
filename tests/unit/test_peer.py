"""The Peer shell's boundaries, in memory: a failing stream or request ends only itself, and
answers wait while the other side does not read them."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from typing import Any

import pytest

from podside_agent import peer as peer_module
from podside_agent.peer import Peer, SocketRelay
from podside_protocol import (
    Connection,
    DataReceived,
    Event,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    StreamOpenRequested,
    StreamRefused,
    StreamReset,
)

TOKEN = "t"
MIB = 1024 * 1024


class MemoryTransport(asyncio.Transport):
    """Keeps what the Peer writes; `drained` decides whether the other side has read it."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.unread = 0
        self.reading = True
        self.closed = False
        self.aborted = False  # closed without waiting for the unread output

    def writelines(self, list_of_data: Any) -> None:
        for chunk in list_of_data:
            self.written.append(bytes(chunk))
            self.unread += len(chunk)

    def write(self, data: Any) -> None:
        self.writelines([data])

    def take(self) -> bytes:
        data, self.written = b"".join(self.written), []
        return data

    def get_write_buffer_size(self) -> int:
        return self.unread

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True


class Handler:
    def __init__(self) -> None:
        self.answered = 0

    def handle_request(self, peer: Peer, request: Request) -> Any:
        if request.method == "big":
            self.answered += 1
            return {"data": b"x" * MIB}
        if request.method == "bad params":
            raise RemoteProtocolError("invalid port 'eighty'")
        raise TypeError("unsupported operand type(s) for &: 'str' and 'int'")

    def handle_stream(self, peer: Peer, request: StreamOpenRequested) -> None:
        if request.params.get("fail"):
            raise RemoteProtocolError("invalid address 'nowhere'")
        if request.kind == "unanswered":
            return  # answered later, by the test
        peer.accept_stream(request.stream_id, Exploding() if request.kind == "boom" else Quiet())

    def connection_lost(self, peer: Peer, reason: str) -> None:
        pass


class Quiet:
    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> None:
        pass

    def writable(self) -> None:
        pass

    def reset(self, reason: str) -> None:
        pass


class Exploding(Quiet):
    def data_received(self, data: bytes) -> None:
        raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")


class Pair:
    """A client Connection talking to an agent Peer over a MemoryTransport."""

    def __init__(self) -> None:
        self.client = Connection(Role.CLIENT, TOKEN)
        self.handler = Handler()
        self.peer = Peer(Connection(Role.AGENT, TOKEN), self.handler)
        self.transport = MemoryTransport()
        self.peer.connection_made(self.transport)
        self.send()

    def send(self) -> None:
        self.peer.data_received(b"".join(self.client.data_to_send()))

    async def events(self) -> list[Event]:
        for _ in range(3):
            await asyncio.sleep(0)  # let answers and flushes run
        return self.client.receive_data(self.transport.take())


def run(test: Any) -> None:
    asyncio.run(test())


def test_an_endpoint_that_raises_resets_its_stream_and_the_connection_goes_on() -> None:
    async def test() -> None:
        pair = Pair()
        await pair.events()
        failing = pair.client.open_stream("boom")
        healthy = pair.client.open_stream("quiet")
        pair.send()
        await pair.events()
        pair.client.send_data(failing, b"hello")
        pair.client.send_data(healthy, b"hello")
        pair.send()
        events = await pair.events()
        assert [e for e in events if isinstance(e, StreamReset)] == [
            StreamReset(failing, "OSError: [Errno 107] Transport endpoint is not connected")
        ]
        assert not pair.peer.closed.done() and not pair.transport.closed
        pair.client.send_data(healthy, b"still here")
        pair.send()
        await pair.events()
        assert not pair.peer.closed.done()

    run(test)


def test_an_open_with_bad_parameters_is_refused_with_einval_in_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def test() -> None:
        pair = Pair()
        await pair.events()
        stream = pair.client.open_stream("tcp", {"fail": True})
        pair.send()
        events = await pair.events()
        assert StreamRefused(stream, errno.EINVAL, "invalid address 'nowhere'") in events
        assert not pair.peer.closed.done()

    with caplog.at_level(logging.DEBUG, logger=peer_module.__name__):
        run(test)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is None


@pytest.mark.parametrize(("method", "code"), [("bad params", errno.EINVAL), ("a bug", errno.EIO)])
def test_a_failing_request_gets_a_typed_error_and_one_line_without_traceback(
    caplog: pytest.LogCaptureFixture, method: str, code: int
) -> None:
    async def test() -> None:
        pair = Pair()
        await pair.events()
        request_id = pair.client.send_request(method)
        pair.send()
        (answer,) = [e for e in await pair.events() if isinstance(e, Response)]
        assert answer.request_id == request_id and not answer.ok
        assert answer.result["errno"] == code

    with caplog.at_level(logging.INFO, logger=peer_module.__name__):
        run(test)
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert method.split()[0] in lines[0].getMessage()


async def _turns(count: int = 20) -> None:
    """Let the Peer's queued requests, answers and flushes run."""
    for _ in range(count):
        await asyncio.sleep(0)


async def _flooded() -> tuple[Pair, int]:
    """A Peer sent 100 requests with 1 MiB answers that the other side does not read; and how
    many it answered."""
    pair = Pair()
    await pair.events()
    for _ in range(100):
        pair.client.send_request("big")
    pair.send()
    await _turns()
    return pair, pair.handler.answered


def test_answers_wait_while_the_other_side_does_not_read_them() -> None:
    async def test() -> None:
        pair, answered = await _flooded()
        # Never more than the limit, plus the requests already started when it was reached.
        assert answered <= peer_module.OUTPUT_LIMIT // MIB + peer_module.MAX_ACTIVE_REQUESTS
        assert not pair.transport.reading
        assert pair.peer.draining() is False  # nothing was read
        pair.transport.take()
        pair.transport.unread = 0  # the other side read everything
        assert pair.peer.draining() is True
        pair.peer.resume_writing()
        await _turns()
        assert pair.handler.answered > answered

    run(test)


def test_a_lost_peer_keeps_no_output_or_queued_requests() -> None:
    async def test() -> None:
        pair, answered = await _flooded()
        pair.peer.abort("heartbeat timeout")
        assert pair.transport.aborted
        await _turns()
        assert pair.handler.answered == answered
        assert pair.peer.connection.data_to_send() == []

    run(test)


def test_a_watcher_that_fails_is_dropped_and_the_bytes_still_flow() -> None:
    def broken(data: bytes) -> None:
        raise ValueError("the watcher's bug")

    async def test() -> None:
        pair = Pair()
        await pair.events()
        stream = pair.client.open_stream("quiet")
        pair.send()
        await pair.events()
        relay = SocketRelay(pair.peer, stream, watch=(broken, broken))
        program = MemoryTransport()
        relay.connection_made(program)
        relay.stream_data(b"to the program")
        relay.data_received(b"from the program")
        assert program.take() == b"to the program"
        events = await pair.events()
        assert DataReceived(stream, b"from the program") in events
        assert not relay.finished

    run(test)


def test_an_outgoing_connection_reset_as_it_connects_is_refused_not_left_unanswered() -> None:
    from podside_agent.outgoing import Outgoing

    async def test() -> None:
        pair = Pair()
        await pair.events()
        stream = pair.client.open_stream("unanswered")
        pair.send()
        await pair.events()
        never_connected = socket.socket()  # getpeername fails as after a reset: ENOTCONN
        Outgoing(network=None)._connected(pair.peer, stream, never_connected)  # type: ignore[arg-type]
        events = await pair.events()
        assert StreamRefused(stream, errno.ENOTCONN, os.strerror(errno.ENOTCONN)) in events
        assert never_connected.fileno() == -1

    run(test)
