"""The asyncio shell around a protocol `Connection`, used by the agent and the developer's side.

`Peer` owns one byte-stream transport to the other side (a TCP socket, or a WebSocket
port-forward through an adapter with the same three methods), turns incoming bytes into
protocol events, and hands stream events to the `StreamEndpoint` registered for each stream.
Writes are coalesced: everything queued during one turn of the event loop leaves in one
`writelines` call, so a burst of small frames costs one syscall.

Nothing one stream does ends the connection: an exception from a stream's endpoint, or from
the handler of a stream the other side opens, resets (or refuses) that stream alone, with one
log line. A request whose handler fails gets an error answer and one log line, never a
traceback (client-made errors would flood the log otherwise).

Answers are back-pressured: requests wait in a queue and run a few at a time, none start while
more than `OUTPUT_LIMIT` bytes wait to be written to the other side, and the transport is not
read while that lasts or while the queue is full, so a peer that sends requests without
reading the answers holds a bounded amount of memory (and, silent while it does not read, is
dropped by its heartbeat).

`SocketRelay` joins one stream to one local socket in both directions with the protocol's
flow control: it stops reading the socket while the peer has no credit for it, and
acknowledges received bytes only once the socket has taken them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from podside_protocol import (
    Connection,
    ConnectionClosed,
    DataReceived,
    Event,
    LocalProtocolError,
    Pong,
    RemoteProtocolError,
    Request,
    Response,
    StreamEnded,
    StreamOpened,
    StreamOpenRequested,
    StreamRefused,
    StreamReset,
    StreamWritable,
)

log = logging.getLogger(__name__)

# Bytes that may wait to be written to the other side before requests stop being answered
# (and read): a peer that does not read its answers holds at most about this much.
OUTPUT_LIMIT = 4 * 1024 * 1024
# Requests answered at once; more wait in order. Answers are at most a few MiB each.
MAX_ACTIVE_REQUESTS = 8
# Requests read but not started yet; past this the transport is not read until some start.
MAX_QUEUED_REQUESTS = 64


class ByteTransport(Protocol):
    """What a Peer needs from its transport (asyncio transports already fit)."""

    def writelines(self, list_of_data: list[bytes]) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...


class StreamEndpoint(Protocol):
    """The local end of one stream."""

    def data_received(self, data: bytes) -> None: ...

    def eof_received(self) -> None: ...

    def writable(self) -> None: ...

    def reset(self, reason: str) -> None: ...


OpenCallback = Callable[[dict[str, Any] | BaseException], None]


class RequestFailed(Exception):
    """The peer answered a request with an error; `errno` is set when it named one."""

    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class StreamRefusedError(OSError):
    """The peer refused to open a stream; carries the peer's errno and message."""


class PeerHandler(Protocol):
    """What the owner of a Peer answers: requests and streams the other side opens."""

    def handle_request(self, peer: Peer, request: Request) -> Awaitable[Any] | Any: ...

    def handle_stream(self, peer: Peer, request: StreamOpenRequested) -> None: ...

    def connection_lost(self, peer: Peer, reason: str) -> None: ...


