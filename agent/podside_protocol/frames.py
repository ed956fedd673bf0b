"""Frame encoding: a 4-byte big-endian length, then a msgpack array `[kind, fields...]`.

The length prefix makes partial frames trivial to detect and bounds memory before a byte of
msgpack is parsed. DATA frames, the hot path, are written and read with a fixed layout that is
still valid msgpack (`[11, uint32 stream, bin32 payload]`), so the payload is never packed or
unpacked by msgpack and is copied once on each side.
"""

from __future__ import annotations

import enum
import struct
from typing import Any

import msgpack

from podside_protocol.errors import LocalProtocolError, RemoteProtocolError

PROTOCOL_VERSION = 1
# The variable podside sets on each agent container to the version it expects it to speak:
# a running agent is reused by it, never by its image's name.
PROTOCOL_ENV = "PODSIDE_AGENT_PROTOCOL"

# Per-stream flow-control window: the bytes a sender may have unacknowledged on one stream.
INITIAL_WINDOW = 1 << 20
# Largest payload in one DATA frame; bigger writes are split.
MAX_DATA_CHUNK = 256 * 1024
# Largest frame body accepted from a peer (a DATA frame plus its header, or a large response).
MAX_FRAME_BODY = 8 * 1024 * 1024
# What the agent accepts from a client that has not introduced itself yet: a HELLO is a few
# hundred bytes, and anyone who can reach the port may send one.
MAX_HANDSHAKE_BODY = 64 * 1024
# What the agent accepts from a client after the handshake: its largest message is a
# `file.write` of one chunk (1 MiB) with its path; the agent's own answers may be larger.
MAX_CLIENT_FRAME_BODY = 2 * 1024 * 1024


class Kind(enum.IntEnum):
    """Frame kinds. New kinds are only ever added at the end (older peers reject unknown ones)."""

    HELLO = 0
    WELCOME = 1
    REJECT = 2
    PING = 3
    PONG = 4
    GOODBYE = 5
    REQUEST = 6
    RESPONSE = 7
    OPEN = 8
    OPENED = 9
    REFUSED = 10
    DATA = 11
    CREDIT = 12
    EOF = 13
    RESET = 14


_LENGTH = struct.Struct(">I")
# fixarray(3), positive fixint 11 (DATA), uint32 marker + stream id, bin32 marker + length
_DATA_HEADER = struct.Struct(">IBBBIBI")
_DATA_PREFIX = bytes([0x93, Kind.DATA, 0xCE])
_DATA_OVERHEAD = 12  # body bytes before the payload

# Field types per kind, checked on every decoded frame so shells can trust event contents.
_FIELDS: dict[Kind, tuple[type | tuple[type, ...], ...]] = {
    Kind.HELLO: (dict,),
    Kind.WELCOME: (dict,),
    Kind.REJECT: (dict,),
    Kind.PING: (int,),
    Kind.PONG: (int,),
    Kind.GOODBYE: (str,),
    Kind.REQUEST: (int, str, dict),
    Kind.RESPONSE: (int, bool, (dict, list, str, int, float, bool, bytes, type(None))),
    Kind.OPEN: (int, str, dict),
    Kind.OPENED: (int, dict),
    Kind.REFUSED: (int, int, str),
    Kind.DATA: (int, bytes),
    Kind.CREDIT: (int, int),
    Kind.EOF: (int,),
    Kind.RESET: (int, str),
}


