"""Steal's routing decisions, sans-io: where a stolen connection's bytes go, and then where each
of its HTTP/1 requests goes. `steal.StolenConnection` carries them out on sockets.

A connection is decided on its first bytes (`route_connection`): a kubelet probe goes to the
pod's app whole; on a port stolen whole everything else goes to that client whole; a whole
HTTP/1 request head (or one too long, refused later as HTTP/1) on a port with filtered steals
means each request is routed on its own (`route_request`); anything else (HTTP/2 prior
knowledge, TLS, a server-speaks-first protocol) goes to the pod's app whole.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Final, Literal

from podside_agent import http1
from podside_agent.peer import Peer
from podside_agent.request_filter import RequestMatcher
from podside_protocol import steal
from podside_protocol.probes import is_kubelet_probe

WAIT: Final = "wait"  # too few bytes to decide yet
EACH_REQUEST: Final = "each request"  # frame the requests and route each one


@dataclass
class Rule:
    """One client's steal of a port: the whole port, or the requests its filter matches."""

    peer: Peer
    subscription: steal.Subscription
    matcher: RequestMatcher

    @classmethod
    def make(cls, peer: Peer, subscription: steal.Subscription) -> Rule:
        return cls(peer, subscription, RequestMatcher(subscription.filter))

    @property
    def whole(self) -> bool:
        return self.matcher.whole

    def matches(self, head: http1.Head) -> bool:
        return self.matcher.matches(head)


@dataclass(frozen=True)
class Route:
    """Where bytes go: `rule`'s client, or the pod's app when there is no rule."""

    rule: Rule | None = None

    @property
    def filtered(self) -> bool:
        """The client gets requests one by one (its `steal` stream says so)."""
        return self.rule is not None and not self.rule.whole


TO_APP: Final = Route()


def is_probe(head: http1.Head, probe_paths: list[str]) -> bool:
    return is_kubelet_probe(head.method, head.target, probe_paths, head.header("user-agent"))


def route_request(head: http1.Head, rules: list[Rule], probe_paths: list[str]) -> Route:
    """One request on a port with steals: the first rule that takes it, else the pod's app."""
    if not is_probe(head, probe_paths):
        for rule in rules:
            if rule.whole or rule.matches(head):
                return Route(rule)
    return TO_APP


def route_connection(
    data: bytes, *, final: bool, rules: list[Rule], probe_paths: list[str]
) -> Route | Literal["wait", "each request"]:
    """A new connection's first bytes `data` (`final`: no more will come before deciding, the
    client ended or stayed silent): its route as a whole, `EACH_REQUEST`, or `WAIT`."""
    verdict = http1.looks_like_http1_request(data)
    if verdict is None and not final:
        return WAIT
    head = None
    framed = False  # a whole request head arrived: the framer decides from here
    if verdict:
        end = data.find(b"\r\n\r\n")
        if end < 0 and not final and len(data) <= http1.MAX_HEAD:
            return WAIT
        if end >= 0:
            framed = True
            with contextlib.suppress(http1.FramingError):
                head = http1.parse_head(data[: end + 4], http1.REQUEST)
        elif len(data) > http1.MAX_HEAD:
            framed = True  # a head too long: refused there, as an HTTP/1 request
    whole = next((rule for rule in rules if rule.whole), None)
    if head is not None and is_probe(head, probe_paths):
        return TO_APP
    if whole is not None:
        return Route(whole)
    if framed:  # an invalid head is refused there, never passed on
        return EACH_REQUEST
    return TO_APP  # not HTTP/1: the pod's app, unharmed
