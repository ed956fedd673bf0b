"""`podside port-forward -L` values and the pod-side name lookup's pure decisions: what is
forwarded where, which names are asked for in which order, what resolv.conf and hosts say."""

from __future__ import annotations

import pytest

from podside.errors import PodsideError
from podside.pod_resolver import (
    DEFAULT_NDOTS,
    ResolverConfig,
    candidates,
    hosts_addresses,
    parse_resolv_conf,
)
from podside.port_forward_command import Forward, parse_forward


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("db:5432", Forward("127.0.0.1", 5432, "db", 5432)),
        (
            "15432:db.prod.svc.cluster.local:5432",
            Forward("127.0.0.1", 15432, "db.prod.svc.cluster.local", 5432),
        ),
        ("0:auditor:9000", Forward("127.0.0.1", 0, "auditor", 9000)),
        ("*:8080:web:80", Forward("0.0.0.0", 8080, "web", 80)),
        (":8080:web:80", Forward("0.0.0.0", 8080, "web", 80)),
        ("localhost:8080:web:80", Forward("127.0.0.1", 8080, "web", 80)),
        ("[::1]:8080:[fd00::10]:80", Forward("::1", 8080, "fd00::10", 80)),
        ("8080:10.0.0.7:80", Forward("127.0.0.1", 8080, "10.0.0.7", 80)),
    ],
)
def test_forward_forms(spec: str, expected: Forward) -> None:
    assert parse_forward(spec) == expected


@pytest.mark.parametrize(
    "spec",
    [
        "db",  # no port
        "5432",
        "db:",
        ":5432",
        "1:2:3:4:5",
        "8080:db:0",  # port 0 is not a destination
        "8080:db:65536",
        "70000:db:80",
        "8080:db:+80",
        "8080:db:8_0",
        "8080:bad host:80",
        "8080:-leading:80",
        "8080:[::1:80",
        "example.com:8080:db:80",  # a listen address must be an address
        "8080::80",
        "8080:db:\u00b2",  # "²".isdigit() holds, but int() refuses it
        "\u00b2:db:80",
        "8080:db:\u0661",  # ARABIC-INDIC DIGIT ONE: int() reads it as 1
    ],
)
def test_bad_forwards_are_one_line_and_exit_2(spec: str) -> None:
    with pytest.raises(PodsideError) as raised:
        parse_forward(spec)
    assert raised.value.exit_code == 2
    assert "\n" not in raised.value.message and spec in raised.value.message


def test_resolv_conf_as_glibc_reads_it() -> None:
    config = parse_resolv_conf(
        b"# written by the kubelet\n"
        b"nameserver 198.18.128.10\n"
        b"nameserver fe80::1%eth0\n"
        b"nameserver not-an-address\n"
        b"domain ignored.example\n"
        b"search default.svc.cluster.local svc.cluster.local cluster.local\n"
        b"options ndots:5 timeout:2 attempts:3 rotate\n"
    )
    assert config.nameservers == ("198.18.128.10", "fe80::1")
    assert config.search == ("default.svc.cluster.local", "svc.cluster.local", "cluster.local")
    assert (config.ndots, config.timeout, config.attempts) == (5, 2.0, 3)


def test_resolv_conf_options_that_are_not_ascii_numbers_are_skipped() -> None:
    # the pod's file: a digit int() refuses must not end the lookup, one it reads differs
    config = parse_resolv_conf(b"options ndots:\xc2\xb2 timeout:\xd9\xa1 attempts:2\n")
    assert (config.ndots, config.attempts) == (DEFAULT_NDOTS, 2)


def test_resolv_conf_caps_and_defaults() -> None:
    config = parse_resolv_conf(
        b"nameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\nnameserver 10.0.0.4\n"
        b"options ndots:99 timeout:0 attempts:100\n"
    )
    assert config.nameservers == ("10.0.0.1", "10.0.0.2", "10.0.0.3")  # MAXNS is 3
    assert (config.ndots, config.timeout, config.attempts) == (15, 1.0, 5)
    assert parse_resolv_conf(b"").ndots == DEFAULT_NDOTS == 1


def test_search_order_follows_ndots() -> None:
    cluster = ResolverConfig(("10.0.0.10",), ("ns.svc.cluster.local", "svc.cluster.local"), 5)
    assert candidates("db", cluster) == ["db.ns.svc.cluster.local", "db.svc.cluster.local", "db"]
    assert candidates("db.other", cluster)[-1] == "db.other"  # 1 dot < ndots 5: searched first
    assert candidates("a.b.c.d.e.f", cluster)[0] == "a.b.c.d.e.f"
    assert candidates("example.com.", cluster) == ["example.com"]  # absolute: never searched
    plain = ResolverConfig(("10.0.0.10",), ("corp",), 1)
    assert candidates("example.com", plain) == ["example.com", "example.com.corp"]


def test_hosts_file_names_and_aliases() -> None:
    hosts = (
        b"127.0.0.1 localhost\n"
        b"198.18.0.7 blog-5c9 blog-5c9.default  # this pod\n"
        b"# 10.0.0.1 commented\n"
        b"fe80::2%eth0 Linklocal\n"
        b"198.18.0.8 blog-5c9\n"
    )
    assert hosts_addresses(hosts, "blog-5c9") == ["198.18.0.7", "198.18.0.8"]
    assert hosts_addresses(hosts, "BLOG-5c9.default.") == ["198.18.0.7"]
    assert hosts_addresses(hosts, "linklocal") == ["fe80::2"]
    assert hosts_addresses(hosts, "commented") == []