class Peer(asyncio.Protocol):
    """One protocol connection driven by asyncio."""

    def __init__(
        self, connection: Connection, handler: PeerHandler, *, ping_interval: float = 0.0
    ) -> None:
        self.connection = connection
        self.handler = handler
        self.transport: ByteTransport | None = None
        # True while the transport's buffer is above its high-water mark (the peer reads slowly).
        self.writing_paused = False
        self._ping_interval = ping_interval
        self._last_ping = 0.0
        self.endpoints: dict[int, StreamEndpoint] = {}
        self.closed = asyncio.get_running_loop().create_future()
        self.last_heard = asyncio.get_running_loop().time()
        self.handshake: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._pending_requests: dict[int, asyncio.Future[Any]] = {}
        # stream id -> what to call when the peer accepts or refuses a stream we opened
        self._opening: dict[int, OpenCallback] = {}
        self._lost = False
        self._queued_requests: deque[Request] = deque()
        self._answering: set[asyncio.Task[None]] = set()
        self._reading_paused = False
        self._unsent_seen = 0  # the unsent output at the last `draining()` look

    # --- transport side ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.flush()

    def data_received(self, data: bytes) -> None:
        now = self._loop.time()
        self.last_heard = now
        if self._ping_interval and now - self._last_ping >= self._ping_interval:
            # Pinging here too keeps the heartbeat going while the loop is too busy for its
            # timers to run on time (a flood of mirrored connections, for one).
            self.send_ping()
        try:
            events = self.connection.receive_data(data)
        except RemoteProtocolError as error:
            log.warning("closing peer after a protocol error: %s", error)
            self.abort(f"protocol error: {error}")
            return
        for event in events:
            try:
                self._dispatch(event)
            except Exception as error:
                self._event_failed(event, error)
        self.schedule_flush()

    def eof_received(self) -> bool | None:
        self._lose("the other side closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(str(exc) if exc else "connection closed")

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._answer_queued()

    # --- back-pressure -------------------------------------------------------------------------

    def _unsent(self) -> int:
        """Bytes written to the transport that the other side has not taken yet."""
        if isinstance(self.transport, asyncio.WriteTransport):
            return self.transport.get_write_buffer_size()
        return 0

    def _output_full(self) -> bool:
        return self._unsent() > OUTPUT_LIMIT

    def draining(self) -> bool:
        """Whether the other side took some of our unsent output since the last look: a
        peer that reads what we send is alive even while we do not read what it sends."""
        unsent, before = self._unsent(), self._unsent_seen
        self._unsent_seen = unsent
        return self._reading_paused and unsent < before

    def _answer_queued(self) -> None:
        """Start waiting requests while there is room, and read only while there is."""
        while (
            self._queued_requests
            and len(self._answering) < MAX_ACTIVE_REQUESTS
            and not self._output_full()
            and not self._lost
        ):
            task = self._loop.create_task(self._answer(self._queued_requests.popleft()))
            self._answering.add(task)
            task.add_done_callback(self._answered)
        full = len(self._queued_requests) >= MAX_QUEUED_REQUESTS or self._output_full()
        if full != self._reading_paused and isinstance(self.transport, asyncio.ReadTransport):
            if self.transport.is_closing():
                return
            self._reading_paused = full
            if full:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _answered(self, task: asyncio.Task[None]) -> None:
        self._answering.discard(task)
        self._answer_queued()

    # --- sending -------------------------------------------------------------------------------

    def send_ping(self) -> None:
        if self.connection.state.value == "open":
            self._last_ping = self._loop.time()
            self.connection.ping()
            self.schedule_flush()

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        chunks = self.connection.data_to_send()
        if chunks and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(chunks)

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        request_id = self.connection.send_request(method, params)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending_requests[request_id] = future
        self.schedule_flush()
        return await future

    def open_stream_then(
        self, kind: str, params: dict[str, Any], endpoint: StreamEndpoint, done: OpenCallback
    ) -> int:
        """Open a stream; `done(info)` runs as soon as the peer answers, from within the
        event that carries the answer: the info dict, or a StreamRefusedError/ConnectionError.
        """
        stream_id = self.connection.open_stream(kind, params)
        self._opening[stream_id] = done
        self.endpoints[stream_id] = endpoint
        self.flush()  # someone waits for the answer (a program in connect()): no batching
        return stream_id

    async def open_stream(
        self, kind: str, params: dict[str, Any], endpoint: StreamEndpoint
    ) -> tuple[int, dict[str, Any]]:
        """Open a stream and wait for the peer to accept it; raises StreamRefusedError."""
        future: asyncio.Future[dict[str, Any]] = self._loop.create_future()

        def done(result: dict[str, Any] | BaseException) -> None:
            if future.done():
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        stream_id = self.open_stream_then(kind, params, endpoint, done)
        try:
            info = await future
        except BaseException:
            self._opening.pop(stream_id, None)
            self.endpoints.pop(stream_id, None)
            self.connection.reset_stream(stream_id, "cancelled")
            self.schedule_flush()
            raise
        return stream_id, info

    def open_stream_nowait(
        self, kind: str, params: dict[str, Any], endpoint: StreamEndpoint
    ) -> int:
        """Open a stream without waiting; data may be sent at once and waits for acceptance."""
        stream_id = self.connection.open_stream(kind, params)
        self.endpoints[stream_id] = endpoint
        self.schedule_flush()
        return stream_id

    def accept_stream(
        self, stream_id: int, endpoint: StreamEndpoint, info: dict[str, Any] | None = None
    ) -> None:
        self.endpoints[stream_id] = endpoint
        self.connection.accept_stream(stream_id, info)
        self.flush()  # the other side waits for this answer

    def refuse_stream(self, stream_id: int, errno: int, message: str) -> None:
        self.connection.refuse_stream(stream_id, errno, message)
        self.flush()

    def send_data(self, stream_id: int, data: bytes) -> int:
        pending = self.connection.send_data(stream_id, data)
        self.schedule_flush()
        return pending

    def send_eof(self, stream_id: int) -> None:
        self.connection.send_eof(stream_id)
        self.schedule_flush()

    def reset_stream(self, stream_id: int, reason: str) -> None:
        self.endpoints.pop(stream_id, None)
        self.connection.reset_stream(stream_id, reason)
        self.schedule_flush()

    def acknowledge(self, stream_id: int, count: int) -> None:
        self.connection.acknowledge(stream_id, count)
        self.schedule_flush()

    def forget_stream(self, stream_id: int) -> None:
        """Stop routing events for a stream that has finished in both directions."""
        self.endpoints.pop(stream_id, None)

    def close(self, reason: str = "") -> None:
        """Say goodbye and close the transport once the goodbye is written."""
        self.connection.close(reason)
        self.flush()
        if self.transport is not None:
            self.transport.close()
        self._lose(reason or "closed")

    def abort(self, reason: str) -> None:
        """Drop the connection now, discarding what was not written yet."""
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.abort()
        elif self.transport is not None:
            self.transport.close()
        self._lose(reason)

    # --- receiving -----------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            endpoint = self.endpoints.get(event.stream_id)
            if endpoint is not None:
                endpoint.data_received(event.data)
            else:
                self.connection.acknowledge(event.stream_id, len(event.data))
        elif isinstance(event, StreamWritable):
            endpoint = self.endpoints.get(event.stream_id)
            if endpoint is not None:
                endpoint.writable()
        elif isinstance(event, StreamEnded):
            endpoint = self.endpoints.get(event.stream_id)
            if endpoint is not None:
                endpoint.eof_received()
        elif isinstance(event, StreamReset):
            endpoint = self.endpoints.pop(event.stream_id, None)
            opening = self._opening.pop(event.stream_id, None)
            if opening is not None:
                opening(StreamRefusedError(0, event.reason))
            if endpoint is not None:
                endpoint.reset(event.reason)
        elif isinstance(event, StreamOpened):
            opening = self._opening.pop(event.stream_id, None)
            if opening is not None:
                opening(event.info)
        elif isinstance(event, StreamRefused):
            endpoint = self.endpoints.pop(event.stream_id, None)
            opening = self._opening.pop(event.stream_id, None)
            if opening is not None:
                opening(StreamRefusedError(event.errno, event.message))
            elif endpoint is not None:
                endpoint.reset(event.message)
        elif isinstance(event, StreamOpenRequested):
            self.handler.handle_stream(self, event)
        elif isinstance(event, Request):
            self._queued_requests.append(event)
            self._answer_queued()
        elif isinstance(event, Response):
            future = self._pending_requests.pop(event.request_id, None)
            if future is not None and not future.done():
                if event.ok:
                    future.set_result(event.result)
                else:
                    future.set_exception(_request_failure(event.result))
        elif isinstance(event, ConnectionClosed):
            self._lose(event.reason or "the other side said goodbye")
        elif isinstance(event, Pong):
            pass  # any frame already refreshed last_heard
        elif not self.handshake.done():
            self.handshake.set_result(event)

    def _event_failed(self, event: Event, error: Exception) -> None:
        """An event's handler failed: end what the event belongs to, never the connection."""
        stream_id = getattr(event, "stream_id", None)
        if isinstance(stream_id, int):
            self._fail_stream(stream_id, error)
        else:
            log.warning("ignored a failure handling %s: %s", type(event).__name__, _say(error))
            log.debug("the failure", exc_info=error)

    def _fail_stream(self, stream_id: int, error: Exception) -> None:
        """Reset (or refuse, if not answered yet) one stream whose handling raised."""
        if isinstance(error, RemoteProtocolError):
            code, message = errno.EINVAL, str(error)
            log.warning("refused stream %d: %s", stream_id, message)
        else:
            code = error.errno if isinstance(error, OSError) and error.errno else errno.EIO
            message = _say(error)
            log.warning("stream %d failed and was reset: %s", stream_id, message)
            log.debug("the failure", exc_info=error)
        endpoint = self.endpoints.pop(stream_id, None)
        opening = self._opening.pop(stream_id, None)
        self.connection.abandon_stream(stream_id, code, message)
        self.schedule_flush()
        if opening is not None:
            with contextlib.suppress(Exception):
                opening(StreamRefusedError(code, message))
        if endpoint is not None:
            with contextlib.suppress(Exception):
                endpoint.reset(message)

    async def _answer(self, request: Request) -> None:
        try:
            result = self.handler.handle_request(self, request)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
        except RequestFailed as failure:
            self._refuse(request, str(failure), failure.errno)
        except OSError as error:
            self._refuse(request, error.strerror or str(error), error.errno or 0)
        except RemoteProtocolError as error:
            self._refuse(request, str(error), errno.EINVAL, log_it=True)
        except Exception as error:
            log.debug("the failure of request %s", request.method, exc_info=error)
            self._refuse(request, _say(error), errno.EIO, log_it=True)
        else:
            try:
                self.connection.send_response(request.request_id, result)
            except LocalProtocolError as error:  # an answer too large for one frame, say
                self._refuse(request, str(error), errno.EMSGSIZE, log_it=True)
        self.schedule_flush()

    def _refuse(self, request: Request, message: str, code: int, *, log_it: bool = False) -> None:
        """Answer a request with an error; `log_it` for failures that are not the answer."""
        if log_it:
            log.warning("refused a %s request: %s", request.method, message)
        self.connection.send_response(
            request.request_id, {"message": message, "errno": code}, ok=False
        )

    def _lose(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        # Nothing more is sent: what is still queued for the other side is dropped, with the
        # requests not started yet, so a peer that is gone holds no memory.
        self.connection.close()
        self.connection.data_to_send()
        self._queued_requests.clear()
        error = ConnectionError(reason)
        for future in self._pending_requests.values():
            if not future.done():
                future.set_exception(error)
        self._pending_requests.clear()
        opening, self._opening = self._opening, {}
        for done in opening.values():
            with contextlib.suppress(Exception):
                done(error)
        if not self.handshake.done():
            self.handshake.set_exception(error)
        endpoints, self.endpoints = self.endpoints, {}
        for endpoint in endpoints.values():
            with contextlib.suppress(Exception):
                endpoint.reset(reason)
        if not self.closed.done():
            self.closed.set_result(reason)
        self.handler.connection_lost(self, reason)


def _say(error: BaseException) -> str:
    """An exception as one line: its type, and its message when it has one."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _request_failure(result: Any) -> RequestFailed:
    if isinstance(result, dict):
        errno = result.get("errno")
        return RequestFailed(
            str(result.get("message", "request failed")), errno if type(errno) is int else 0
        )
    return RequestFailed(str(result))


class SocketRelay(asyncio.Protocol):
    """Joins a stream of `peer` to a local socket, both directions, with flow control.

    Reading from the socket pauses while the stream's bytes wait for credit; received stream
    bytes are acknowledged when the socket's transport is below its high-water mark, otherwise
    once it drains. Stream bytes that arrive before the socket is connected wait here, still
    unacknowledged, so the peer's window bounds them. With `discard_output` the socket's own
    bytes are dropped (a mirrored connection: the pod's app answers the real client).
    `on_closed` runs once, when both directions have finished or either side failed.
    """

    # A mirrored connection whose app never closes after the client finished is dropped then.
    LINGER_SECONDS = 30.0

    def __init__(
        self,
        peer: Peer,
        stream_id: int = 0,
        *,
        discard_output: bool = False,
        on_closed: Callable[[], None] | None = None,
        watch: tuple[Callable[[bytes], None], Callable[[bytes], None]] | None = None,
    ) -> None:
        """`watch` = (bytes from the stream, bytes from the socket): read-only observers."""
        self.peer = peer
        self._watch = watch
        self.stream_id = stream_id
        self.endpoint: StreamEndpoint = _RelayEndpoint(self)
        self.transport: asyncio.Transport | None = None
        self._discard_output = discard_output
        self._on_closed = on_closed
        self._write_paused = False
        self._unacknowledged = 0
        self._socket_done = False  # the socket sent EOF (or closed, when output is discarded)
        self._stream_done = False  # the stream sent EOF and it was passed on
        self._finished = False
        self._early: list[bytes] = []
        self._early_eof = False
        self._linger: asyncio.TimerHandle | None = None

    # --- socket side (asyncio.Protocol) --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        early, self._early = self._early, []
        for chunk in early:
            self.stream_data(chunk)
        if self._early_eof:
            self.stream_eof()

    def _observe(self, direction: int, data: bytes) -> None:
        """Show `data` to the read-only watcher; one that fails is dropped, never the relay."""
        if self._watch is None:
            return
        try:
            self._watch[direction](data)
        except Exception as error:
            log.warning("stopped watching a relayed connection: %s", _say(error))
            log.debug("the failure", exc_info=error)
            self._watch = None

    def data_received(self, data: bytes) -> None:
        self._observe(1, data)
        if self._discard_output:
            return
        if self.peer.send_data(self.stream_id, data) and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._socket_done = True
        if not self._discard_output:
            self.peer.send_eof(self.stream_id)
        self._finish_if_done()
        return True  # keep writing the other direction: TCP half-close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._finished:
            return
        if self._discard_output and self._stream_done:
            self._socket_done = True
            self._finish_if_done()
            return
        self.peer.reset_stream(self.stream_id, str(exc) if exc else "connection closed")
        self._finish()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._unacknowledged:
            self.peer.acknowledge(self.stream_id, self._unacknowledged)
            self._unacknowledged = 0

    # --- stream side (through self.endpoint) ---------------------------------------------------

    def stream_data(self, data: bytes) -> None:
        transport = self.transport
        if transport is None:
            self._early.append(data)
            return
        if transport.is_closing():
            self.peer.acknowledge(self.stream_id, len(data))
            return
        self._observe(0, data)
        transport.write(data)
        if self._write_paused:
            self._unacknowledged += len(data)
        else:
            self.peer.acknowledge(self.stream_id, len(data))

    def stream_eof(self) -> None:
        transport = self.transport
        if transport is None:
            self._early_eof = True
            return
        self._stream_done = True
        if transport.can_write_eof() and not transport.is_closing():
            try:
                transport.write_eof()
            except OSError:
                # The local side is already gone (ENOTCONN): nothing left to tell it.
                transport.abort()
        if self._discard_output and not self._socket_done:
            self._linger = asyncio.get_running_loop().call_later(
                self.LINGER_SECONDS, self._give_up_lingering
            )
        self._finish_if_done()

    def stream_writable(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def stream_reset(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.abort()
        self._finish()

    # --- endings -------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Both directions are done, or either side failed (`on_closed` has run)."""
        return self._finished

    def _give_up_lingering(self) -> None:
        self._socket_done = True
        self._finish_if_done()

    def _finish_if_done(self) -> None:
        if self._socket_done and self._stream_done and not self._finished:
            self.peer.forget_stream(self.stream_id)
            if self.transport is not None:
                self.transport.close()
            self._finish()

    def _finish(self) -> None:
        self._finished = True
        if self._linger is not None:
            self._linger.cancel()
        callback, self._on_closed = self._on_closed, None
        if callback is not None:
            callback()


class _RelayEndpoint:
    """The stream-facing side of a SocketRelay (its socket-facing names are asyncio's)."""

    def __init__(self, relay: SocketRelay) -> None:
        self._relay = relay

    def data_received(self, data: bytes) -> None:
        self._relay.stream_data(data)

    def eof_received(self) -> None:
        self._relay.stream_eof()

    def writable(self) -> None:
        self._relay.stream_writable()

    def reset(self, reason: str) -> None:
        self._relay.stream_reset(reason)