def encode(kind: Kind, *fields: Any) -> bytes:
    """Encode one frame other than DATA."""
    try:
        body: bytes = msgpack.packb([int(kind), *fields], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise LocalProtocolError(f"cannot encode {kind.name} frame: {error}") from None
    if len(body) > MAX_FRAME_BODY:
        raise LocalProtocolError(f"{kind.name} frame of {len(body)} bytes is too large")
    return _LENGTH.pack(len(body)) + body


def encode_data_header(stream_id: int, payload_length: int) -> bytes:
    """The bytes that precede a DATA payload; write them and the payload back to back."""
    return _DATA_HEADER.pack(
        _DATA_OVERHEAD + payload_length, 0x93, Kind.DATA, 0xCE, stream_id, 0xC6, payload_length
    )


class FrameDecoder:
    """Splits a byte stream into frames; keeps at most one partial frame buffered.

    A frame announcing more than `max_body` bytes is refused as soon as its length arrives,
    before any of it is buffered.
    """

    def __init__(self, max_body: int = MAX_FRAME_BODY) -> None:
        # The frame split across reads, kept as its pieces and joined once whole: each of its
        # bytes is copied once. Appending every read to one buffer, copying a payload out of
        # it and moving the rest down was three copies, most of a tunnel's decoding time.
        self._pieces: list[memoryview] = []
        self._held = 0
        self._length = -1  # the held frame's body length, once its 4 length bytes are here
        self.max_body = max_body

    def feed(self, data: bytes) -> list[tuple[Kind, tuple[Any, ...]]]:
        frames: list[tuple[Kind, tuple[Any, ...]]] = []
        view = memoryview(data)
        offset = self._complete_held(view, frames) if self._held else 0
        if offset < 0:
            return frames
        available = len(view)
        length = -1
        while available - offset >= 4:
            (length,) = _LENGTH.unpack_from(view, offset)
            self._check_length(length)
            end = offset + 4 + length
            if end > available:
                break
            frames.append(_decode_frame(view, offset + 4, end))
            offset = end
            length = -1
        if offset < available:
            self._keep(view[offset:])
            self._length = length
        return frames

    @property
    def buffered(self) -> int:
        return self._held

    def _keep(self, piece: memoryview) -> None:
        # A view of bytes can be held; a caller's bytearray may change after the call.
        self._pieces.append(piece if isinstance(piece.obj, bytes) else memoryview(bytes(piece)))
        self._held += len(piece)

    def _complete_held(self, view: memoryview, frames: list[tuple[Kind, tuple[Any, ...]]]) -> int:
        """Add to the held frame what it lacks from `view`, decoding it once whole; how much
        of `view` was taken, or -1 if all of it was and the frame is still partial."""
        taken = 0
        if self._length < 0:
            taken = min(4 - self._held, len(view))
            self._keep(view[:taken])
            if self._held < 4:
                return -1
            head = b"".join(self._pieces)
            self._pieces = [memoryview(head)]
            (self._length,) = _LENGTH.unpack(head)
            self._check_length(self._length)
        wanted = min(4 + self._length - self._held, len(view) - taken)
        self._keep(view[taken : taken + wanted])
        taken += wanted
        if self._held < 4 + self._length:
            return -1
        pieces, length = self._pieces, self._length
        self._pieces, self._held, self._length = [], 0, -1
        frames.append(_join_frame(pieces, length))
        return taken

    def _check_length(self, length: int) -> None:
        if length > self.max_body:
            raise RemoteProtocolError(f"frame of {length} bytes exceeds the limit")


def _is_data(view: memoryview, start: int, length: int) -> bool:
    return (
        length >= _DATA_OVERHEAD
        and view[start : start + 3] == _DATA_PREFIX
        and view[start + 7] == 0xC6
    )


def _data_fields(view: memoryview, start: int, length: int) -> int:
    """The stream id of the DATA frame whose body starts at `start`, its length checked."""
    stream_id, payload_length = struct.unpack_from(">IxI", view, start + 3)
    if payload_length != length - _DATA_OVERHEAD:
        raise RemoteProtocolError("DATA frame length does not match its payload")
    return int(stream_id)


def _decode_frame(view: memoryview, start: int, end: int) -> tuple[Kind, tuple[Any, ...]]:
    """The frame whose body is `view[start:end]`; a DATA payload is copied out of the view."""
    if _is_data(view, start, end - start):
        stream_id = _data_fields(view, start, end - start)
        return Kind.DATA, (stream_id, bytes(view[start + _DATA_OVERHEAD : end]))
    return _decode_body(view[start:end])


def _join_frame(pieces: list[memoryview], length: int) -> tuple[Kind, tuple[Any, ...]]:
    """The frame held in `pieces` (its length bytes included), joined in one copy."""
    first = pieces[0]
    if len(first) >= 4 + _DATA_OVERHEAD and _is_data(first, 4, length):
        stream_id = _data_fields(first, 4, length)
        return Kind.DATA, (stream_id, b"".join([first[4 + _DATA_OVERHEAD :], *pieces[1:]]))
    frame = memoryview(b"".join(pieces))
    return _decode_frame(frame, 4, len(frame))


def _decode_body(body: memoryview) -> tuple[Kind, tuple[Any, ...]]:
    try:
        value = msgpack.unpackb(body, raw=False, strict_map_key=True, use_list=True)
    except Exception as error:  # msgpack raises several unrelated types for bad input
        raise RemoteProtocolError(f"undecodable frame: {type(error).__name__}") from None
    if not isinstance(value, list) or not value or type(value[0]) is not int:
        raise RemoteProtocolError("frame is not an array starting with its kind")
    try:
        kind = Kind(value[0])
    except ValueError:
        raise RemoteProtocolError(f"unknown frame kind {value[0]}") from None
    fields = tuple(value[1:])
    expected = _FIELDS[kind]
    if len(fields) != len(expected):
        raise RemoteProtocolError(f"{kind.name} frame has {len(fields)} fields")
    for field, field_type in zip(fields, expected, strict=True):
        # bool is an int subclass: reject it where a number is meant and vice versa.
        if not isinstance(field, field_type) or (field_type is int and isinstance(field, bool)):
            raise RemoteProtocolError(f"{kind.name} frame has a field of the wrong type")
    return kind, fields
