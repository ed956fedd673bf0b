"""The steal framer against a reference parser (h11) on generated requests, valid and not:
Content-Length and Transfer-Encoding together or alone, chunk syntax edge cases, odd header
lines. Wherever the framer takes a message it must end where h11 ends it, and pass on exactly
the bytes it framed; where the two could disagree the framer must refuse."""

from __future__ import annotations

import h11
from hypothesis import example, given, settings
from hypothesis import strategies as st

from podside_agent import http1

HEX = "0123456789abcdefABCDEF"


@st.composite
def chunk_size(draw: st.DrawFn, size: int) -> bytes:
    digits = f"{size:x}"
    return draw(
        st.sampled_from(
            [
                digits,
                digits.upper(),
                "00" + digits,
                "0x" + digits,
                "+" + digits,
                "-" + digits,
                " " + digits,
                digits + " ",
                digits[:1] + "_" + digits[1:],
                digits + "g",
                "",
            ]
        )
    ).encode()


EXTENSIONS = [b"", b";a", b";a=b", b';a="q \\" x"', b";", b"; a = b", b";a=b c", b";a=", b";a;b=c"]
AFTER_DATA = [b"\r\n", b"\r\n", b"\r\n", b"\n", b"XY", b"\r", b""]
TRAILERS = [b"", b"T: 1\r\n", b"Bad T: 1\r\n", b" folded\r\n", b"T:1\r\nU: 2\r\n"]


@st.composite
def chunked_body(draw: st.DrawFn) -> bytes:
    body = b""
    for data in draw(st.lists(st.binary(min_size=1, max_size=20), max_size=3)):
        body += draw(chunk_size(len(data))) + draw(st.sampled_from(EXTENSIONS)) + b"\r\n"
        body += data + draw(st.sampled_from(AFTER_DATA))
    last = draw(st.sampled_from([b"0", b"000", b"0x0", b"+0", b"0 "]))
    body += last + draw(st.sampled_from(EXTENSIONS)) + b"\r\n"
    return body + draw(st.sampled_from(TRAILERS)) + b"\r\n"


HEADER_LINES = [
    b"X-A: b",
    b"X-A:b",
    b"X-A: b  ",
    b"X-A:\tb\tc",
    b"X-A:",
    b"X-A: \x80\xff",
    b" folded",
    b"\tfolded",
    b"Bad Name: x",
    b"X-A : b",
    b": x",
    b"X-A: a\rb",
    b"X-A: a\nb",
    b"X-A: a\x00b",
    b"X-A: a\x01b",
    b"X-A: a\x7fb",
]


@st.composite
def request(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"G\x01T", b"G ET"]))
    target = draw(st.sampled_from([b"/", b"/a?b=c", b"/smuggled", b"*", b"/x y", b"/\x80"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"]))
    line = draw(st.sampled_from([b"%s %s %s", b"%s %s %s", b"%s  %s %s", b"%s %s %s "]))
    lines = [line % (method, target, version), b"Host: h"]
    lines += draw(st.lists(st.sampled_from(HEADER_LINES), max_size=2))
    body = b""
    framing = draw(st.sampled_from(["none", "length", "chunked", "both", "both"]))
    if framing in ("chunked", "both"):
        body = draw(chunked_body())
        for value in draw(
            st.sampled_from(
                [
                    [b"chunked"],
                    [b"chunked"],
                    [b"Chunked"],
                    [b"gzip, chunked"],
                    [b"chunked, gzip"],
                    [b"chunked", b"chunked"],
                    [b"chunked, chunked"],
                    [b"identity"],
                    [b"chunked,"],
                    [b""],
                ]
            )
        ):
            lines.append(b"Transfer-Encoding: " + value)
    if framing in ("length", "both"):
        size = draw(st.integers(0, 40))
        if framing == "length":
            body = draw(st.binary(min_size=size, max_size=size))
        shown = draw(
            st.sampled_from(
                ["%d", "%d", "%d, %d", "%d, 1%d", "+%d", "0x%d", "%d %d", "-%d", "%d.0"]
            )
        )
        values = shown.count("%d")
        lines.append(b"Content-Length: " + (shown % ((size,) * values)).encode())
        if draw(st.booleans()) and framing == "length":
            lines.append(b"Content-Length: %d" % draw(st.integers(0, 40)))
    draw(st.randoms()).shuffle(lines[1:])  # Host stays; the order of the rest varies
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def framer_ends(data: bytes) -> tuple[list[int], bool]:
    """Where each request the framer completes ends, and whether it refused what followed."""
    reader = http1.MessageReader(http1.REQUEST)
    reader.receive_data(data)
    reader.receive_data(b"")
    ends: list[int] = []
    passed_on = b""
    try:
        while (event := reader.next_event()) is not http1.NEED_DATA:
            if event is http1.PAUSED:
                reader.start_next()
            elif isinstance(event, http1.Head):
                passed_on += event.raw
            elif isinstance(event, http1.Body):
                passed_on += event.data
            else:
                ends.append(len(passed_on))
                assert passed_on == data[: len(passed_on)]  # exactly the bytes framed
    except http1.FramingError:
        return ends, True
    return ends, False


def h11_ends(data: bytes) -> tuple[list[int], str]:
    """h11's ends, and how it finished: "refused", "clean", or "stopped" after a message that
    ends the connection (HTTP/1.0), past which it reads nothing."""
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    connection.receive_data(b"")
    ends: list[int] = []
    while True:
        try:
            event = connection.next_event()
        except h11.RemoteProtocolError:
            return ends, "refused"
        if isinstance(event, h11.ConnectionClosed):
            return ends, "clean"
        if isinstance(event, h11.EndOfMessage):
            ends.append(len(data) - len(connection.trailing_data[0]))
            connection.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
            connection.send(h11.EndOfMessage())
            if connection.our_state is not h11.DONE:
                return ends, "stopped"
            connection.start_next_cycle()


SMUGGLING = (
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 41\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(request(), min_size=1, max_size=3), st.binary(max_size=8))
@example([SMUGGLING], b"")
@example(
    [b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n"],
    b"",
)
@example([b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"], b"\r\n\r\n")
def test_the_framer_agrees_with_h11_or_refuses(requests: list[bytes], tail: bytes) -> None:
    data = b"".join(requests) + tail
    ours, refused = framer_ends(data)
    theirs, how = h11_ends(data)
    if how == "stopped":
        ours = ours[: len(theirs)]  # h11 reads no further: compare what both framed
        refused = refused and len(ours) < len(theirs)
    assert ours == theirs[: len(ours)], (ours, theirs)
    if not refused:
        # Everything the framer took, h11 took the same way, and nothing more was left.
        assert ours == theirs, (ours, theirs, how)
        rest = data[ours[-1] if ours else 0 :]
        # The one difference allowed: RFC 9112 2.2 lets a server ignore empty lines before a
        # request line (the framer does, waiting for the request); h11 refuses them.
        assert how != "refused" or rest.startswith(b"\r\n"), (ours, theirs, how)


def test_the_smuggling_request_is_refused_before_its_head_is_passed_on() -> None:
    assert framer_ends(SMUGGLING) == ([], True)
