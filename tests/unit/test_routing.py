"""Where the program's connections go."""

from __future__ import annotations

import ipaddress

import pytest

from podside.layer.dns_names import NameBook
from podside.layer.routing import (
    LOCAL,
    InvalidRule,
    OutgoingRule,
    Route,
    Router,
    parse_outgoing_rule,
)


def route(router: Router, host: str, port: int, protocol: str | None = None) -> Route:
    return router.route(ipaddress.ip_address(host), port, protocol)


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
        local_rules=[parse_outgoing_rule("10.0.0.0/8"), parse_outgoing_rule("192.0.2.7:5432")]
    )
    assert route(router, "10.200.0.1", 443) == LOCAL
    assert route(router, "192.0.2.7", 5432) == LOCAL
    assert route(router, "192.0.2.7", 5433) == Route(("192.0.2.7", 5433))


def test_ipv6_local_rule_with_a_port() -> None:
    rule = parse_outgoing_rule("[fd00::/8]:443")
    assert rule.matches(ipaddress.ip_address("fd00::1"), 443)
    assert not rule.matches(ipaddress.ip_address("fd00::1"), 80)


# "nonsense" was refused before rules could name hosts; now it is a host name.
@pytest.mark.parametrize(
    "text",
    ["10.0.0.0/33", "non sense", "10.0.0.1:99999", "[fd00::/8", "", "ftp://x", "1.2.3", "a..b"],
)
def test_bad_rules_are_user_errors(text: str) -> None:
    with pytest.raises(InvalidRule):
        parse_outgoing_rule(text)


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
    with pytest.raises(InvalidRule, match="is not a port"):
        parse_outgoing_rule("10.0.0.0/8:\u00b2")


def test_rule_forms_as_mirrord_writes_them() -> None:
    assert parse_outgoing_rule("udp://1.1.1.0/24:1337") == OutgoingRule(
        ipaddress.ip_network("1.1.1.0/24"), None, 1337, "udp"
    )
    assert parse_outgoing_rule("Google.COM.:443") == OutgoingRule(None, "google.com", 443)
    assert parse_outgoing_rule(":53") == OutgoingRule(port=53)
    assert parse_outgoing_rule("TCP://") == OutgoingRule(protocol="tcp")
    assert parse_outgoing_rule("fd00::/8") == OutgoingRule(ipaddress.ip_network("fd00::/8"))


def test_remote_rules_let_only_what_matches_leave_from_the_pod() -> None:
    router = Router(remote_rules=[parse_outgoing_rule("10.0.0.0/8"), parse_outgoing_rule(":6379")])
    assert route(router, "10.9.9.9", 80) == Route(("10.9.9.9", 80))
    assert route(router, "192.0.2.1", 6379) == Route(("192.0.2.1", 6379))
    assert route(router, "192.0.2.1", 80) == LOCAL
    # DNS is not outgoing traffic: remote rules leave it to the DNS feature.
    assert route(Router(remote_rules=[parse_outgoing_rule("10.0.0.0/8")]), "192.0.2.53", 53) == (
        Route(("192.0.2.53", 53))
    )


def test_local_rules_win_over_remote_rules() -> None:
    router = Router(
        local_rules=[parse_outgoing_rule("10.0.0.5")],
        remote_rules=[parse_outgoing_rule("10.0.0.0/8")],
    )
    assert route(router, "10.0.0.5", 80) == LOCAL
    assert route(router, "10.0.0.6", 80) == Route(("10.0.0.6", 80))


def test_protocols_are_switched_and_matched_separately() -> None:
    router = Router(tcp=False)
    assert router.needs_protocol
    assert route(router, "10.0.0.1", 80, "tcp") == LOCAL
    assert route(router, "10.0.0.1", 80, "udp") == Route(("10.0.0.1", 80))
    udp_only = Router(remote_rules=[parse_outgoing_rule("udp://10.0.0.0/8")])
    assert udp_only.needs_protocol
    assert route(udp_only, "10.0.0.1", 80, "udp") == Route(("10.0.0.1", 80))
    assert route(udp_only, "10.0.0.1", 80, "tcp") == LOCAL
    assert not Router(remote_rules=[parse_outgoing_rule("10.0.0.0/8")]).needs_protocol


def test_name_rules_match_what_the_programs_lookups_gave_with_the_search_domains() -> None:
    book = NameBook()
    book.learn("db.staging.svc.cluster.local.", ["10.0.0.7"])
    book.learn_hosts(b"10.0.0.9 cache cache.local\n")
    router = Router(
        remote_rules=[parse_outgoing_rule("db:5432"), parse_outgoing_rule("cache")],
        names=book.names_of,
        search=("staging.svc.cluster.local", "svc.cluster.local"),
    )
    assert router.needs_names
    assert route(router, "10.0.0.7", 5432) == Route(("10.0.0.7", 5432))
    assert route(router, "::ffff:10.0.0.7", 5432) == Route(("10.0.0.7", 5432))
    assert route(router, "10.0.0.7", 5433) == LOCAL  # the rule's port
    assert route(router, "10.0.0.9", 11211) == Route(("10.0.0.9", 11211))
    assert route(router, "10.0.0.8", 5432) == LOCAL  # nobody looked this one up
    # `db` with another suffix than the pod's search domains is another host.
    book.learn("db.evil.example", ["10.0.0.66"])
    assert route(router, "10.0.0.66", 5432) == LOCAL


