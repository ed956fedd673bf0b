"""steal.subscribe's parameters as the agent reads them (`parse_subscribe`): what a client sends
comes back as the same subscription, and anything else is refused as the peer's fault."""

from __future__ import annotations

from typing import Any

import pytest

from podside_protocol.errors import RemoteProtocolError
from podside_protocol.steal import (
    HttpFilter,
    InvalidFilter,
    Probe,
    Subscription,
    for_port,
    parse_subscribe,
    subscribe_params,
)


def test_what_a_client_sends_is_read_back_whole() -> None:
    subscription = Subscription(
        port=8080,
        filter=HttpFilter(
            headers=(("X-User", "^me$"),), path="^/api/", methods=("GET", "PUT"), match="any"
        ),
        owner="alice@laptop",
        probes=(Probe(8080, "/healthz"), Probe(9090, "/ready?full")),
    )
    assert parse_subscribe(subscribe_params(subscription)) == subscription


def test_only_a_port_is_a_whole_steal_by_no_one_in_particular() -> None:
    subscription = parse_subscribe({"port": 1})
    assert subscription == Subscription(port=1)
    assert subscription.filter.empty


def test_methods_are_upper_cased() -> None:
    assert parse_subscribe({"port": 80, "methods": ["get", "Post"]}).filter.methods == (
        "GET",
        "POST",
    )


@pytest.mark.parametrize("port", [0, 65536, -1, "80", 80.0, True, None])
def test_a_port_out_of_range_or_not_an_int_is_refused(port: object) -> None:
    with pytest.raises(RemoteProtocolError, match="invalid port"):
        parse_subscribe({"port": port})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"owner": 3}, "invalid steal subscription"),
        ({"headers": {"X": "y"}}, "invalid header filters"),
        ({"headers": [["X"]]}, "invalid header filter"),
        ({"headers": [["X", 1]]}, "invalid header filter"),
        ({"methods": "GET"}, "invalid methods"),
        ({"methods": [1]}, "invalid methods"),
        ({"path": 5}, "invalid path filter"),
        ({"probes": "x"}, "invalid probes"),
        ({"probes": [[8080]]}, "invalid probe"),
        ({"probes": [[8080, 1]]}, "invalid probe"),
        ({"probes": [[0, "/healthz"]]}, "invalid port"),
        ({"match": "some"}, "invalid filter match"),
        ({"match": None}, "invalid filter match"),
    ],
)
def test_malformed_fields_are_the_peers_fault(params: dict[str, Any], message: str) -> None:
    with pytest.raises(RemoteProtocolError, match=message):
        parse_subscribe({"port": 8080, **params})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"path": ""}, "an empty regex"),
        ({"path": "("}, "not a regular expression"),
        ({"headers": [["", "x"]]}, "no header name"),
        ({"headers": [["X Y", "x"]]}, "is not a header name"),
        ({"headers": [["X", ""]]}, "an empty regex"),
        ({"methods": ["GE T"]}, "is not a method"),
        ({"methods": [""]}, "an empty method"),
    ],
)
def test_filters_that_would_take_more_than_meant_are_refused(
    params: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidFilter, match=message):
        parse_subscribe({"port": 8080, **params})


def test_a_subscription_from_before_any_of_means_all_conditions() -> None:
    assert parse_subscribe({"port": 80, "path": "^/api"}).filter.match == "all"


def test_filters_scoped_to_ports_leave_the_other_ports_stolen_whole() -> None:
    filtered = Subscription(port=1, filter=HttpFilter(path="^/api"), owner="me")
    scoped = frozenset({8080})
    assert for_port(filtered, 8080, scoped) == Subscription(8080, HttpFilter(path="^/api"), "me")
    assert for_port(filtered, 9090, scoped) == Subscription(9090, HttpFilter(), "me")
    assert for_port(filtered, 9090, frozenset()).filter == HttpFilter(path="^/api")  # no scope
