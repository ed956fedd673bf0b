"""Events that `Connection.receive_data` returns: what the peer did, already validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Base class of everything `receive_data` returns."""


@dataclass(frozen=True)
class Hello(Event):
    """(agent side) A client passed the handshake; the Welcome is already queued."""

    version: int
    client: str
    features: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Welcome(Event):
    """(client side) The agent accepted us."""

    version: int
    agent: str
    session_id: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejected(Event):
    """The handshake failed; the connection is closed.

    On the client side the agent refused us; on the agent side we refused the client and the
    rejection is queued for sending. `code` is "version" or "token".
    """

    code: str
    message: str
    peer_version: int


@dataclass(frozen=True)
class Pong(Event):
    nonce: int


@dataclass(frozen=True)
class ConnectionClosed(Event):
    """The peer said goodbye."""

    reason: str


@dataclass(frozen=True)
class Request(Event):
    request_id: int
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Response(Event):
    request_id: int
    ok: bool
    result: Any


@dataclass(frozen=True)
class StreamOpenRequested(Event):
    """The peer wants a stream; answer with `accept_stream` or `refuse_stream`."""

    stream_id: int
    kind: str
    params: dict[str, Any]


@dataclass(frozen=True)
class StreamOpened(Event):
    stream_id: int
    info: dict[str, Any]


@dataclass(frozen=True)
class StreamRefused(Event):
    stream_id: int
    errno: int
    message: str


@dataclass(frozen=True)
class DataReceived(Event):
    """Call `acknowledge(stream_id, len(data))` once the bytes are consumed."""

    stream_id: int
    data: bytes


@dataclass(frozen=True)
class StreamWritable(Event):
    """Data held back for lack of credit has all been sent: the shell may read again."""

    stream_id: int


@dataclass(frozen=True)
class StreamEnded(Event):
    """The peer will send no more on this stream (half-close)."""

    stream_id: int


@dataclass(frozen=True)
class StreamReset(Event):
    """The peer aborted the stream; it is gone in both directions."""

    stream_id: int
    reason: str