def test_the_name_book_reads_dns_answers_and_forgets_the_oldest() -> None:
    import dns.message
    import dns.rrset

    query = dns.message.make_query("api.example.", "A")
    answer = dns.message.make_response(query)
    answer.answer.append(dns.rrset.from_text("api.example.", 30, "IN", "CNAME", "lb.example."))
    answer.answer.append(dns.rrset.from_text("lb.example.", 30, "IN", "A", "192.0.2.10"))
    book = NameBook(limit=2)
    book.learn_answer(answer.to_wire())
    book.learn_answer(b"\x00garbage")  # not DNS: passed over
    assert book.names_of(ipaddress.ip_address("192.0.2.10")) == {"api.example", "lb.example"}
    book.learn("a", ["192.0.2.1"])
    book.learn("b", ["192.0.2.2"])
    assert book.names_of(ipaddress.ip_address("192.0.2.10")) == frozenset()
    assert book.names_of(ipaddress.ip_address("192.0.2.2")) == {"b"}


def test_launch_configuration_outgoing_fields_become_exec_flags() -> None:
    import json
    from pathlib import Path

    from podside.errors import PodsideError
    from podside.lsp import launch

    argv = launch.exec_argv(
        {
            "target": "pod/web",
            "outgoingLocal": ["10.0.0.0/8"],
            "outgoingRemote": ["db:5432", "udp://:53"],
            "outgoingTcp": True,
            "outgoingUdp": False,
        },
        ["podside"],
    )
    assert argv[4:-1] == [
        *("--outgoing-local", "10.0.0.0/8"),
        *("--outgoing-remote", "db:5432", "--outgoing-remote", "udp://:53"),
        "--no-outgoing-udp",
    ]
    with pytest.raises(PodsideError, match=r"^outgoingRemote 'bad name': expected CIDR"):
        launch.exec_argv({"target": "pod/web", "outgoingRemote": ["bad name"]}, ["p"])
    with pytest.raises(PodsideError, match=r"^outgoingTcp must be true or false$"):
        launch.exec_argv({"target": "pod/web", "outgoingTcp": "no"}, ["p"])
    manifest = Path(__file__).parents[2] / "editor-extension" / "package.json"
    attributes = json.loads(manifest.read_text())["contributes"]["debuggers"][0]
    assert set(launch.OUTGOING_FIELDS) <= set(
        attributes["configurationAttributes"]["launch"]["properties"]
    )


def test_dns_filter_patterns_and_precedence() -> None:
    from podside.layer.routing import DnsFilter, parse_dns_pattern

    assert parse_dns_pattern(" Corp.Example. ") == "corp.example"
    assert parse_dns_pattern("*.corp.example") == "*.corp.example"
    for bad in ("", "*", "*.", "*corp", "a b", "db:5432", "10.0.0.1"):
        with pytest.raises(InvalidRule):
            parse_dns_pattern(bad)
    local = DnsFilter(local=("*.corp.example", "vpn.example"))
    assert not local.in_pod("build.corp.example.")
    assert local.in_pod("corp.example")  # *.DOMAIN is the names under it, not DOMAIN
    assert not local.in_pod("VPN.example")
    assert local.in_pod("db.staging.svc.cluster.local")
    remote = DnsFilter(local=("legacy.svc.cluster.local",), remote=("*.svc.cluster.local",))
    assert remote.in_pod("db.svc.cluster.local")
    assert not remote.in_pod("legacy.svc.cluster.local")
    assert not remote.in_pod("example.com")
    assert not DnsFilter() and DnsFilter().in_pod("anything")


def test_unix_socket_addresses() -> None:
    import socket
    import struct

    from podside.layer import sockaddr

    family = struct.pack("=H", socket.AF_UNIX)
    assert sockaddr.unix_path(family + b"/var/run/app.sock\0\0\0") == "/var/run/app.sock"
    assert sockaddr.unix_path(family + b"\0abstract") is None  # no path in any filesystem
    assert sockaddr.unix_path(family) is None  # unnamed
    assert sockaddr.unix_path(struct.pack("=H", socket.AF_INET) + b"/x") is None
    assert sockaddr.unix("\0name") == family + b"\0name"  # exact length: no trailing NUL
    assert sockaddr.unix("/run/x.sock") == family + b"/run/x.sock\0"
