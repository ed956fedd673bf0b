"""`pods/NAME/portforward` over SPDY/3.1, as the kubelet and kubectl speak it.

Carried either by the upgraded HTTP connection (`Upgrade: SPDY/3.1`, kubectl's fallback) or by
WebSocket binary messages (`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31's default): the
bytes inside are the same. Wire facts (kubelet's `httpstream.go`, containerd's port-forward):

- each forwarded connection is a pair of streams the client opens, with headers `streamtype`
  (`error` or `data`), `port` and `requestid` (without it, the id is derived from the stream
  id: an error stream's own id, a data stream's id minus 2); a stream with a missing or bad
  `port` or `streamtype` is reset; every other stream is answered at once with SYN_REPLY,
  before the pod is connected, so data can arrive first and waits;
- a pair not complete within 30 s gets "timed out waiting for streams" on its error stream;
- when the pair is complete the node connects to 127.0.0.1:PORT in the pod; a refusal is
  written as text on the error stream, then both streams are closed (FIN);
- otherwise bytes are relayed both ways; a FIN from the client half-closes the pod
  connection; once either direction has ended the other gets 1 s (containerd's grace), then
  both streams are closed, the error stream empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import WSMsgType, web

from podside.sandbox.api import spdy
from podside.sandbox.api.store import Object
from podside_protocol.addresses import port_from_text

if TYPE_CHECKING:
    from podside.sandbox.api.server import NodeConnector

log = logging.getLogger(__name__)

STREAM_CREATION_TIMEOUT = 30.0
# containerd waits this long for the second direction once the first has ended.
CLOSE_GRACE = 1.0
READ_CHUNK = 256 * 1024
# Bytes for the pod may wait in its socket's buffer up to this much before the session stops
# reading the client (spdystream has no flow control: a slow pod slows the whole connection).
WRITE_HIGH_WATER = 4 * 1024 * 1024
# A client that sends this much before its pod connection exists is refused.
MAX_EARLY_DATA = 4 * 1024 * 1024


def connection_refused_message(pod: Object, port: int, netns: str, error: OSError) -> str:
    """The kubelet's wording, so clients that show it read the same on the sandbox."""
    reason = os.strerror(error.errno).lower() if error.errno else str(error)
    return (
        f"error forwarding port {port} to pod {pod['metadata']['uid']}, uid : failed to execute "
        f'portforward in network namespace "{netns}": failed to connect to localhost:{port} '
        f'inside namespace "{pod["metadata"]["uid"]}", IPv4: dial tcp4 127.0.0.1:{port}: connect: '
        f"{reason} IPv6 dial tcp6 [::1]:{port}: connect: {reason} "
    )


