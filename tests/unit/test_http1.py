"""The agent's HTTP/1 framer (steal routing, and the layer's watcher) passes bytes on exactly."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podside_agent import http1

REQUESTS = (
    b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    b"PUT /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nwxyz\r\n0\r\nT: 1\r\n\r\n"
    b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n"
)


def _events(reader: http1.MessageReader) -> list[object]:
    events: list[object] = []
    while (event := reader.next_event()) is not http1.NEED_DATA:
        if event is http1.PAUSED:
            if reader.switched:
                break
            reader.start_next()
            continue
        events.append(event)
    return events


def _replay(pieces: list[bytes], kind: str = http1.REQUEST) -> tuple[list[str], bytes]:
    reader = http1.MessageReader(kind)
    events: list[object] = []
    for piece in pieces:
        reader.receive_data(piece)
        events += _events(reader)
    names = [type(e).__name__ for e in events]
    raw = b"".join(
        e.raw if isinstance(e, http1.Head) else e.data if isinstance(e, http1.Body) else b""
        for e in events
    )
    return names, raw


def test_requests_of_a_keep_alive_connection_are_framed_and_kept_byte_for_byte() -> None:
    names, raw = _replay([REQUESTS])
    assert names.count("Head") == 3 and names.count("End") == 3
    assert raw == REQUESTS


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1, len(REQUESTS)), max_size=30))
def test_any_split_gives_the_same_messages(cuts: list[int]) -> None:
    bounds = sorted({0, len(REQUESTS), *cuts})
    pieces = [REQUESTS[a:b] for a, b in itertools.pairwise(bounds)]
    names, raw = _replay(pieces)
    assert raw == REQUESTS
    assert names.count("Head") == 3 and names.count("End") == 3


def test_responses_know_which_carry_no_body() -> None:
    reader = http1.MessageReader(http1.RESPONSE)
    for method in ("HEAD", "GET", "GET"):
        reader.expect(method)
    reader.receive_data(
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"  # HEAD: no body despite the length
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    heads = [e.status for e in _events(reader) if isinstance(e, http1.Head)]
    assert heads == [200, 100, 204, 200]


def test_an_upgrade_ends_http_on_the_connection() -> None:
    reader = http1.MessageReader(http1.RESPONSE)
    reader.expect("GET")
    reader.receive_data(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi")
    assert [type(e).__name__ for e in _events(reader)] == ["Head", "End"]
    assert reader.switched and reader.detach() == b"\x81\x02hi"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
)
def test_what_cannot_be_framed_safely_is_refused(data: bytes) -> None:
    reader = http1.MessageReader(http1.REQUEST)
    reader.receive_data(data)
    with pytest.raises(http1.FramingError):
        _events(reader)


def test_h2c_preface_is_recognised_as_not_http1() -> None:
    assert http1.looks_like_http1_request(http1.H2_PREFACE) is False
    assert http1.looks_like_http1_request(b"GET / HTT") is None
    assert http1.looks_like_http1_request(b"GET / HTTP/1.1\r\n") is True


def _trailers(total: int) -> bytes:
    """A trailer section of `total` bytes, its closing empty line included."""
    line = b"T: " + b"t" * 995 + b"\r\n"  # 1000 bytes
    count, rest = divmod(total - 2, len(line))
    return line * count + (b"U: " + b"u" * (rest - 5) + b"\r\n" if rest else b"") + b"\r\n"


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"


@pytest.mark.parametrize("pieces", [1, 70])
def test_a_trailer_section_is_held_to_the_limit_of_a_head(pieces: int) -> None:
    fits = CHUNKED_HEAD + _trailers(http1.MAX_HEAD)
    names, raw = _replay([fits])
    assert (names[-1], raw) == ("End", fits)
    too_long = CHUNKED_HEAD + _trailers(http1.MAX_HEAD + 1)
    step = -(-len(too_long) // pieces)
    with pytest.raises(http1.TooLarge, match="trailer section"):
        _replay([too_long[i : i + step] for i in range(0, len(too_long), step)])


@pytest.mark.parametrize("pieces", [1, 70])
def test_a_head_longer_than_the_limit_is_refused_even_when_it_arrives_whole(pieces: int) -> None:
    def head(size: int) -> bytes:
        start = b"GET / HTTP/1.1\r\nX: "
        return start + b"x" * (size - len(start) - 4) + b"\r\n\r\n"

    assert _replay([head(http1.MAX_HEAD)]) == (["Head", "End"], head(http1.MAX_HEAD))
    assert len(head(http1.MAX_HEAD)) == http1.MAX_HEAD
    too_long = head(http1.MAX_HEAD + 1)
    step = -(-len(too_long) // pieces)
    with pytest.raises(http1.TooLarge, match="head is too long"):
        _replay([too_long[i : i + step] for i in range(0, len(too_long), step)])
