"""A mirror subscription's filter on the wire (the same as steal's) and per port, and what a
request head must hold for it."""

from __future__ import annotations

import pytest

from podside_agent import http1
from podside_agent.request_filter import RequestMatcher
from podside_protocol import mirror
from podside_protocol.errors import RemoteProtocolError
from podside_protocol.http_filter import HttpFilter, InvalidFilter, scoped


def test_no_filter_is_the_old_subscription_and_a_filter_travels() -> None:
    assert mirror.subscribe_params(8080) == {"port": 8080}
    assert mirror.subscribe_params(8080, HttpFilter()) == {"port": 8080}
    wanted = HttpFilter(headers=(("X-Dev", "^me$"),), path="^/api", methods=("GET",), match="any")
    assert mirror.parse_subscribe(mirror.subscribe_params(8080, wanted)) == (8080, wanted)
    assert mirror.parse_subscribe({"port": 8080}) == (8080, HttpFilter())


def test_a_filter_that_matches_everything_or_is_malformed_is_refused() -> None:
    with pytest.raises(InvalidFilter):
        mirror.parse_subscribe({"port": 80, "path": ""})
    with pytest.raises(RemoteProtocolError):
        mirror.parse_subscribe({"port": 80, "headers": "X"})
    with pytest.raises(RemoteProtocolError):
        mirror.parse_subscribe({"port": 80, "match": "some"})


def test_only_an_answer_that_says_so_is_an_agent_that_filters() -> None:
    assert mirror.filters(mirror.subscribe_result(80))
    assert not mirror.filters({"port": 80})  # an agent from before mirror filters
    assert not mirror.filters(None)


def test_filter_ports_scope_the_filter() -> None:
    api = HttpFilter(path="^/api")
    assert scoped(api, 8080, frozenset()) == api
    assert scoped(api, 8080, frozenset({8080})) == api
    assert scoped(api, 9090, frozenset({8080})).empty


def _head(raw: bytes) -> http1.Head:
    return http1.parse_head(raw, http1.REQUEST)


def test_the_matcher_judges_a_head_by_all_or_any_condition() -> None:
    head = _head(b"POST /api/x?q=1 HTTP/1.1\r\nHost: a\r\nX-Dev: me\r\n\r\n")
    other = _head(b"GET /other HTTP/1.1\r\nHost: a\r\n\r\n")
    both = HttpFilter(headers=(("x-dev", "^me$"),), path="^/api/")
    assert RequestMatcher(both).matches(head) and not RequestMatcher(both).matches(other)
    either = HttpFilter(path="^/other", methods=("POST",), match="any")
    assert RequestMatcher(either).matches(head) and RequestMatcher(either).matches(other)
    assert RequestMatcher(HttpFilter()).whole
