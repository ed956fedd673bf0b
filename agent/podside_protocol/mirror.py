"""Mirror feature: copies of the TCP connections that reach the pod on subscribed ports.

The client subscribes a pod port with a request; for every new connection the agent sees on it,
the agent opens a `mirror` stream to each subscriber carrying the client's bytes, in order. The
client never sends on it (the pod's own app answers the real client). A subscription with an
HTTP filter (steal's, `http_filter`) gets only the HTTP/1 requests it matches: a connection's
stream opens at its first matching request and carries the matching requests only. An agent
that filters says so in its answer (`filtered`); one that does not would copy everything.
"""

from __future__ import annotations

from typing import Any

from podside_protocol.addresses import Address, from_wire, is_port, to_wire
from podside_protocol.errors import RemoteProtocolError
from podside_protocol.http_filter import HttpFilter, filter_params, parse_filter

SUBSCRIBE = "mirror.subscribe"
UNSUBSCRIBE = "mirror.unsubscribe"
STATS = "mirror.stats"
STREAM = "mirror"


def subscribe_params(port: int, http_filter: HttpFilter | None = None) -> dict[str, Any]:
    if http_filter is None or http_filter.empty:
        return {"port": port}
    return {"port": port, **filter_params(http_filter)}


def parse_subscribe(params: dict[str, Any]) -> tuple[int, HttpFilter]:
    """The port and filter asked for (the empty filter: every connection whole);
    `InvalidFilter` for a filter no client should send."""
    return port_of(params), parse_filter(params)


def subscribe_result(port: int) -> dict[str, Any]:
    return {"port": port, "filtered": True}


def filters(result: Any) -> bool:
    """The agent's answer to a subscribe says it applies HTTP filters."""
    return isinstance(result, dict) and result.get("filtered") is True


def port_of(params: dict[str, Any]) -> int:
    port = params.get("port")
    if not is_port(port):
        raise RemoteProtocolError(f"invalid port {port!r}")
    return port


def stream_params(port: int, source: Address, destination: Address) -> dict[str, Any]:
    return {"port": port, "source": to_wire(source), "destination": to_wire(destination)}


def parse_stream_params(params: dict[str, Any]) -> tuple[int, Address, Address]:
    return port_of(params), from_wire(params.get("source")), from_wire(params.get("destination"))
