"""The TCP reassembler turns sniffed segments back into each connection's ordered bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from podside_agent.tcp_reassembly import (
    ACK,
    FIN,
    RST,
    SYN,
    Closed,
    Data,
    Opened,
    Reassembler,
    Skipped,
    starts_a_request,
)

KEY = (b"\x0a\x00\x00\x01", 40000, b"\x0a\x00\x00\x02", 80)


def _data(actions: list[object]) -> bytes:
    return b"".join(a.data for a in actions if isinstance(a, Data))


def _opened(reassembler: Reassembler, isn: int = 1000) -> None:
    assert reassembler.segment(KEY, isn, SYN, b"", 0.0) == [Opened(KEY)]


def test_in_order_segments_are_delivered_as_they_come() -> None:
    r = Reassembler()
    _opened(r)
    assert _data(r.segment(KEY, 1001, ACK, b"GET / ", 0.1)) == b"GET / "
    assert _data(r.segment(KEY, 1007, ACK, b"HTTP/1.1\r\n", 0.1)) == b"HTTP/1.1\r\n"


def test_connections_without_a_seen_syn_are_ignored() -> None:
    r = Reassembler()
    assert r.segment(KEY, 5, ACK, b"mid-stream", 0.0) == []
    assert len(r) == 0


def test_retransmissions_and_overlaps_are_delivered_once() -> None:
    r = Reassembler()
    _opened(r)
    out = r.segment(KEY, 1001, ACK, b"abcdef", 0.0)
    out += r.segment(KEY, 1001, ACK, b"abcdef", 0.0)  # retransmitted
    out += r.segment(KEY, 1004, ACK, b"defghi", 0.0)  # overlaps the end
    assert _data(out) == b"abcdefghi"


def test_early_segments_wait_for_the_gap_before_them() -> None:
    r = Reassembler()
    _opened(r)
    assert r.segment(KEY, 1004, ACK, b"def", 0.0) == []
    assert _data(r.segment(KEY, 1001, ACK, b"abc", 0.0)) == b"abcdef"


def test_a_gap_never_filled_is_skipped_after_the_timeout() -> None:
    r = Reassembler(gap_timeout=0.5)
    _opened(r)
    r.segment(KEY, 1001, ACK, b"abc", 0.0)
    assert r.segment(KEY, 1010, ACK, b"later", 0.1) == []
    assert r.tick(0.3) == []
    actions = r.tick(0.7)
    assert Skipped(KEY, 6) in actions
    assert _data(actions) == b"later"


def test_a_gap_is_skipped_when_too_much_waits_behind_it() -> None:
    r = Reassembler(max_early_bytes=10)
    _opened(r)
    r.segment(KEY, 1011, ACK, b"0123456789", 0.0)
    actions = r.segment(KEY, 1021, ACK, b"x", 0.0)
    assert Skipped(KEY, 10) in actions
    assert _data(actions) == b"0123456789x"


def test_fin_closes_after_every_byte_before_it() -> None:
    r = Reassembler()
    _opened(r)
    assert r.segment(KEY, 1004, FIN | ACK, b"end", 0.0) == []  # FIN arrives before a gap fills
    actions = r.segment(KEY, 1001, ACK, b"the", 0.0)
    assert _data(actions) == b"theend"
    assert actions[-1] == Closed(KEY, "fin")
    assert len(r) == 0


def test_reset_closes_at_once() -> None:
    r = Reassembler()
    _opened(r)
    assert r.segment(KEY, 1001, RST, b"", 0.0) == [Closed(KEY, "reset")]


def test_a_new_syn_on_the_same_ports_replaces_the_old_connection() -> None:
    r = Reassembler()
    _opened(r)
    assert r.segment(KEY, 99, SYN, b"", 1.0) == [Closed(KEY, "replaced"), Opened(KEY)]


def test_sequence_numbers_wrap_around() -> None:
    r = Reassembler()
    _opened(r, isn=2**32 - 3)
    out = r.segment(KEY, 2**32 - 2, ACK, b"ab", 0.0)
    out += r.segment(KEY, 0, ACK, b"cd", 0.0)
    assert _data(out) == b"abcd"


def test_idle_connections_are_forgotten() -> None:
    r = Reassembler(idle_timeout=10)
    _opened(r)
    assert r.tick(11) == [Closed(KEY, "idle")]


@settings(max_examples=200, deadline=None)
@given(
    payload=st.binary(min_size=1, max_size=3000),
    cuts=st.lists(st.integers(0, 3000), max_size=12),
    order=st.randoms(use_true_random=False),
    duplicates=st.lists(st.integers(0, 20), max_size=5),
)
def test_any_segmentation_order_and_duplication_rebuilds_the_stream(
    payload: bytes, cuts: list[int], order: object, duplicates: list[int]
) -> None:
    bounds = sorted({0, len(payload), *[c for c in cuts if c < len(payload)]})
    segments = [(bounds[i], payload[bounds[i] : bounds[i + 1]]) for i in range(len(bounds) - 1)]
    segments += [segments[i % len(segments)] for i in duplicates]
    order.shuffle(segments)  # type: ignore[attr-defined]
    r = Reassembler()
    _opened(r, isn=7)
    out: list[object] = []
    for offset, chunk in segments:
        out += r.segment(KEY, 8 + offset, ACK, chunk, 0.0)
    assert _data(out) == payload


def _request_starts(key: object, payload: bytes) -> bool:
    return starts_a_request(payload)


def test_request_lines_are_request_boundaries() -> None:
    assert starts_a_request(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\n")
    assert starts_a_request(b"M-SEARCH * HTTP/1.0\r\n")
    for payload in (
        b"GET / HTTP/1.1",  # the line not yet ended: may still be a body that looks like one
        b"GET  / HTTP/1.1\r\n",
        b"ody\r\nGET / HTTP/1.1\r\n",
        b"GET / HTTP/2.0\r\n",
        b"\x16\x03\x01\x02\x00",  # a TLS record
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"",
    ):
        assert not starts_a_request(payload), payload


def test_an_open_connection_is_picked_up_at_a_request_line() -> None:
    r = Reassembler(pick_up=_request_starts)
    assert r.segment(KEY, 5000, ACK, b"mid-body bytes", 0.0) == []  # not a boundary
    assert r.segment(KEY, 5014, ACK | RST, b"", 0.0) == []  # nothing to close
    out = r.segment(KEY, 7000, ACK, b"GET /next HTTP/1.1\r\n\r\n", 0.1)
    assert out[0] == Opened(KEY) and _data(out) == b"GET /next HTTP/1.1\r\n\r\n"
    out = r.segment(KEY, 7022, ACK, b"POST /x HTTP/1.1\r\n", 0.2)
    assert _data(out) == b"POST /x HTTP/1.1\r\n"


def test_an_ended_connection_is_not_picked_up_from_its_retransmissions() -> None:
    r = Reassembler(pick_up=_request_starts)
    _opened(r)
    request = b"GET / HTTP/1.1\r\n\r\n"
    assert _data(r.segment(KEY, 1001, ACK | FIN, request, 0.1)) == request
    assert len(r) == 0
    assert r.segment(KEY, 1001, ACK | FIN, request, 1.0) == []  # a late retransmission
    r.tick(200.0)  # long after: the 4-tuple may be a new client's connection
    assert r.segment(KEY, 9000, ACK, request, 200.0)[0] == Opened(KEY)


def test_without_pick_up_nothing_is_remembered_after_the_end() -> None:
    r = Reassembler()
    _opened(r)
    r.segment(KEY, 1001, ACK | RST, b"", 0.0)
    assert r.segment(KEY, 1001, ACK, b"GET / HTTP/1.1\r\n", 0.0) == []
