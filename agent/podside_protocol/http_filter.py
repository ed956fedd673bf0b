"""HTTP request filters, shared by steal and mirror: which HTTP/1 requests a subscription
takes, by header, path and method, all conditions or any one (mirrord's `http_filter`), how a
filter travels in a subscribe request, and the checks that refuse a filter matching everything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from podside_protocol.errors import RemoteProtocolError

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


def scoped(http_filter: HttpFilter, port: int, filter_ports: frozenset[int]) -> HttpFilter:
    """`http_filter` on the pod's `port`: it applies to `filter_ports` only when some are given
    (mirrord's `http_filter.ports`); any other port is taken whole."""
    return http_filter if not filter_ports or port in filter_ports else HttpFilter()


def filter_params(http_filter: HttpFilter) -> dict[str, Any]:
    return {
        "headers": [[name, pattern] for name, pattern in http_filter.headers],
        "path": http_filter.path,
        "methods": list(http_filter.methods),
        "match": http_filter.match,
    }


def parse_filter(params: dict[str, Any]) -> HttpFilter:
    """The filter of a subscribe request (none given: the empty one); `InvalidFilter` for a
    filter no client should send, `RemoteProtocolError` for one of the wrong shape."""
    headers = params.get("headers") or []
    path = params.get("path")
    methods = params.get("methods") or []
    match = params.get("match", MATCH_ALL)
    if match not in MATCHES:
        raise RemoteProtocolError(f"invalid filter match {match!r}")
    if not isinstance(headers, list):
        raise RemoteProtocolError("invalid header filters")
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
    return HttpFilter(
        headers=tuple(pairs),
        path=path,
        methods=tuple(method.upper() for method in methods),
        match=match,
    )
