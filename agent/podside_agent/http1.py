"""HTTP/1 message framing, sans-io: where each request or response starts and ends.

The steal router uses it to send each request of a keep-alive connection where it belongs and
to know when the answer is complete. It never rewrites anything: `Head.raw` and every `Body`
are the exact bytes received (chunk sizes and trailers included), so forwarding them passes the
message on byte for byte.

`MessageReader(REQUEST)` / `MessageReader(RESPONSE)`: `receive_data(bytes)` (b"" is the end of
the connection), then `next_event()` until it returns `NEED_DATA` or `PAUSED`. After a
message's `End` the reader pauses until `start_next()`, so the caller decides when the next
request may go (its answer must come back first). A response reader is told the method it
answers (`expect(method)`): HEAD and 1xx/204/304 answers carry no body. A 101 answer, or a 2xx
answer to CONNECT, ends HTTP on the connection: `End` then `PAUSED` for good, and `detach()`
returns what was received after it.

It frames as RFC 9112 tells an intermediary to, and raises `FramingError` on anything two
parsers could read differently, so that nothing is passed on that the next hop might frame
otherwise (request smuggling): Content-Length with Transfer-Encoding, differing or malformed
Content-Length, a request's Transfer-Encoding other than `chunked` alone, Transfer-Encoding
in HTTP/1.0, a chunk size that is not 1*HEXDIG, a bad chunk-ext, no CRLF after chunk data, bad
trailer lines, obs-fold, invalid field names or values (bare CR, LF, NUL, controls), an
invalid request or status line. The CRLF after chunk data is checked before it is returned.
A head, and likewise a chunked message's trailer section, longer than `MAX_HEAD` is refused
with `TooLarge` (a `FramingError`), so a peer cannot make the reader buffer without bound.
A generated-message fuzz test holds it to h11's boundaries (tests/unit/test_http1_fuzz.py).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MAX_HEAD = 64 * 1024
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_TOKEN_BYTES = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

REQUEST = "request"
RESPONSE = "response"


class FramingError(Exception):
    """The bytes are not HTTP/1 this module can frame."""


class TooLarge(FramingError):
    """A head or trailer section longer than `MAX_HEAD`: a request's is answered 431."""


class Sentinel(enum.Enum):
    NEED_DATA = "need data"
    PAUSED = "paused"


NEED_DATA = Sentinel.NEED_DATA
PAUSED = Sentinel.PAUSED


@dataclass
class Head:
    raw: bytes
    start: tuple[str, str, str]  # (method, target, version) or (version, status, reason)
    headers: list[tuple[str, str]]  # names lower-cased, values stripped, in order

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]

    @property
    def method(self) -> str:
        return self.start[0]

    @property
    def target(self) -> str:
        return self.start[1]

    @property
    def status(self) -> int:
        return int(self.start[1])

    @property
    def upgrade(self) -> bool:
        """A request that may turn the connection into something else."""
        if self.method == "CONNECT":
            return True
        tokens = {t.strip().lower() for v in self.header("connection") for t in v.split(",")}
        return "upgrade" in tokens and bool(self.header("upgrade"))


@dataclass
class Body:
    data: bytes


@dataclass
class End:
    pass


Event = Head | Body | End


def looks_like_http1_request(data: bytes) -> bool | None:
    """True/False once the first bytes decide it, None while too few have arrived."""
    if H2_PREFACE.startswith(data[: len(H2_PREFACE)]) and data:
        return None if len(data) < len(H2_PREFACE) else False
    space = data.find(b" ")
    method = data if space < 0 else data[:space]
    if not method or not all(byte in _TOKEN_BYTES for byte in method) or len(method) > 32:
        return False if data else None
    if space < 0:
        return None
    line_end = data.find(b"\r\n")
    if line_end < 0:
        return None if len(data) < MAX_HEAD else False
    return data[:line_end].rsplit(b" ", 1)[-1].startswith(b"HTTP/1.")


# RFC 9112's grammar, for what an intermediary must refuse rather than guess at.
_TOKEN_RE = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(%s) ([\x21-\x7e]+) (HTTP/1\.[0-9])" % _TOKEN_RE)
_STATUS_LINE = re.compile(rb"(HTTP/1\.[0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")
# field-line = field-name ":" OWS field-value OWS; no CR, LF, NUL or other controls but HTAB.
_FIELD_LINE = re.compile(
    rb"(%s):[ \t]*((?:[\x21-\x7e\x80-\xff](?:[ \t\x21-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?)[ \t]*"
    % _TOKEN_RE
)
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
# chunk-size [ chunk-ext ], chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ); the BWS
# before ";" is refused too, as several servers do (h11 among them).
_CHUNK_LINE = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:;[ \t]*%s(?:[ \t]*=[ \t]*(?:%s|%s))?)*"
    % (_TOKEN_RE, _TOKEN_RE, _QUOTED)
)
_DIGITS = re.compile(rb"[0-9]{1,18}")  # a length past 10**18 bytes is no real one
_TOKEN = re.compile(_TOKEN_RE)


