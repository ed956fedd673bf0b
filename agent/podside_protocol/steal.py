"""Steal feature: the program answers the pod's traffic on a port instead of the pod's app.

`steal.prepare` asks the agent to set steal up (nftables table, transparent listener) without
stealing anything, so a session learns at start whether steal can work there. `steal.subscribe`
steals a port for this client, the whole port or only the HTTP requests matching a filter;
`steal.unsubscribe` gives it back. For each stolen connection (whole port) or each client
connection with requests for this client (filtered), the agent opens a `steal` stream; the
client relays it to its program both ways.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from podside_protocol.addresses import Address, from_wire, to_wire
from podside_protocol.errors import RemoteProtocolError
from podside_protocol.mirror import port_of

__all__ = ["port_of"]

PREPARE = "steal.prepare"
SUBSCRIBE = "steal.subscribe"
UNSUBSCRIBE = "steal.unsubscribe"
STREAM = "steal"
# RFC 9110 token (header names, methods), also the pattern the config file's schema shows.
TOKEN_PATTERN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_TOKEN = re.compile(TOKEN_PATTERN)
MATCH_ALL = "all"  # every condition of a filter must hold
MATCH_ANY = "any"  # one condition suffices
MATCHES = (MATCH_ALL, MATCH_ANY)


class InvalidFilter(ValueError):
    """A filter that would not steal what its user means (an empty one takes everything)."""


def check_regex(pattern: str, matches: str = "request") -> None:
    """A regex that can be searched and does not match every `matches` by being empty."""
    if not pattern:
        raise InvalidFilter(f"an empty regex matches every {matches}")
    try:
        re.compile(pattern)
    except re.error as error:
        raise InvalidFilter(f"not a regular expression ({error})") from None


def _is_token(text: str) -> bool:
    return _TOKEN.fullmatch(text) is not None


def check_header_filter(name: str, pattern: str) -> None:
    if not _is_token(name):
        raise InvalidFilter(f"{name!r} is not a header name" if name else "no header name")
    check_regex(pattern)


def check_path_filter(pattern: str) -> None:
    check_regex(pattern)


def check_method_filter(methods: tuple[str, ...]) -> None:
    """Upper-case method names; no methods at all is no method condition."""
    for method in methods:
        if not _is_token(method):
            raise InvalidFilter(f"{method!r} is not a method" if method else "an empty method")


@dataclass(frozen=True)
class HttpFilter:
    """Which HTTP/1 requests a filtered steal takes: all given conditions must hold, or any
    one of them when `match` is "any" (mirrord's `http_filter.all_of` / `any_of`).

    `headers`: (name, regex) pairs, a regex searched in the value of any header of that name
    (names compare case-insensitively), each pair one condition; `path`: a regex searched in
    the request target; `methods`: upper-case method names, together one condition.
    """

    headers: tuple[tuple[str, str], ...] = ()
    path: str | None = None
    methods: tuple[str, ...] = ()
    match: str = MATCH_ALL

    def __post_init__(self) -> None:
        if self.match not in MATCHES:
            raise InvalidFilter(f"{self.match!r} is not one of {', '.join(MATCHES)}")
        for name, pattern in self.headers:
            check_header_filter(name, pattern)
        if self.path is not None:
            check_path_filter(self.path)
        check_method_filter(self.methods)

    @property
    def empty(self) -> bool:
        return not (self.headers or self.path or self.methods)

    def describe(self) -> str:
        parts = [f"{name}: {pattern}" for name, pattern in self.headers]
        if self.path:
            parts.append(f"path ~ {self.path}")
        if self.methods:
            parts.append("method " + "|".join(self.methods))
        joined = (" or " if self.match == MATCH_ANY else ", ").join(parts)
        return joined or "everything"


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
    scoped = not filter_ports or port in filter_ports
    return replace(subscription, port=port, filter=subscription.filter if scoped else HttpFilter())


def subscribe_params(subscription: Subscription) -> dict[str, Any]:
    return {
        "port": subscription.port,
        "owner": subscription.owner,
        "headers": [[name, pattern] for name, pattern in subscription.filter.headers],
        "path": subscription.filter.path,
        "methods": list(subscription.filter.methods),
        "match": subscription.filter.match,
        "probes": [[probe.port, probe.path] for probe in subscription.probes],
    }


def parse_subscribe(params: dict[str, Any]) -> Subscription:
    """The subscription asked for; `InvalidFilter` for a filter no client should send."""
    port = port_of(params)
    owner = params.get("owner", "")
    headers = params.get("headers") or []
    path = params.get("path")
    methods = params.get("methods") or []
    probes = params.get("probes") or []
    match = params.get("match", MATCH_ALL)
    if match not in MATCHES:
        raise RemoteProtocolError(f"invalid filter match {match!r}")
    if not isinstance(owner, str) or not isinstance(headers, list):
        raise RemoteProtocolError("invalid steal subscription")
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise RemoteProtocolError(f"invalid methods {methods!r}")
    if path is not None and not isinstance(path, str):
        raise RemoteProtocolError(f"invalid path filter {path!r}")
    pairs = []
    for pair in headers:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(p, str) for p in pair)
        ):
            raise RemoteProtocolError(f"invalid header filter {pair!r}")
        pairs.append((pair[0], pair[1]))
    probe_list = []
    if not isinstance(probes, list):
        raise RemoteProtocolError(f"invalid probes {probes!r}")
    for probe in probes:
        if not isinstance(probe, list) or len(probe) != 2 or not isinstance(probe[1], str):
            raise RemoteProtocolError(f"invalid probe {probe!r}")
        probe_list.append(Probe(port_of({"port": probe[0]}), probe[1]))
    return Subscription(
        port=port,
        filter=HttpFilter(
            headers=tuple(pairs),
            path=path,
            methods=tuple(method.upper() for method in methods),
            match=match,
        ),
        owner=owner,
        probes=tuple(probe_list),
    )


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
