"""Steal feature: the program answers the pod's traffic on a port instead of the pod's app.

`steal.prepare` asks the agent to set steal up (nftables table, transparent listener) without
stealing anything, so a session learns at start whether steal can work there. `steal.subscribe`
steals a port for this client, the whole port or only the HTTP requests matching a filter;
`steal.unsubscribe` gives it back. For each stolen connection (whole port) or each client
connection with requests for this client (filtered), the agent opens a `steal` stream; the
client relays it to its program both ways.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from podside_protocol.addresses import Address, from_wire, to_wire
from podside_protocol.errors import RemoteProtocolError
from podside_protocol.http_filter import (
    MATCH_ALL,
    MATCH_ANY,
    MATCHES,
    TOKEN_PATTERN,
    HttpFilter,
    InvalidFilter,
    check_header_filter,
    check_method_filter,
    check_path_filter,
    check_regex,
    filter_params,
    parse_filter,
    scoped,
)
from podside_protocol.mirror import port_of

# The filters are steal's first and still reached through it.
__all__ = [
    "MATCHES",
    "MATCH_ALL",
    "MATCH_ANY",
    "TOKEN_PATTERN",
    "HttpFilter",
    "InvalidFilter",
    "check_header_filter",
    "check_method_filter",
    "check_path_filter",
    "check_regex",
    "port_of",
]

PREPARE = "steal.prepare"
SUBSCRIBE = "steal.subscribe"
UNSUBSCRIBE = "steal.unsubscribe"
STREAM = "steal"


@dataclass(frozen=True)
class Probe:
    """A kubelet probe of the pod spec: requests for it always reach the pod's app."""

    port: int
    path: str


@dataclass(frozen=True)
class Subscription:
    port: int
    filter: HttpFilter = field(default_factory=HttpFilter)
    owner: str = ""  # who steals, for the message another session gets when refused
    probes: tuple[Probe, ...] = ()


def for_port(subscription: Subscription, port: int, filter_ports: frozenset[int]) -> Subscription:
    """`subscription` for the pod's `port`: its filter applies to `filter_ports` only when some
    are given (mirrord's `http_filter.ports`); any other port is stolen whole."""
    return replace(subscription, port=port, filter=scoped(subscription.filter, port, filter_ports))


def subscribe_params(subscription: Subscription) -> dict[str, Any]:
    return {
        "port": subscription.port,
        "owner": subscription.owner,
        **filter_params(subscription.filter),
        "probes": [[probe.port, probe.path] for probe in subscription.probes],
    }


def parse_subscribe(params: dict[str, Any]) -> Subscription:
    """The subscription asked for; `InvalidFilter` for a filter no client should send."""
    port = port_of(params)
    owner = params.get("owner", "")
    probes = params.get("probes") or []
    if not isinstance(owner, str):
        raise RemoteProtocolError("invalid steal subscription")
    http_filter = parse_filter(params)
    probe_list = []
    if not isinstance(probes, list):
        raise RemoteProtocolError(f"invalid probes {probes!r}")
    for probe in probes:
        if not isinstance(probe, list) or len(probe) != 2 or not isinstance(probe[1], str):
            raise RemoteProtocolError(f"invalid probe {probe!r}")
        probe_list.append(Probe(port_of({"port": probe[0]}), probe[1]))
    return Subscription(port=port, filter=http_filter, owner=owner, probes=tuple(probe_list))


def unsubscribe_params(port: int) -> dict[str, Any]:
    return {"port": port}


def stream_params(
    port: int, source: Address, destination: Address, *, filtered: bool
) -> dict[str, Any]:
    return {
        "port": port,
        "source": to_wire(source),
        "destination": to_wire(destination),
        "filtered": filtered,
    }


def parse_stream_params(params: dict[str, Any]) -> tuple[int, Address, Address, bool]:
    return (
        port_of(params),
        from_wire(params.get("source")),
        from_wire(params.get("destination")),
        bool(params.get("filtered")),
    )