def _field(line: bytes) -> tuple[str, str]:
    match = _FIELD_LINE.fullmatch(line)
    if match is None:
        # Also obs-fold (a line starting with whitespace) and a space before the colon.
        raise FramingError(f"bad header line: {line[:80]!r}")
    return match[1].decode("latin-1").lower(), match[2].decode("latin-1")


def parse_head(raw: bytes, kind: str) -> Head:
    """A whole head (`raw` ends with its empty line) of `kind`; `FramingError` if it is not one."""
    lines = raw[:-4].split(b"\r\n")
    match = (_REQUEST_LINE if kind == REQUEST else _STATUS_LINE).fullmatch(lines[0])
    if match is None:
        what = "request" if kind == REQUEST else "status"
        raise FramingError(f"not an HTTP/1 {what} line: {lines[0][:80]!r}")
    first, second, third = (part.decode("latin-1") if part else "" for part in match.groups())
    start = (first, second, third)
    return Head(raw, start, [_field(line) for line in lines[1:]])


def _list(values: list[str]) -> list[str]:
    return [item.strip(" \t") for value in values for item in value.split(",")]


class _State(enum.Enum):
    HEAD = "head"
    LENGTH = "length"
    CHUNK_SIZE = "chunk size"
    CHUNK_DATA = "chunk data"
    CHUNK_END = "chunk end"  # the CRLF after a chunk's data
    TRAILERS = "trailers"
    UNTIL_CLOSE = "until close"
    END = "end"  # the message is complete: End is the next event
    DONE = "done"  # paused after End
    SWITCHED = "switched"  # no more HTTP on this connection


