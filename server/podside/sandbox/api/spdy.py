"""SPDY/3.1 framing as kubectl's port-forward speaks it, sans-io: bytes in, events out.

The API server and the kubelet serve `pods/NAME/portforward` over SPDY/3.1 (moby/spdystream),
either on the upgraded HTTP connection or tunnelled inside WebSocket binary messages
(`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31). Only the server's side is needed here: the
peer opens streams (odd ids), this side answers them. Wire facts this follows:

- every frame has an 8-byte head: a control frame `1 | version 3 | type`, `flags | length`;
  a data frame `0 | stream id`, `flags | length`; lengths are 24 bits;
- header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are zlib-compressed with the SPDY/3
  dictionary, one zlib stream per direction for the whole connection, each block ended with a
  sync flush; names are lowercase and a value holding several values separates them with NUL;
- spdystream does no flow control: WINDOW_UPDATE and SETTINGS are read and ignored, and
  none are sent; a PING from the peer (an odd id) is answered with the same frame;
- a stream is done when both sides sent FIN or either sent RST_STREAM.

A peer that breaks the framing gets `SpdyProtocolError`; the shell then ends the connection.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes (SPDY/3 §2.6.3).
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5

MAX_FRAME_LENGTH = (1 << 24) - 1
# What one data frame we send carries: large enough that the 8-byte head costs nothing.
MAX_SENT_DATA = 256 * 1024
# A header block, decompressed, larger than this is refused (the port-forward's are < 100 B).
MAX_HEADER_BLOCK = 64 * 1024
# Control frames are buffered whole; data frames are handed on as they arrive.
MAX_CONTROL_FRAME = 64 * 1024


def _dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (draft 3, §2.6.10.1): length-prefixed names
    and values, then status lines, dates and common values run together."""
    entries = [
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ]
    prefixed = b"".join(struct.pack(">I", len(entry)) + entry.encode() for entry in entries)
    codes = (
        "100 101 201 202 205 206 300 302 303 304 305 306 307 402 405 406 407 408 409 410 411 "
        "412 413 414 415 416 417 502 504 505"
    )
    tail = (
        "".join(codes.split())
        + "203 Non-Authoritative Information204 No Content301 Moved Permanently"
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found"
        "500 Internal Server Error501 Not Implemented503 Service Unavailable"
        "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
        "chunked,text/html,image/png,image/jpg,image/gif,application/xml,"
        "application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,"
        "sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    return prefixed + tail.encode()


DICTIONARY = _dictionary()

Headers = dict[str, list[str]]


class SpdyProtocolError(Exception):
    """The peer broke SPDY framing; the connection cannot go on."""


@dataclass(frozen=True)
class StreamOpened:
    stream_id: int
    headers: Headers
    fin: bool


@dataclass(frozen=True)
class DataReceived:
    stream_id: int
    data: bytes
    fin: bool


@dataclass(frozen=True)
class StreamReset:
    stream_id: int
    status: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int


Event = StreamOpened | DataReceived | StreamReset | GoAway


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block: a count, then length-prefixed names and values."""
    parts = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        encoded_name = name.lower().encode()
        value = "\0".join(values).encode()
        parts += [struct.pack(">I", len(encoded_name)), encoded_name]
        parts += [struct.pack(">I", len(value)), value]
    return b"".join(parts)


def decode_header_block(block: bytes) -> Headers:
    headers: Headers = {}
    try:
        (count,) = struct.unpack_from(">I", block)
        offset = 4
        for _ in range(count):
            (length,) = struct.unpack_from(">I", block, offset)
            name = block[offset + 4 : offset + 4 + length]
            offset += 4 + length
            (length,) = struct.unpack_from(">I", block, offset)
            value = block[offset + 4 : offset + 4 + length]
            offset += 4 + length
            if offset > len(block) or not name:
                raise SpdyProtocolError("a header block is cut short")
            key = name.decode()
            if key != key.lower():
                raise SpdyProtocolError(f"header name {key!r} is not lowercase")
            if key in headers:
                raise SpdyProtocolError(f"header {key!r} appears twice")
            headers[key] = value.decode().split("\0")
    except (struct.error, UnicodeDecodeError) as error:
        raise SpdyProtocolError(f"a header block does not parse: {error}") from None
    return headers


class _Stream:
    __slots__ = ("local_closed", "remote_closed")

    def __init__(self, remote_closed: bool) -> None:
        self.remote_closed = remote_closed
        self.local_closed = False


class ServerConnection:
    """The server's side of one SPDY/3.1 session: `receive_data` returns events, every send
    queues bytes, `data_to_send` drains them."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._output: list[bytes] = []
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zdict=DICTIONARY)
        self._streams: dict[int, _Stream] = {}
        self._last_stream_id = 0
        # The data frame being received: (stream id, flags, bytes still to come).
        self._data_frame: tuple[int, int, int] | None = None

    # Receiving

    def receive_data(self, data: bytes) -> list[Event]:
        self._buffer += data
        events: list[Event] = []
        while True:
            if self._data_frame is not None:
                if not self._continue_data(events):
                    break
                continue
            if len(self._buffer) < 8:
                break
            first, second = struct.unpack_from(">II", self._buffer)
            flags, length = second >> 24, second & 0xFFFFFF
            if not first & 0x80000000:
                del self._buffer[:8]
                self._data_frame = (first & 0x7FFFFFFF, flags, length)
                continue
            version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
            if version != VERSION:
                raise SpdyProtocolError(f"SPDY version {version}, not {VERSION}")
            if length > MAX_CONTROL_FRAME:
                raise SpdyProtocolError(f"a control frame of {length} bytes")
            if len(self._buffer) < 8 + length:
                break
            payload = bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            event = self._control_frame(kind, flags, payload)
            if event is not None:
                events.append(event)
        return events

    def _continue_data(self, events: list[Event]) -> bool:
        """Hands on what arrived of the current data frame; False when more must come."""
        assert self._data_frame is not None
        stream_id, flags, remaining = self._data_frame
        if remaining and not self._buffer:
            return False
        chunk = bytes(self._buffer[:remaining])
        del self._buffer[: len(chunk)]
        remaining -= len(chunk)
        self._data_frame = (stream_id, flags, remaining) if remaining else None
        fin = not remaining and bool(flags & FLAG_FIN)
        stream = self._streams.get(stream_id)
        # Data for a stream already reset or closed is dropped, as spdystream drops it.
        if stream is not None and not stream.remote_closed and (chunk or fin):
            if fin:
                stream.remote_closed = True
                self._forget_if_done(stream_id)
            events.append(DataReceived(stream_id, chunk, fin))
        return True

    def _control_frame(self, kind: int, flags: int, payload: bytes) -> Event | None:
        try:
            if kind == SYN_STREAM:
                stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
                headers = self._inflate_headers(payload[10:])
                return self._open(stream_id, flags, headers)
            if kind == RST_STREAM:
                stream_id, status = struct.unpack(">II", payload)
                stream_id &= 0x7FFFFFFF
                if self._streams.pop(stream_id, None) is None:
                    return None
                return StreamReset(stream_id, status)
            if kind == PING:
                (ping_id,) = struct.unpack(">I", payload)
                if ping_id & 1:  # the peer's own ping: send it back
                    self._control(PING, 0, payload)
                return None
            if kind == GOAWAY:
                last_good, status = struct.unpack(">II", payload)
                return GoAway(last_good & 0x7FFFFFFF, status)
            if kind == HEADERS:
                self._inflate_headers(payload[4:])  # kept in step with the peer's compressor
                return None
            if kind == SYN_REPLY:
                raise SpdyProtocolError("SYN_REPLY for a stream this side never opened")
        except struct.error:
            raise SpdyProtocolError(f"control frame {kind} is {len(payload)} bytes") from None
        return None  # SETTINGS, WINDOW_UPDATE and unknown types: no flow control here

    def _inflate_headers(self, compressed: bytes) -> Headers:
        try:
            block = self._inflate.decompress(compressed, MAX_HEADER_BLOCK)
        except zlib.error as error:
            raise SpdyProtocolError(f"a header block does not decompress: {error}") from None
        if self._inflate.unconsumed_tail:
            raise SpdyProtocolError(f"a header block over {MAX_HEADER_BLOCK} bytes")
        return decode_header_block(block)

    def _open(self, stream_id: int, flags: int, headers: Headers) -> Event | None:
        if stream_id % 2 == 0 or stream_id <= self._last_stream_id:
            # spdystream's rule: a client's ids are odd and grow.
            self.reset(stream_id, PROTOCOL_ERROR)
            return None
        self._last_stream_id = stream_id
        stream = _Stream(remote_closed=bool(flags & FLAG_FIN))
        if flags & FLAG_UNIDIRECTIONAL:
            stream.local_closed = True
        self._streams[stream_id] = stream
        return StreamOpened(stream_id, headers, bool(flags & FLAG_FIN))

    # Sending

    def reply(self, stream_id: int, fin: bool = False) -> None:
        """SYN_REPLY with no headers, as the kubelet and API server answer a stream."""
        self._control(SYN_REPLY, FLAG_FIN if fin else 0, self._header_frame(stream_id, {}))
        if fin:
            self._close_local(stream_id)

    def send_data(self, stream_id: int, data: bytes | memoryview, fin: bool = False) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return  # reset by the peer meanwhile: spdystream drops the bytes too
        view = memoryview(data)
        for start in range(0, len(view), MAX_SENT_DATA):
            chunk = view[start : start + MAX_SENT_DATA]
            last = start + MAX_SENT_DATA >= len(view)
            frame_flags = FLAG_FIN if fin and last else 0
            self._output.append(struct.pack(">II", stream_id, frame_flags << 24 | len(chunk)))
            self._output.append(bytes(chunk))
        if not view:
            self._output.append(struct.pack(">II", stream_id, (FLAG_FIN if fin else 0) << 24))
        if fin:
            self._close_local(stream_id)

    def close_stream(self, stream_id: int) -> None:
        """This side sends no more on the stream (an empty DATA frame with FIN)."""
        self.send_data(stream_id, b"", fin=True)

    def reset(self, stream_id: int, status: int = CANCEL) -> None:
        self._streams.pop(stream_id, None)
        self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def go_away(self, status: int = 0) -> None:
        self._control(GOAWAY, 0, struct.pack(">II", self._last_stream_id, status))

    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def data_to_send(self) -> bytes:
        output = b"".join(self._output)
        self._output.clear()
        return output

    def _close_local(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.local_closed = True
            self._forget_if_done(stream_id)

    def _forget_if_done(self, stream_id: int) -> None:
        stream = self._streams[stream_id]
        if stream.local_closed and stream.remote_closed:
            del self._streams[stream_id]

    def _header_frame(self, stream_id: int, headers: Headers) -> bytes:
        block = self._deflate.compress(encode_header_block(headers))
        block += self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return struct.pack(">I", stream_id) + block

    def _control(self, kind: int, flags: int, payload: bytes) -> None:
        head = struct.pack(">HHI", 0x8000 | VERSION, kind, flags << 24 | len(payload))
        self._output.append(head + payload)
