"""Every state of a connection and which frames it may receive in each, in one place."""

from __future__ import annotations

import enum

from podside_protocol.frames import Kind


class Role(enum.Enum):
    CLIENT = "client"  # the developer's side: opens odd-numbered streams
    AGENT = "agent"  # the cluster side: opens even-numbered streams


class State(enum.Enum):
    AWAITING_HELLO = "awaiting hello"  # agent, before the client introduced itself
    AWAITING_WELCOME = "awaiting welcome"  # client, after sending HELLO
    OPEN = "open"
    CLOSED = "closed"


INITIAL_STATE = {Role.CLIENT: State.AWAITING_WELCOME, Role.AGENT: State.AWAITING_HELLO}

_HANDSHAKE = {Kind.HELLO, Kind.WELCOME, Kind.REJECT}
_SESSION = set(Kind) - _HANDSHAKE

# (role, state) -> frame kinds the peer may send now; anything else is a RemoteProtocolError.
RECEIVABLE: dict[tuple[Role, State], frozenset[Kind]] = {
    (Role.AGENT, State.AWAITING_HELLO): frozenset({Kind.HELLO}),
    (Role.CLIENT, State.AWAITING_WELCOME): frozenset({Kind.WELCOME, Kind.REJECT}),
    (Role.AGENT, State.OPEN): frozenset(_SESSION),
    (Role.CLIENT, State.OPEN): frozenset(_SESSION),
}

# Frames that move the connection to another state when received.
TRANSITIONS: dict[tuple[Role, State, Kind], State] = {
    (Role.CLIENT, State.AWAITING_WELCOME, Kind.WELCOME): State.OPEN,
    (Role.CLIENT, State.AWAITING_WELCOME, Kind.REJECT): State.CLOSED,
    (Role.AGENT, State.OPEN, Kind.GOODBYE): State.CLOSED,
    (Role.CLIENT, State.OPEN, Kind.GOODBYE): State.CLOSED,
    # The agent's HELLO transition depends on the token and version check: see Connection.
}


class StreamState(enum.Enum):
    OPENING = "opening"  # OPEN sent or received, not yet answered
    OPEN = "open"
    CLOSED = "closed"