class MessageReader:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._buffer = bytearray()
        self._state = _State.HEAD
        self._left = 0
        self._trailers = 0  # bytes of the current trailer section so far
        self._closed = False
        self._methods: list[str] = []  # requests whose answers are expected, oldest first
        self._switch_after = False

    def expect(self, method: str) -> None:
        """A response reader: the next answer is for a request with this method."""
        self._methods.append(method)

    def receive_data(self, data: bytes) -> None:
        if data:
            self._buffer += data
        else:
            self._closed = True

    @property
    def closed(self) -> bool:
        """The end of the connection was received."""
        return self._closed

    @property
    def switched(self) -> bool:
        """The last message ended HTTP on this connection (101, CONNECT)."""
        return self._state is _State.SWITCHED

    @property
    def in_message(self) -> bool:
        """Part of a message was returned and its End was not yet."""
        return self._state not in (_State.HEAD, _State.DONE, _State.SWITCHED)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def start_next(self) -> None:
        if self._state is _State.DONE:
            self._state = _State.HEAD

    def detach(self) -> bytes:
        """Stop framing; what was received and not yet returned."""
        self._state = _State.SWITCHED
        data, self._buffer = bytes(self._buffer), bytearray()
        return data

    def next_event(self) -> Event | Sentinel:
        state = self._state
        if state is _State.HEAD:
            return self._head()
        if state is _State.END:
            self._state = _State.SWITCHED if self._switch_after else _State.DONE
            return End()
        if state is _State.DONE or state is _State.SWITCHED:
            return PAUSED
        if state is _State.TRAILERS:
            return self._line(_State.TRAILERS)
        if state is _State.CHUNK_SIZE:
            return self._line(_State.CHUNK_SIZE)
        if state is _State.CHUNK_END:
            return self._chunk_end()
        if not self._buffer:
            if state is _State.UNTIL_CLOSE and self._closed:
                self._state = _State.END
                return self.next_event()
            return self._need()
        if state is _State.UNTIL_CLOSE:
            data, self._buffer = bytes(self._buffer), bytearray()
            return Body(data)
        # LENGTH or CHUNK_DATA: a known number of bytes
        data = bytes(self._buffer[: self._left])
        del self._buffer[: self._left]
        self._left -= len(data)
        if not self._left:
            self._state = _State.END if state is _State.LENGTH else _State.CHUNK_END
        return Body(data)

    def _need(self) -> Sentinel:
        if self._closed:
            raise FramingError("the connection ended inside a message")
        return NEED_DATA

    def _line(self, state: _State) -> Event | Sentinel:
        trailers = state is _State.TRAILERS
        # The longest the line may be, its CRLF included: a trailer section is held to the same
        # limit as a head, all its lines together.
        limit = MAX_HEAD - self._trailers if trailers else MAX_HEAD
        line_end = self._buffer.find(b"\r\n", 0, limit)
        if line_end < 0:
            if len(self._buffer) >= limit:
                if trailers:
                    raise TooLarge("the trailer section is too long")
                raise FramingError("a chunk line is too long")
            return self._need()
        line = bytes(self._buffer[:line_end])
        if trailers:
            self._trailers += line_end + 2
            if line:
                _field(line)
            else:
                self._state = _State.END
        else:
            match = _CHUNK_LINE.fullmatch(line)
            if match is None:
                raise FramingError(f"bad chunk line: {line[:80]!r}")
            size = int(match[1], 16)
            if size:
                self._state, self._left = _State.CHUNK_DATA, size
            else:
                self._state, self._trailers = _State.TRAILERS, 0
        del self._buffer[: line_end + 2]
        return Body(line + b"\r\n")

    def _chunk_end(self) -> Event | Sentinel:
        """The CRLF after a chunk's data, checked before it is passed on."""
        if not b"\r\n".startswith(self._buffer[:2]):
            raise FramingError("no CRLF after the chunk data")
        if len(self._buffer) < 2:
            return self._need()
        del self._buffer[:2]
        self._state = _State.CHUNK_SIZE
        return Body(b"\r\n")

    def _head(self) -> Event | Sentinel:
        if self.kind == REQUEST:
            # Tolerate the empty lines some clients send between requests (RFC 9112 2.2).
            while self._buffer.startswith(b"\r\n"):
                del self._buffer[:2]
        # Looked for only where a head may end: one that arrived whole is held to the limit too.
        end = self._buffer.find(b"\r\n\r\n", 0, MAX_HEAD)
        if end < 0:
            if len(self._buffer) >= MAX_HEAD:
                raise TooLarge("a message head is too long")
            if self._closed and self._buffer:
                raise FramingError("the connection ended inside a message head")
            return NEED_DATA
        raw = bytes(self._buffer[: end + 4])
        del self._buffer[: end + 4]
        head = parse_head(raw, self.kind)
        self._state = self._body_state(head)
        return head

    def _body_state(self, head: Head) -> _State:
        """How the message's body is framed (RFC 9112 6.3); what is ambiguous is refused."""
        encodings = [item.lower() for item in _list(head.header("transfer-encoding"))]
        lengths = head.header("content-length")
        version = head.start[2] if self.kind == REQUEST else head.start[0]
        if encodings and lengths:
            raise FramingError("both Transfer-Encoding and Content-Length")
        if encodings:
            if version == "HTTP/1.0":
                raise FramingError("Transfer-Encoding in an HTTP/1.0 message")
            if not all(_TOKEN.fullmatch(item.encode("latin-1")) for item in encodings):
                raise FramingError(f"bad Transfer-Encoding {', '.join(encodings)!r}")
            if encodings.count("chunked") > 1 or "chunked" in encodings[:-1]:
                raise FramingError("chunked is not the last and only one transfer coding")
        if self.kind == RESPONSE:
            status = head.status
            if 100 <= status < 200 and status != 101:
                return _State.HEAD  # interim (100 Continue): the final answer follows
            method = self._methods.pop(0) if self._methods else "GET"
            if status == 101 or (method == "CONNECT" and 200 <= status < 300):
                self._switch_after = True
                return _State.END
            if method == "HEAD" or status in (204, 304):
                return _State.END
            if encodings:
                return _State.CHUNK_SIZE if encodings[-1] == "chunked" else _State.UNTIL_CLOSE
            if lengths:
                return self._length(lengths)
            return _State.UNTIL_CLOSE
        if encodings:
            # Other codings are legal before chunked, but apps differ on them: refused.
            if encodings != ["chunked"]:
                raise FramingError("a request's Transfer-Encoding is chunked alone or nothing")
            return _State.CHUNK_SIZE
        return self._length(lengths) if lengths else _State.END

    def _length(self, values: list[str]) -> _State:
        lengths = set(_list(values))
        if len(lengths) != 1:
            raise FramingError("conflicting Content-Length headers")
        (text,) = lengths
        if not _DIGITS.fullmatch(text.encode("latin-1")):
            raise FramingError(f"bad Content-Length {text!r}")
        self._left = int(text)
        return _State.LENGTH if self._left else _State.END
