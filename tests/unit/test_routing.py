"""Where the program's connections go."""

from __future__ import annotations

import ipaddress

import pytest

from podside.errors import PodsideError
from podside.layer.routing import LOCAL, Route, Router, parse_local_rule


def route(router: Router, host: str, port: int) -> Route:
    return router.route(ipaddress.ip_address(host), port)


def test_remote_addresses_leave_from_the_pod_and_loopback_stays() -> None:
    router = Router()
    assert route(router, "10.1.2.3", 80) == Route(("10.1.2.3", 80))
    assert route(router, "127.0.0.1", 80) == LOCAL
    assert route(router, "::1", 80) == LOCAL
    assert route(router, "::ffff:10.1.2.3", 80) == Route(("10.1.2.3", 80))


def test_no_outgoing_keeps_everything_but_dns_here() -> None:
    router = Router(outgoing=False, pod_nameservers=["10.96.0.10"])
    assert route(router, "10.1.2.3", 80) == LOCAL
    assert route(router, "10.96.0.10", 53) == Route(("10.96.0.10", 53))


def test_a_loopback_stub_resolver_is_replaced_by_the_pods_nameserver() -> None:
    router = Router(pod_nameservers=["10.96.0.10"])
    assert route(router, "127.0.0.53", 53) == Route(("10.96.0.10", 53))


def test_without_dns_queries_stay_here() -> None:
    router = Router(dns=False)
    assert route(router, "192.0.2.1", 53) == LOCAL


def test_local_rules_win_over_everything() -> None:
    router = Router(
        local_rules=[parse_local_rule("10.0.0.0/8"), parse_local_rule("192.0.2.7:5432")]
    )
    assert route(router, "10.200.0.1", 443) == LOCAL
    assert route(router, "192.0.2.7", 5432) == LOCAL
    assert route(router, "192.0.2.7", 5433) == Route(("192.0.2.7", 5433))


def test_ipv6_local_rule_with_a_port() -> None:
    rule = parse_local_rule("[fd00::/8]:443")
    assert rule.matches(ipaddress.ip_address("fd00::1"), 443)
    assert not rule.matches(ipaddress.ip_address("fd00::1"), 80)


@pytest.mark.parametrize("text", ["10.0.0.0/33", "nonsense", "10.0.0.1:99999", "[fd00::/8"])
def test_bad_rules_are_user_errors(text: str) -> None:
    with pytest.raises(PodsideError):
        parse_local_rule(text)


def test_one_port_rule_for_numbers_and_text() -> None:
    from podside_protocol.addresses import is_port, port_from_text

    assert [is_port(v) for v in (1, 65535, 0, 65536, -1, True, 80.0, "80")] == [
        True, True, False, False, False, False, False, False,
    ]  # fmt: skip
    assert [port_from_text(t) for t in ("1", "65535", "080", "0", "65536", "", "-1", " 80")] == [
        1, 65535, 80, None, None, None, None, None,
    ]  # fmt: skip
    # Superscripts pass str.isdigit() but int() refuses them: a usage error, not a crash.
    assert port_from_text("\u00b2") is None
    assert port_from_text("\uff18\uff10") is None  # int() takes full-width digits; ports are ASCII


def test_a_unicode_digit_port_is_a_usage_error_not_a_crash() -> None:
    with pytest.raises(PodsideError, match="is not a port"):
        parse_local_rule("10.0.0.0/8:\u00b2")