class Carrier(Protocol):
    """The byte stream the SPDY session rides on."""

    async def receive(self) -> bytes | None: ...

    async def send(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class WebSocketCarrier:
    """SPDY inside WebSocket binary messages; a message boundary means nothing."""

    def __init__(self, websocket: web.WebSocketResponse) -> None:
        self.websocket = websocket

    async def receive(self) -> bytes | None:
        message = await self.websocket.receive()
        if message.type == WSMsgType.BINARY:
            return bytes(message.data)
        return None  # close, error, or a text message the tunnel never sends

    async def send(self, data: bytes) -> None:
        await self.websocket.send_bytes(data)

    async def close(self) -> None:
        await self.websocket.close(code=1000)


class UpgradedCarrier(asyncio.Protocol):
    """The HTTP connection itself after `101 Switching Protocols`: the transport is taken from
    aiohttp's handler (its parser would read SPDY as HTTP) and given back when it is lost."""

    def __init__(self, transport: asyncio.Transport, owner: asyncio.BaseProtocol) -> None:
        self.transport = transport
        self.owner = owner
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.writable = asyncio.Event()
        self.writable.set()
        self.reading_paused = False
        transport.set_protocol(self)

    def data_received(self, data: bytes) -> None:
        self.chunks.put_nowait(data)
        if self.chunks.qsize() > 64 and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.chunks.put_nowait(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.chunks.put_nowait(None)
        self.writable.set()
        self.owner.connection_lost(exc)  # aiohttp's handler learns its connection ended

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    async def receive(self) -> bytes | None:
        chunk = await self.chunks.get()
        if self.reading_paused and self.chunks.qsize() < 16:
            self.reading_paused = False
            self.transport.resume_reading()
        return chunk

    async def send(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("the port-forward connection is closed")
        self.transport.write(data)
        await self.writable.wait()

    async def close(self) -> None:
        self.transport.close()


@dataclass
class _Pair:
    request_id: str
    error_stream: int | None = None
    data_stream: int | None = None
    port: int = 0  # the data stream's, which the kubelet forwards to
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Forward:
    """One forwarded connection: the pair's streams and, once made, the pod's socket."""

    error_stream: int
    data_stream: int
    early: list[bytes] = field(default_factory=list)
    early_size: int = 0
    client_finished: bool = False
    writer: asyncio.StreamWriter | None = None
    client_done: asyncio.Event = field(default_factory=asyncio.Event)


class SpdySession:
    """One port-forward connection: any number of forwarded connections, each a stream pair."""

    def __init__(
        self,
        pod: Object,
        node: NodeConnector,
        carrier: Carrier,
    ) -> None:
        self.pod = pod
        self.node = node
        self.carrier = carrier
        self.connection = spdy.ServerConnection()
        self.send_lock = asyncio.Lock()
        self.pairs: dict[str, _Pair] = {}
        self.forwards: dict[int, _Forward] = {}  # by data stream id
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while (data := await self.carrier.receive()) is not None:
                for event in self.connection.receive_data(data):
                    await self._handle(event)
                await self.flush()
        except spdy.SpdyProtocolError as error:
            log.info("port-forward of %s: %s", self.pod["metadata"]["name"], error)
            self.connection.go_away(spdy.PROTOCOL_ERROR)
            with contextlib.suppress(ConnectionError):
                await self.flush()
        except ConnectionError:
            pass
        finally:
            for pair in self.pairs.values():
                if pair.timer is not None:
                    pair.timer.cancel()
            for task in list(self.tasks):
                task.cancel()
            for forward in self.forwards.values():
                if forward.writer is not None:
                    forward.writer.close()
            await self.carrier.close()

    async def flush(self) -> None:
        async with self.send_lock:
            data = self.connection.data_to_send()
            if data:
                await self.carrier.send(data)

    async def _handle(self, event: spdy.Event) -> None:
        if isinstance(event, spdy.StreamOpened):
            self._stream_opened(event)
        elif isinstance(event, spdy.DataReceived):
            await self._client_data(event)
        elif isinstance(event, spdy.StreamReset):
            forward = self.forwards.get(event.stream_id)
            if forward is not None:
                forward.client_finished = True
                forward.client_done.set()
                if forward.writer is not None:
                    forward.writer.close()

    def _stream_opened(self, event: spdy.StreamOpened) -> None:
        headers = {name: values[0] for name, values in event.headers.items() if values}
        port = headers.get("port", "")
        stream_type = headers.get("streamtype", "")
        valid_port = port_from_text(port) is not None
        if not valid_port or stream_type not in ("error", "data"):
            self.connection.reset(event.stream_id, spdy.CANCEL)
            return
        self.connection.reply(event.stream_id)
        request_id = headers.get("requestid") or str(
            event.stream_id if stream_type == "error" else event.stream_id - 2
        )
        pair = self.pairs.get(request_id)
        if pair is None:
            pair = self.pairs[request_id] = _Pair(request_id)
            pair.timer = asyncio.get_running_loop().call_later(
                STREAM_CREATION_TIMEOUT, self._pair_timed_out, request_id
            )
        if (pair.error_stream if stream_type == "error" else pair.data_stream) is not None:
            if pair.error_stream is not None:
                self.connection.send_data(
                    pair.error_stream,
                    f"error processing stream for request {request_id}: "
                    f"{stream_type} stream already assigned".encode(),
                )
            return
        if stream_type == "error":
            pair.error_stream = event.stream_id
        else:
            pair.data_stream = event.stream_id
            pair.port = int(port)
        if pair.error_stream is not None and pair.data_stream is not None:
            if pair.timer is not None:
                pair.timer.cancel()
            del self.pairs[request_id]
            forward = _Forward(pair.error_stream, pair.data_stream)
            self.forwards[pair.data_stream] = forward
            self._spawn(self._forward(forward, pair.port))

    def _pair_timed_out(self, request_id: str) -> None:
        pair = self.pairs.pop(request_id, None)
        if pair is None or pair.error_stream is None:
            return
        self.connection.send_data(
            pair.error_stream, f"request={request_id}: timed out waiting for streams".encode()
        )
        self._spawn(self.flush())

    async def _client_data(self, event: spdy.DataReceived) -> None:
        forward = self.forwards.get(event.stream_id)
        if forward is None:
            return  # an error stream's data (kubectl sends none) or a stream already done
        if forward.writer is None:
            forward.early.append(event.data)
            forward.early_size += len(event.data)
            if forward.early_size > MAX_EARLY_DATA:
                raise spdy.SpdyProtocolError("too much data before the pod connection")
        elif event.data:
            forward.writer.write(event.data)
            if forward.writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                with contextlib.suppress(ConnectionError):
                    await forward.writer.drain()
        if event.fin:
            forward.client_finished = True
            if forward.writer is not None:
                self._half_close(forward.writer)
                forward.client_done.set()

    async def _forward(self, forward: _Forward, port: int) -> None:
        try:
            try:
                sock: socket.socket = await self.node.connect(self.pod, port)
            except OSError as error:
                message = connection_refused_message(
                    self.pod, port, self.node.netns_path(self.pod), error
                )
                self.connection.send_data(forward.error_stream, message.encode())
                return
            reader, writer = await asyncio.open_connection(sock=sock, limit=READ_CHUNK)
            forward.writer = writer
            for chunk in forward.early:
                writer.write(chunk)
            forward.early.clear()
            if forward.client_finished:
                self._half_close(writer)
                forward.client_done.set()
            pod_side = asyncio.ensure_future(self._pod_to_client(reader, forward.data_stream))
            client_side = asyncio.ensure_future(forward.client_done.wait())
            try:
                _, pending = await asyncio.wait(
                    (pod_side, client_side), return_when=asyncio.FIRST_COMPLETED
                )
                if pending:
                    await asyncio.wait(pending, timeout=CLOSE_GRACE)
            finally:
                pod_side.cancel()
                client_side.cancel()
                writer.close()
        finally:
            self.forwards.pop(forward.data_stream, None)
            for stream_id in (forward.data_stream, forward.error_stream):
                if self.connection.is_open(stream_id):
                    self.connection.close_stream(stream_id)
            with contextlib.suppress(ConnectionError):
                await self.flush()

    async def _pod_to_client(self, reader: asyncio.StreamReader, stream_id: int) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(READ_CHUNK):
                self.connection.send_data(stream_id, chunk)
                await self.flush()

    @staticmethod
    def _half_close(writer: asyncio.StreamWriter) -> None:
        if writer.can_write_eof() and not writer.transport.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
