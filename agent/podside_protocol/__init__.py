"""podside's wire protocol between the developer's machine and the agent, as pure state machines.

Nothing here touches a socket: `Connection.receive_data(bytes)` returns events and
`Connection.data_to_send()` returns the bytes to write; the agent and the server each drive the
same object from their own asyncio code.
"""

from podside_protocol.connection import Connection, Role
from podside_protocol.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from podside_protocol.events import (
    ConnectionClosed,
    DataReceived,
    Event,
    Hello,
    Pong,
    Rejected,
    Request,
    Response,
    StreamEnded,
    StreamOpened,
    StreamOpenRequested,
    StreamRefused,
    StreamReset,
    StreamWritable,
    Welcome,
)
from podside_protocol.frames import INITIAL_WINDOW, MAX_DATA_CHUNK, PROTOCOL_VERSION

__all__ = [
    "INITIAL_WINDOW",
    "MAX_DATA_CHUNK",
    "PROTOCOL_VERSION",
    "Connection",
    "ConnectionClosed",
    "DataReceived",
    "Event",
    "Hello",
    "LocalProtocolError",
    "Pong",
    "ProtocolError",
    "Rejected",
    "RemoteProtocolError",
    "Request",
    "Response",
    "Role",
    "StreamEnded",
    "StreamOpenRequested",
    "StreamOpened",
    "StreamRefused",
    "StreamReset",
    "StreamWritable",
    "Welcome",
]
