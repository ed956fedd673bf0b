"""The sandbox's SPDY/3.1 framing, in memory: a client written here from the draft-3 layout
talks to `ServerConnection`, and the events and bytes that come out are checked."""

from __future__ import annotations

import struct
import zlib

import pytest

from podside.sandbox.api import spdy


class Client:
    """The client's half, as spdystream frames it (its own zlib stream, the SPDY/3 dictionary)."""

    def __init__(self) -> None:
        self.deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)

    def syn_stream(self, stream_id: int, headers: dict[str, str], flags: int = 0) -> bytes:
        block = spdy.encode_header_block({name: [value] for name, value in headers.items()})
        compressed = self.deflate.compress(block) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + compressed
        return control(spdy.SYN_STREAM, flags, payload)

    def frames(self, data: bytes) -> list[tuple[str, int, int, bytes]]:
        """(kind, stream or ping id, flags, payload) for each frame the server sent."""
        out = []
        while data:
            first, second = struct.unpack_from(">II", data)
            flags, length = second >> 24, second & 0xFFFFFF
            payload, data = data[8 : 8 + length], data[8 + length :]
            if first & 0x80000000:
                kind = first & 0xFFFF
                name = {
                    spdy.SYN_REPLY: "reply",
                    spdy.RST_STREAM: "reset",
                    spdy.PING: "ping",
                    spdy.GOAWAY: "goaway",
                }[kind]
                ident = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
                rest = payload[4:]
                if kind == spdy.SYN_REPLY:  # the headers, decompressed, must be none
                    assert spdy.decode_header_block(self.inflate.decompress(rest)) == {}
                    rest = b""
                out.append((name, ident, flags, rest))
            else:
                out.append(("data", first, flags, payload))
        return out


def control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | 3, kind, flags << 24 | len(payload)) + payload


def data(stream_id: int, payload: bytes, fin: bool = False) -> bytes:
    return struct.pack(">II", stream_id, (1 if fin else 0) << 24 | len(payload)) + payload


PAIR = {"streamtype": "error", "port": "8080", "requestid": "0"}


def test_the_dictionary_is_draft_3s_1423_bytes() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_a_stream_opens_with_its_headers_and_is_answered_with_an_empty_reply() -> None:
    client, server = Client(), spdy.ServerConnection()
    events = server.receive_data(client.syn_stream(1, PAIR))
    assert events == [
        spdy.StreamOpened(1, {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]}, False)
    ]
    server.reply(1)
    assert client.frames(server.data_to_send()) == [("reply", 1, 0, b"")]


def test_frames_split_at_every_byte_give_the_same_events() -> None:
    client, server = Client(), spdy.ServerConnection()
    wire = client.syn_stream(1, PAIR) + client.syn_stream(3, {**PAIR, "streamtype": "data"})
    wire += data(3, b"hello ") + data(3, b"world", fin=True)
    events: list[spdy.Event] = []
    for index in range(len(wire)):
        events += server.receive_data(wire[index : index + 1])
    assert [type(event).__name__ for event in events[:2]] == ["StreamOpened", "StreamOpened"]
    received = b"".join(event.data for event in events if isinstance(event, spdy.DataReceived))
    assert received == b"hello world"
    assert isinstance(events[-1], spdy.DataReceived) and events[-1].fin


def test_data_sent_is_framed_in_pieces_and_fin_closes_the_stream() -> None:
    client, server = Client(), spdy.ServerConnection()
    server.receive_data(client.syn_stream(1, PAIR))
    server.reply(1)
    payload = bytes(range(256)) * 2048  # 512 KiB: two frames
    server.send_data(1, payload, fin=True)
    frames = client.frames(server.data_to_send())[1:]
    assert [(kind, ident, flags) for kind, ident, flags, _ in frames] == [
        ("data", 1, 0),
        ("data", 1, spdy.FLAG_FIN),
    ]
    assert b"".join(frame[3] for frame in frames) == payload
    server.send_data(1, b"late")  # the stream is closed on this side: nothing goes out
    assert server.data_to_send() == b""


