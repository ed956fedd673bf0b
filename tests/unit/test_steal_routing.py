"""Steal's routing, sans-io (`steal_routing`): where a stolen connection goes on its first bytes,
and where each of its requests goes, told as a conversation of bytes in and routes out."""

from __future__ import annotations

from typing import Any

from podside_agent import http1
from podside_agent.steal_routing import (
    EACH_REQUEST,
    TO_APP,
    WAIT,
    Route,
    Rule,
    route_connection,
    route_request,
)
from podside_protocol.steal import HttpFilter, Subscription

ALICE: Any = object()  # a client's peer: only its identity matters here
BOB: Any = object()
GET = b"GET /api/items?page=2 HTTP/1.1\r\nHost: pod\r\nX-User: alice\r\n\r\n"


def rule(peer: Any, **filter_fields: Any) -> Rule:
    return Rule.make(peer, Subscription(port=8080, filter=HttpFilter(**filter_fields)))


def head(raw: bytes) -> http1.Head:
    return http1.parse_head(raw, http1.REQUEST)


def first(data: bytes, rules: list[Rule], *, final: bool = False, probes: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    return route_connection(data, final=final, rules=rules, probe_paths=list(probes))


def test_a_port_stolen_whole_goes_to_its_client_whole_http_or_not() -> None:
    whole = rule(ALICE)
    assert first(GET, [whole]) == Route(whole)
    assert first(b"\x16\x03\x01\x02\x00", [whole]) == Route(whole)  # TLS
    assert not Route(whole).filtered


def test_probes_go_to_the_app_even_on_a_port_stolen_whole() -> None:
    whole = rule(ALICE)
    by_agent = b"GET /anything HTTP/1.1\r\nUser-Agent: kube-probe/1.36\r\n\r\n"
    by_path = b"GET /healthz?x=1 HTTP/1.1\r\nHost: pod\r\n\r\n"
    assert first(by_agent, [whole]) == TO_APP
    assert first(by_path, [whole], probes=("/healthz",)) == TO_APP
    assert first(by_path, [whole]) == Route(whole)  # not a probe path of this port


def test_a_partial_head_waits_until_it_is_whole_or_nothing_more_comes() -> None:
    filtered = rule(ALICE, path="^/api")
    assert first(b"GE", [filtered]) == WAIT  # a method prefix: cannot tell yet
    assert first(GET[:20], [filtered]) == WAIT
    assert first(GET, [filtered]) == EACH_REQUEST
    # The client ended (or stayed silent) after half a head: framed, and refused there.
    assert first(GET[:20], [filtered], final=True) == TO_APP
    assert first(b"", [filtered], final=True) == TO_APP  # a server-speaks-first protocol


def test_on_filtered_ports_http1_is_routed_per_request_and_the_rest_goes_to_the_app() -> None:
    filtered = rule(ALICE, path="^/api")
    assert first(GET, [filtered]) == EACH_REQUEST
    assert first(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", [filtered]) == TO_APP  # h2 prior knowledge
    assert first(b"\x16\x03\x01\x02\x00", [filtered]) == TO_APP
    # A bad head is still HTTP/1: framed, to be refused with a 400, never passed on.
    assert first(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", [filtered]) == EACH_REQUEST
    too_long = b"GET / HTTP/1.1\r\nX-Long: " + b"a" * http1.MAX_HEAD
    assert first(too_long, [filtered]) == EACH_REQUEST  # refused there with a 431
    endless_line = b"GET /" + b"a" * http1.MAX_HEAD
    assert first(endless_line, [filtered]) == TO_APP  # no request line: not HTTP/1


def test_each_request_goes_to_the_first_client_whose_filter_matches() -> None:
    by_path, by_header = rule(ALICE, path="^/api/"), rule(BOB, headers=(("x-user", "^bob$"),))
    rules = [by_path, by_header]
    assert route_request(head(GET), rules, []) == Route(by_path)
    assert Route(by_path).filtered
    bobs = b"GET /web HTTP/1.1\r\nX-USER: bob\r\n\r\n"  # header names compare without case
    assert route_request(head(bobs), rules, []) == Route(by_header)
    assert route_request(head(b"GET /web HTTP/1.1\r\nX-User: bobby\r\n\r\n"), rules, []) == TO_APP


def test_every_condition_of_a_filter_must_hold() -> None:
    strict = rule(ALICE, path="^/api", methods=("POST",), headers=(("x-user", "alice"),))
    assert route_request(head(GET), [strict], []) == TO_APP  # a GET
    post = b"POST /api/items HTTP/1.1\r\nX-User: alice\r\nContent-Length: 0\r\n\r\n"
    assert route_request(head(post), [strict], []) == Route(strict)
    lower = b"post /api/items HTTP/1.1\r\nX-User: alice\r\n\r\n"
    assert route_request(head(lower), [strict], []) == Route(strict)  # methods compare upper-cased
    second_value = b"POST /api/x HTTP/1.1\r\nX-User: carol\r\nX-User: alice\r\n\r\n"
    assert route_request(head(second_value), [strict], []) == Route(strict)


def test_with_match_any_one_condition_of_a_filter_suffices() -> None:
    either = rule(
        ALICE, path="^/admin", methods=("POST",), headers=(("x-user", "^alice$"),), match="any"
    )
    assert route_request(head(GET), [either], []) == Route(either)  # only X-User holds
    post = b"POST /web HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    assert route_request(head(post), [either], []) == Route(either)  # only the method holds
    admin = b"GET /admin/x HTTP/1.1\r\n\r\n"
    assert route_request(head(admin), [either], []) == Route(either)  # only the path holds
    none = b"GET /web HTTP/1.1\r\nX-User: bob\r\n\r\n"
    assert route_request(head(none), [either], []) == TO_APP
    every = rule(ALICE, path="^/admin", methods=("POST",), headers=(("x-user", "^alice$"),))
    assert route_request(head(GET), [every], []) == TO_APP  # the same filter, all must hold


def test_a_probe_request_reaches_the_app_whatever_the_filters_match() -> None:
    everything = rule(ALICE, path="/")
    probe = b"GET /healthz HTTP/1.1\r\nUser-Agent: kube-probe/1.36\r\n\r\n"
    assert route_request(head(probe), [everything], []) == TO_APP
    assert route_request(head(b"GET /ready HTTP/1.1\r\n\r\n"), [everything], ["/ready"]) == TO_APP
    post = b"POST /ready HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
    assert route_request(head(post), [everything], ["/ready"]) == Route(everything)
