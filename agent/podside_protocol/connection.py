"""One podside connection as a state machine: handshake, requests, multiplexed streams, credit.

Shells call `receive_data(bytes)` with what arrived and get events back; every call that sends
something queues bytes that `data_to_send()` hands over. Flow control is per stream: a sender
may have at most the peer's window unacknowledged, data beyond it waits in the stream's pending
buffer (the shell stops reading its socket while `send_data` reports pending bytes), and the
receiver grants credit as the shell acknowledges consumed bytes. A slow stream therefore never
stalls the others, and no buffer grows without bound.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from podside_protocol import events
from podside_protocol._state import (
    INITIAL_STATE,
    RECEIVABLE,
    TRANSITIONS,
    Role,
    State,
    StreamState,
)
from podside_protocol.errors import LocalProtocolError, RemoteProtocolError
from podside_protocol.frames import (
    INITIAL_WINDOW,
    MAX_CLIENT_FRAME_BODY,
    MAX_DATA_CHUNK,
    MAX_HANDSHAKE_BODY,
    PROTOCOL_VERSION,
    FrameDecoder,
    Kind,
    encode,
    encode_data_header,
)
from podside_protocol.tokens import Verifiers

__all__ = ["Connection", "Role"]

MAX_STREAM_ID = 2**32 - 1
# Streams one peer may hold open at once; more are refused with EMFILE.
MAX_PEER_STREAMS = 16384
_EMFILE = 24
# Credit goes back once this much has been consumed, so CREDIT frames stay rare.
_CREDIT_THRESHOLD = INITIAL_WINDOW // 4


@dataclass
class _Stream:
    stream_id: int
    kind: str
    state: StreamState
    local_open: bool = True  # we may still send
    remote_open: bool = True  # the peer may still send
    send_window: int = INITIAL_WINDOW
    receive_allowance: int = INITIAL_WINDOW  # what the peer may still send without more credit
    consumed: int = 0  # acknowledged by the shell, not yet credited to the peer
    pending: deque[bytes] = field(default_factory=deque)
    pending_bytes: int = 0
    eof_pending: bool = False


class Connection:
    """The protocol state of one agent connection, identical on both ends but for `role`.

    `token` is what a client presents; an agent accepts the tokens its `Verifiers` know (a
    plain string there stands for the verifier of that one token).
    """

    def __init__(
        self,
        role: Role,
        token: str | Verifiers,
        *,
        name: str = "",
        session_id: str = "",
        info: dict[str, Any] | None = None,
        features: dict[str, Any] | None = None,
        version: int = PROTOCOL_VERSION,
    ) -> None:
        self.role = role
        self.state = INITIAL_STATE[role]
        self.version = version
        self._verifiers = token if isinstance(token, Verifiers) else Verifiers.of_token(token)
        self._name = name
        self._session_id = session_id
        self._info = info or {}
        # The agent hears from anyone who reaches its port: it buffers little until HELLO.
        self._decoder = FrameDecoder(MAX_HANDSHAKE_BODY) if role is Role.AGENT else FrameDecoder()
        self._outbox: list[bytes] = []
        self._streams: dict[int, _Stream] = {}
        self._next_stream_id = 1 if role is Role.CLIENT else 2
        self._highest_peer_stream = 0
        self._peer_streams = 0
        self._next_request_id = 1
        self._outstanding_requests: set[int] = set()
        self._next_ping = 1
        self.peer_version: int | None = None
        if role is Role.CLIENT:
            if not isinstance(token, str):
                raise LocalProtocolError("a client presents a token, not verifiers")
            hello = {"version": version, "token": token, "client": name, "features": features or {}}
            self._outbox.append(encode(Kind.HELLO, hello))

    # --- bytes in and out ----------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """Everything queued since the last call, in order; write it with `writelines`."""
        out, self._outbox = self._outbox, []
        return out

    def receive_data(self, data: bytes) -> list[events.Event]:
        """Feed bytes from the peer; returns the events they complete.

        Raises RemoteProtocolError if the peer broke the protocol: the shell then closes it.
        """
        if self.state is State.CLOSED:
            return []
        result: list[events.Event] = []
        for kind, fields in self._decoder.feed(data):
            if self.state is State.CLOSED:
                break
            if kind not in RECEIVABLE[(self.role, self.state)]:
                raise RemoteProtocolError(f"unexpected {kind.name} frame while {self.state.value}")
            event = self._handle(kind, fields)
            next_state = TRANSITIONS.get((self.role, self.state, kind))
            if next_state is not None:
                self.state = next_state
            if event is not None:
                result.append(event)
        return result

    # --- handshake -----------------------------------------------------------------------------

    def _handle_hello(self, hello: dict[str, Any]) -> events.Event:
        version = hello.get("version")
        if type(version) is not int:
            raise RemoteProtocolError("HELLO without a protocol version")
        self.peer_version = version
        if version != self.version:
            message = (
                f"the client speaks protocol version {version}, "
                f"this agent speaks version {self.version}"
            )
            return self._reject("version", message)
        token = hello.get("token")
        if not isinstance(token, str) or not self._verifiers.accepts(token):
            return self._reject("token", "the session token is wrong")
        client = hello.get("client")
        features = hello.get("features")
        self._outbox.append(
            encode(
                Kind.WELCOME,
                {
                    "version": self.version,
                    "agent": self._name,
                    "session": self._session_id,
                    "info": self._info,
                },
            )
        )
        self.state = State.OPEN
        self._decoder.max_body = MAX_CLIENT_FRAME_BODY
        return events.Hello(
            version=version,
            client=client if isinstance(client, str) else "",
            features=features if isinstance(features, dict) else {},
        )

    def _reject(self, code: str, message: str) -> events.Event:
        self._outbox.append(
            encode(Kind.REJECT, {"code": code, "message": message, "version": self.version})
        )
        self.state = State.CLOSED
        return events.Rejected(code=code, message=message, peer_version=self.peer_version or 0)

    # --- requests ------------------------------------------------------------------------------

    def send_request(self, method: str, params: dict[str, Any] | None = None) -> int:
        self._require_open()
        request_id = self._next_request_id
        self._next_request_id += 1
        self._outstanding_requests.add(request_id)
        self._outbox.append(encode(Kind.REQUEST, request_id, method, params or {}))
        return request_id

    def send_response(self, request_id: int, result: Any = None, *, ok: bool = True) -> None:
        """Answer a peer's request; `ok=False` makes `result` the error message."""
        if self.state is State.CLOSED:
            return
        self._outbox.append(encode(Kind.RESPONSE, request_id, ok, result))

    # --- liveness and closing ------------------------------------------------------------------

    def ping(self) -> int:
        self._require_open()
        nonce = self._next_ping
        self._next_ping += 1
        self._outbox.append(encode(Kind.PING, nonce))
        return nonce

    def close(self, reason: str = "") -> None:
        """Say goodbye; nothing more is sent or received afterwards."""
        if self.state is State.OPEN:
            self._outbox.append(encode(Kind.GOODBYE, reason))
        self.state = State.CLOSED
        self._streams.clear()
        self._decoder = FrameDecoder()  # a partial frame still buffered is never completed

    # --- streams -------------------------------------------------------------------------------

    def open_stream(self, kind: str, params: dict[str, Any] | None = None) -> int:
        """Ask the peer for a stream; data sent before it answers waits in the stream."""
        self._require_open()
        stream_id = self._next_stream_id
        if stream_id > MAX_STREAM_ID:
            raise LocalProtocolError("stream ids exhausted")
        self._next_stream_id += 2
        self._streams[stream_id] = _Stream(stream_id, kind, StreamState.OPENING)
        self._outbox.append(encode(Kind.OPEN, stream_id, kind, params or {}))
        return stream_id

    def accept_stream(self, stream_id: int, info: dict[str, Any] | None = None) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # reset by the peer meanwhile
        if stream.state is not StreamState.OPENING or self._is_local(stream_id):
            raise LocalProtocolError(f"stream {stream_id} is not waiting to be accepted")
        stream.state = StreamState.OPEN
        self._outbox.append(encode(Kind.OPENED, stream_id, info or {}))
        self._flush(stream)

    def refuse_stream(self, stream_id: int, errno: int, message: str) -> None:
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.state is not StreamState.OPENING or self._is_local(stream_id):
            raise LocalProtocolError(f"stream {stream_id} is not waiting to be accepted")
        self._forget(stream)
        self._outbox.append(encode(Kind.REFUSED, stream_id, errno, message))

    def send_data(self, stream_id: int, data: bytes) -> int:
        """Send bytes on a stream; returns how many bytes now wait for credit.

        While the result is non-zero the shell should stop reading the source of this stream;
        `StreamWritable` tells it when to read again.
        """
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open or stream.eof_pending:
            return 0
        if data:
            stream.pending.append(data)
            stream.pending_bytes += len(data)
        if stream.state is StreamState.OPEN:
            self._flush(stream)
        return stream.pending_bytes

    def buffered(self, stream_id: int) -> int:
        """Bytes waiting for credit (or for the peer to accept the stream)."""
        stream = self._streams.get(stream_id)
        return stream.pending_bytes if stream else 0

    def send_window(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return stream.send_window if stream else 0

    def send_eof(self, stream_id: int) -> None:
        """Half-close: after the pending data, the peer gets StreamEnded."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open:
            return
        stream.eof_pending = True
        if stream.state is StreamState.OPEN:
            self._flush(stream)

    def reset_stream(self, stream_id: int, reason: str = "") -> None:
        """Abort a stream in both directions, dropping anything still pending."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        self._forget(stream)
        if self.state is State.OPEN:
            self._outbox.append(encode(Kind.RESET, stream_id, reason))

    def abandon_stream(self, stream_id: int, errno: int, message: str) -> None:
        """This side failed on a stream: REFUSED if the peer still waits for the answer to its
        OPEN, else RESET; nothing if the stream is already gone."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        if stream.state is StreamState.OPENING and not self._is_local(stream_id):
            self.refuse_stream(stream_id, errno, message)
        else:
            self.reset_stream(stream_id, message)

    def acknowledge(self, stream_id: int, count: int) -> None:
        """The shell consumed `count` received bytes: the peer may send that much more."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.remote_open:
            return
        stream.consumed += count
        if stream.consumed >= _CREDIT_THRESHOLD:
            stream.receive_allowance += stream.consumed
            self._outbox.append(encode(Kind.CREDIT, stream_id, stream.consumed))
            stream.consumed = 0

    def stream_ids(self) -> list[int]:
        return list(self._streams)

    # --- internals -----------------------------------------------------------------------------

    def _require_open(self) -> None:
        if self.state is not State.OPEN:
            raise LocalProtocolError(f"connection is {self.state.value}")

    def _is_local(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) == (self.role is Role.CLIENT)

    def _forget(self, stream: _Stream) -> None:
        stream.state = StreamState.CLOSED
        stream.pending.clear()
        stream.pending_bytes = 0
        if self._streams.pop(stream.stream_id, None) is not None and not self._is_local(
            stream.stream_id
        ):
            self._peer_streams -= 1

    def _flush(self, stream: _Stream) -> bool:
        """Send what the window allows; True if something was waiting and all of it went."""
        had_pending = stream.pending_bytes > 0
        outbox = self._outbox
        while stream.pending and stream.send_window > 0:
            chunk = stream.pending.popleft()
            allowed = min(len(chunk), stream.send_window, MAX_DATA_CHUNK)
            if allowed < len(chunk):
                stream.pending.appendleft(chunk[allowed:])
                chunk = chunk[:allowed]
            outbox.append(encode_data_header(stream.stream_id, len(chunk)))
            outbox.append(chunk)
            stream.send_window -= len(chunk)
            stream.pending_bytes -= len(chunk)
        if stream.eof_pending and not stream.pending:
            stream.eof_pending = False
            stream.local_open = False
            outbox.append(encode(Kind.EOF, stream.stream_id))
            if not stream.remote_open:
                self._forget(stream)
        return had_pending and stream.pending_bytes == 0

    def _peer_stream(self, stream_id: int) -> _Stream | None:
        """The open stream `stream_id`, or None for a stream that closed while frames crossed."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            return stream
        if self._is_local(stream_id):
            if stream_id >= self._next_stream_id:
                raise RemoteProtocolError(f"frame for stream {stream_id}, which we never opened")
        elif stream_id > self._highest_peer_stream:
            raise RemoteProtocolError(f"frame for stream {stream_id}, which was never opened")
        return None

    def _handle(self, kind: Kind, fields: tuple[Any, ...]) -> events.Event | None:
        if kind is Kind.DATA:
            stream_id, data = fields
            stream = self._peer_stream(stream_id)
            if stream is None:
                return None
            if not stream.remote_open or stream.state is not StreamState.OPEN:
                raise RemoteProtocolError(f"DATA on stream {stream_id} after it ended")
            stream.receive_allowance -= len(data)
            if stream.receive_allowance < 0:
                raise RemoteProtocolError(f"stream {stream_id} exceeded its flow-control window")
            return events.DataReceived(stream_id, data)
        if kind is Kind.CREDIT:
            stream_id, increment = fields
            if increment <= 0 or increment > 2**31:
                raise RemoteProtocolError("CREDIT with an invalid increment")
            stream = self._peer_stream(stream_id)
            if stream is None:
                return None
            stream.send_window += increment
            if stream.state is StreamState.OPEN and self._flush(stream):
                return events.StreamWritable(stream_id)
            return None
        if kind is Kind.OPEN:
            stream_id, stream_kind, params = fields
            if (
                self._is_local(stream_id)
                or stream_id <= self._highest_peer_stream
                or stream_id > MAX_STREAM_ID
            ):
                raise RemoteProtocolError(f"OPEN with an invalid stream id {stream_id}")
            self._highest_peer_stream = stream_id
            if self._peer_streams >= MAX_PEER_STREAMS:
                self._outbox.append(encode(Kind.REFUSED, stream_id, _EMFILE, "too many streams"))
                return None
            self._peer_streams += 1
            self._streams[stream_id] = _Stream(stream_id, stream_kind, StreamState.OPENING)
            return events.StreamOpenRequested(stream_id, stream_kind, params)
        if kind is Kind.OPENED or kind is Kind.REFUSED:
            stream_id = fields[0]
            if not self._is_local(stream_id):
                raise RemoteProtocolError(f"{kind.name} for a stream the peer opened")
            stream = self._peer_stream(stream_id)
            if stream is None:
                return None
            if stream.state is not StreamState.OPENING:
                raise RemoteProtocolError(f"{kind.name} for stream {stream_id} twice")
            if kind is Kind.REFUSED:
                self._forget(stream)
                return events.StreamRefused(stream_id, fields[1], fields[2])
            stream.state = StreamState.OPEN
            self._flush(stream)
            return events.StreamOpened(stream_id, fields[1])
        if kind is Kind.EOF:
            (stream_id,) = fields
            stream = self._peer_stream(stream_id)
            if stream is None:
                return None
            if not stream.remote_open:
                raise RemoteProtocolError(f"EOF on stream {stream_id} twice")
            stream.remote_open = False
            if not stream.local_open:
                self._forget(stream)
            return events.StreamEnded(stream_id)
        if kind is Kind.RESET:
            stream_id, reason = fields
            stream = self._peer_stream(stream_id)
            if stream is None:
                return None
            self._forget(stream)
            return events.StreamReset(stream_id, reason)
        if kind is Kind.REQUEST:
            request_id, method, params = fields
            return events.Request(request_id, method, params)
        if kind is Kind.RESPONSE:
            request_id, ok, result = fields
            if request_id not in self._outstanding_requests:
                raise RemoteProtocolError(f"RESPONSE to unknown request {request_id}")
            self._outstanding_requests.discard(request_id)
            return events.Response(request_id, ok, result)
        if kind is Kind.PING:
            self._outbox.append(encode(Kind.PONG, fields[0]))
            return None
        if kind is Kind.PONG:
            return events.Pong(fields[0])
        if kind is Kind.GOODBYE:
            self._streams.clear()
            return events.ConnectionClosed(fields[0])
        if kind is Kind.HELLO:
            return self._handle_hello(fields[0])
        if kind is Kind.WELCOME:
            welcome = fields[0]
            version = welcome.get("version")
            if type(version) is not int:
                raise RemoteProtocolError("WELCOME without a protocol version")
            self.peer_version = version
            info = welcome.get("info")
            return events.Welcome(
                version=version,
                agent=str(welcome.get("agent", "")),
                session_id=str(welcome.get("session", "")),
                info=info if isinstance(info, dict) else {},
            )
        if kind is Kind.REJECT:
            reject = fields[0]
            version = reject.get("version")
            self.peer_version = version if type(version) is int else 0
            return events.Rejected(
                code=str(reject.get("code", "")),
                message=str(reject.get("message", "")),
                peer_version=self.peer_version,
            )
        raise RemoteProtocolError(f"unhandled frame kind {kind.name}")  # pragma: no cover
