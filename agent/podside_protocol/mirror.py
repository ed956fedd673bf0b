"""Mirror feature: copies of the TCP connections that reach the pod on subscribed ports.

The client subscribes a pod port with a request; for every new connection the agent sees on it,
the agent opens a `mirror` stream to each subscriber carrying the client's bytes, in order. The
client never sends on it (the pod's own app answers the real client).
"""

from __future__ import annotations

from typing import Any

from podside_protocol.addresses import Address, from_wire, is_port, to_wire
from podside_protocol.errors import RemoteProtocolError

SUBSCRIBE = "mirror.subscribe"
UNSUBSCRIBE = "mirror.unsubscribe"
STATS = "mirror.stats"
STREAM = "mirror"


def subscribe_params(port: int) -> dict[str, Any]:
    return {"port": port}


def port_of(params: dict[str, Any]) -> int:
    port = params.get("port")
    if not is_port(port):
        raise RemoteProtocolError(f"invalid port {port!r}")
    return port


def stream_params(port: int, source: Address, destination: Address) -> dict[str, Any]:
    return {"port": port, "source": to_wire(source), "destination": to_wire(destination)}


def parse_stream_params(params: dict[str, Any]) -> tuple[int, Address, Address]:
    return port_of(params), from_wire(params.get("source")), from_wire(params.get("destination"))