def test_a_stream_is_forgotten_once_both_sides_finished() -> None:
    client, server = Client(), spdy.ServerConnection()
    server.receive_data(client.syn_stream(1, PAIR))
    server.close_stream(1)
    assert server.is_open(1)
    server.receive_data(data(1, b"", fin=True))
    assert not server.is_open(1)


def test_a_reset_from_the_client_ends_the_stream_and_its_late_data_is_dropped() -> None:
    client, server = Client(), spdy.ServerConnection()
    server.receive_data(client.syn_stream(1, PAIR))
    events = server.receive_data(control(spdy.RST_STREAM, 0, struct.pack(">II", 1, spdy.CANCEL)))
    assert events == [spdy.StreamReset(1, spdy.CANCEL)]
    assert server.receive_data(data(1, b"after the reset")) == []


def test_the_clients_ping_is_answered_and_settings_and_window_updates_are_ignored() -> None:
    client, server = Client(), spdy.ServerConnection()
    wire = control(spdy.SETTINGS, 0, struct.pack(">IBBHI", 1, 0, 0, 7, 65536))
    wire += control(spdy.WINDOW_UPDATE, 0, struct.pack(">II", 1, 4096))
    wire += control(spdy.PING, 0, struct.pack(">I", 5))
    assert server.receive_data(wire) == []
    assert client.frames(server.data_to_send()) == [("ping", 5, 0, b"")]


def test_goaway_is_an_event() -> None:
    server = spdy.ServerConnection()
    assert server.receive_data(control(spdy.GOAWAY, 0, struct.pack(">II", 3, 0))) == [
        spdy.GoAway(3, 0)
    ]


def test_a_stream_id_that_is_even_or_goes_back_is_reset() -> None:
    client, server = Client(), spdy.ServerConnection()
    assert server.receive_data(client.syn_stream(2, PAIR)) == []
    assert client.frames(server.data_to_send()) == [
        ("reset", 2, 0, struct.pack(">I", spdy.PROTOCOL_ERROR))
    ]
    server.receive_data(client.syn_stream(5, PAIR))
    assert server.receive_data(client.syn_stream(3, PAIR)) == []


@pytest.mark.parametrize(
    "wire",
    [
        struct.pack(">HHI", 0x8000 | 2, spdy.PING, 4) + b"\0\0\0\1",  # SPDY/2
        control(spdy.SYN_STREAM, 0, struct.pack(">IIBB", 1, 0, 0, 0) + b"not zlib"),
        control(spdy.RST_STREAM, 0, b"\0\0"),  # cut short
        struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, 1 << 20),  # a megabyte of headers
    ],
    ids=["version", "compression", "short", "oversized"],
)
def test_broken_framing_is_the_peers_protocol_error(wire: bytes) -> None:
    with pytest.raises(spdy.SpdyProtocolError):
        spdy.ServerConnection().receive_data(wire)


def test_a_header_block_that_inflates_past_the_limit_is_refused() -> None:
    client, server = Client(), spdy.ServerConnection()
    with pytest.raises(spdy.SpdyProtocolError, match="over"):
        server.receive_data(client.syn_stream(1, {"port": "1", "x": "a" * 200_000}))


def test_header_names_must_be_lowercase_and_unique() -> None:
    block = struct.pack(">I", 1) + struct.pack(">I", 4) + b"Port" + struct.pack(">I", 1) + b"1"
    with pytest.raises(spdy.SpdyProtocolError, match="lowercase"):
        spdy.decode_header_block(block)
    pair = struct.pack(">I", 4) + b"port" + struct.pack(">I", 1) + b"1"
    with pytest.raises(spdy.SpdyProtocolError, match="twice"):
        spdy.decode_header_block(struct.pack(">I", 2) + pair + pair)
