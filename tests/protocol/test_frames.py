"""Frame encoding: round trips, frames split at every byte, invalid input, fuzzing."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podside_protocol import Connection, ProtocolError, RemoteProtocolError, Role
from podside_protocol.frames import (
    MAX_FRAME_BODY,
    FrameDecoder,
    Kind,
    encode,
    encode_data_header,
)

from .helpers import TOKEN


def test_control_frame_round_trip() -> None:
    frames = FrameDecoder().feed(encode(Kind.REQUEST, 7, "file.read", {"path": "/etc/hosts"}))
    assert frames == [(Kind.REQUEST, (7, "file.read", {"path": "/etc/hosts"}))]


def test_data_frame_round_trip_uses_the_fixed_layout() -> None:
    wire = encode_data_header(5, 3) + b"abc"
    assert msgpack.unpackb(wire[4:]) == [int(Kind.DATA), 5, b"abc"]  # still plain msgpack
    assert FrameDecoder().feed(wire) == [(Kind.DATA, (5, b"abc"))]


def test_data_frame_packed_by_a_generic_msgpack_encoder_is_accepted() -> None:
    body = msgpack.packb([int(Kind.DATA), 5, b"abc"], use_bin_type=True)
    wire = len(body).to_bytes(4, "big") + body
    assert FrameDecoder().feed(wire) == [(Kind.DATA, (5, b"abc"))]


def test_frames_split_at_every_byte_decode_the_same() -> None:
    wire = encode(Kind.PING, 1) + encode_data_header(3, 5) + b"hello" + encode(Kind.RESET, 3, "bye")
    whole = FrameDecoder().feed(wire)
    decoder = FrameDecoder()
    pieces = []
    for index in range(len(wire)):
        pieces.extend(decoder.feed(wire[index : index + 1]))
    assert pieces == whole
    assert decoder.buffered == 0


@given(st.lists(st.integers(min_value=1, max_value=70), min_size=1))
def test_frames_split_anywhere_from_a_reused_buffer_decode_the_same(cuts: list[int]) -> None:
    # The decoder holds views of a split frame's pieces: a caller that refills one bytearray
    # after each call must not change the frames that come out later.
    payload = bytes(range(256)) * 2
    wire = encode_data_header(5, len(payload)) + payload + encode(Kind.EOF, 5)
    whole = FrameDecoder().feed(wire)
    decoder, frames, offset, reused = FrameDecoder(), [], 0, bytearray()
    for cut in [*cuts, len(wire)]:
        reused[:] = wire[offset : offset + cut]
        frames.extend(decoder.feed(reused))  # type: ignore[arg-type]
        reused[:] = bytes(len(reused))
        offset += cut
    assert frames == whole
    assert decoder.buffered == 0


def test_a_data_frame_split_across_reads_is_one_payload() -> None:
    payload = b"x" * 300_000
    wire = encode_data_header(7, len(payload)) + payload
    decoder = FrameDecoder()
    assert decoder.feed(wire[:2]) == []
    assert decoder.feed(wire[2:100_000]) == []
    assert decoder.buffered == 100_000
    assert decoder.feed(wire[100_000:]) == [(Kind.DATA, (7, payload))]
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xc1", "undecodable"),  # msgpack's never-used byte
        (msgpack.packb({"not": "a list"}), "array"),
        (msgpack.packb([200, 1]), "unknown frame kind"),
        (msgpack.packb([int(Kind.PING)]), "fields"),
        (msgpack.packb([int(Kind.PING), "one"]), "wrong type"),
        (msgpack.packb([int(Kind.CREDIT), 1, True]), "wrong type"),
    ],
)
def test_invalid_frames_are_remote_errors(body: bytes, reason: str) -> None:
    with pytest.raises(RemoteProtocolError, match=reason):
        FrameDecoder().feed(len(body).to_bytes(4, "big") + body)


def test_oversized_length_is_refused_before_buffering() -> None:
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        FrameDecoder().feed((MAX_FRAME_BODY + 1).to_bytes(4, "big"))


def test_data_header_with_a_lying_length_is_refused() -> None:
    header = bytearray(encode_data_header(1, 10))
    header[3] -= 1  # body length now disagrees with the bin32 length
    with pytest.raises(RemoteProtocolError):
        FrameDecoder().feed(bytes(header) + b"x" * 9)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_but_protocol_errors(data: bytes) -> None:
    agent = Connection(Role.AGENT, TOKEN)
    with contextlib.suppress(ProtocolError):
        agent.receive_data(data)


frame_fields = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 20), st.lists(frame_fields, max_size=5))
def test_well_framed_garbage_after_handshake_only_raises_protocol_errors(
    kind: int, fields: list[object]
) -> None:
    client = Connection(Role.CLIENT, TOKEN)
    agent = Connection(Role.AGENT, TOKEN)
    agent.receive_data(b"".join(client.data_to_send()))
    body = msgpack.packb([kind, *fields], use_bin_type=True)
    with contextlib.suppress(ProtocolError):
        agent.receive_data(len(body).to_bytes(4, "big") + body)
