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
        self._buffer = bytearray()
        self.max_body = max_body

    def feed(self, data: bytes) -> list[tuple[Kind, tuple[Any, ...]]]:
        buffer = self._buffer
        buffer += data
        frames: list[tuple[Kind, tuple[Any, ...]]] = []
        offset = 0
        available = len(buffer)
        view = memoryview(buffer)
        try:
            while available - offset >= 4:
                (length,) = _LENGTH.unpack_from(buffer, offset)
                if length > self.max_body:
                    raise RemoteProtocolError(f"frame of {length} bytes exceeds the limit")
                end = offset + 4 + length
                if end > available:
                    break
                start = offset + 4
                if (
                    length >= _DATA_OVERHEAD
                    and view[start : start + 3] == _DATA_PREFIX
                    and buffer[start + 7] == 0xC6
                ):
                    stream_id, payload_length = struct.unpack_from(">IxI", buffer, start + 3)
                    if payload_length != length - _DATA_OVERHEAD:
                        raise RemoteProtocolError("DATA frame length does not match its payload")
                    frames.append((Kind.DATA, (stream_id, bytes(view[start + 12 : end]))))
                else:
                    frames.append(_decode_body(view[start:end]))
                offset = end
        finally:
            view.release()
        if offset:
            del buffer[:offset]
        return frames

    @property
    def buffered(self) -> int:
        return len(self._buffer)


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
