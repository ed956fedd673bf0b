"""The protocol state machine: handshake, requests, streams, flow control, bad peers."""

from __future__ import annotations

import pytest

from podside_protocol import (
    INITIAL_WINDOW,
    Connection,
    ConnectionClosed,
    DataReceived,
    Hello,
    LocalProtocolError,
    Pong,
    Rejected,
    RemoteProtocolError,
    Request,
    Response,
    Role,
    StreamEnded,
    StreamOpened,
    StreamOpenRequested,
    StreamRefused,
    StreamReset,
    StreamWritable,
    Welcome,
)
from podside_protocol.files import CHUNK
from podside_protocol.frames import (
    MAX_CLIENT_FRAME_BODY,
    MAX_HANDSHAKE_BODY,
    Kind,
    encode,
    encode_data_header,
)

from .helpers import TOKEN, ConnectionPair


def test_handshake_welcomes_a_client_with_the_right_token() -> None:
    pair = ConnectionPair()
    [hello] = pair.to_agent()
    assert isinstance(hello, Hello)
    assert hello.client == "test-client"
    [welcome] = pair.to_client()
    assert isinstance(welcome, Welcome)
    assert welcome.session_id == "s1"
    assert welcome.agent == "test-agent"


def test_wrong_token_is_rejected_and_closes_both_sides() -> None:
    pair = ConnectionPair(agent_token="other")
    [rejected] = pair.to_agent()
    assert isinstance(rejected, Rejected) and rejected.code == "token"
    [client_side] = pair.to_client()
    assert isinstance(client_side, Rejected) and client_side.code == "token"
    assert pair.client.state.value == "closed" and pair.agent.state.value == "closed"


def test_version_mismatch_names_both_versions() -> None:
    pair = ConnectionPair(client_version=99)
    [rejected] = pair.to_agent()
    assert isinstance(rejected, Rejected) and rejected.code == "version"
    [client_side] = pair.to_client()
    assert isinstance(client_side, Rejected)
    assert "99" in client_side.message and "version 1" in client_side.message
    assert client_side.peer_version == 1


def test_frames_before_hello_are_a_remote_error() -> None:
    agent = Connection(Role.AGENT, TOKEN)
    with pytest.raises(RemoteProtocolError):
        agent.receive_data(encode(Kind.PING, 1))


def test_request_and_response_round_trip() -> None:
    pair = ConnectionPair()
    pair.handshake()
    request_id = pair.client.send_request("env.get", {"x": 1})
    [request] = pair.to_agent()
    assert request == Request(request_id, "env.get", {"x": 1})
    pair.agent.send_response(request_id, {"env": {"A": "b"}})
    [response] = pair.to_client()
    assert response == Response(request_id, True, {"env": {"A": "b"}})


def test_response_to_an_unknown_request_is_a_remote_error() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.agent.send_response(42, None)
    with pytest.raises(RemoteProtocolError):
        pair.to_client()


def test_ping_is_answered_automatically() -> None:
    pair = ConnectionPair()
    pair.handshake()
    nonce = pair.client.ping()
    assert pair.to_agent() == []
    assert pair.to_client() == [Pong(nonce)]


def test_stream_open_data_eof_both_ways() -> None:
    pair = ConnectionPair()
    pair.handshake()
    stream = pair.client.open_stream("tcp", {"destination": ["10.0.0.1", 80]})
    assert stream % 2 == 1
    [opening] = pair.to_agent()
    assert opening == StreamOpenRequested(stream, "tcp", {"destination": ["10.0.0.1", 80]})
    pair.agent.accept_stream(stream, {"local": ["10.1.1.1", 5555]})
    pair.agent.send_data(stream, b"hello from the pod")
    events = pair.to_client()
    assert events == [
        StreamOpened(stream, {"local": ["10.1.1.1", 5555]}),
        DataReceived(stream, b"hello from the pod"),
    ]
    pair.client.send_data(stream, b"GET / HTTP/1.1\r\n\r\n")
    pair.client.send_eof(stream)
    assert pair.to_agent() == [
        DataReceived(stream, b"GET / HTTP/1.1\r\n\r\n"),
        StreamEnded(stream),
    ]
    pair.agent.send_eof(stream)
    assert pair.to_client() == [StreamEnded(stream)]
    assert pair.client.stream_ids() == [] and pair.agent.stream_ids() == []


def test_data_written_before_the_peer_accepts_waits_and_then_flows() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.to_agent()
    stream = pair.agent.open_stream("mirror", {"port": 80})
    assert pair.agent.send_data(stream, b"early bytes") == len(b"early bytes")
    [request] = pair.to_client()
    assert isinstance(request, StreamOpenRequested)
    pair.client.accept_stream(stream)
    assert pair.to_agent() == [StreamOpened(stream, {})]
    assert pair.agent.buffered(stream) == 0
    assert pair.to_client() == [DataReceived(stream, b"early bytes")]


def test_refused_stream_reports_errno_and_is_forgotten() -> None:
    pair = ConnectionPair()
    pair.handshake()
    stream = pair.client.open_stream("tcp", {})
    pair.to_agent()
    pair.agent.refuse_stream(stream, 111, "Connection refused")
    assert pair.to_client() == [StreamRefused(stream, 111, "Connection refused")]
    assert pair.client.stream_ids() == []


def test_reset_drops_the_stream_and_late_frames_are_ignored() -> None:
    pair = ConnectionPair()
    pair.handshake()
    stream = pair.client.open_stream("tcp", {})
    pair.to_agent()
    pair.agent.accept_stream(stream)
    pair.to_client()
    pair.agent.send_data(stream, b"in flight")
    pair.client.reset_stream(stream, "program closed")
    assert pair.to_client() == []  # data crossing the reset is dropped, not an error
    assert pair.to_agent() == [StreamReset(stream, "program closed")]


def test_sender_never_exceeds_the_window_and_resumes_on_credit() -> None:
    pair = ConnectionPair()
    pair.handshake()
    stream = pair.client.open_stream("tcp", {})
    pair.to_agent()
    pair.agent.accept_stream(stream)
    pair.to_client()
    payload = b"x" * (INITIAL_WINDOW + 1000)
    assert pair.client.send_data(stream, payload) == 1000
    received = pair.to_agent()
    assert sum(len(e.data) for e in received if isinstance(e, DataReceived)) == INITIAL_WINDOW
    assert pair.client.send_window(stream) == 0
    pair.agent.acknowledge(stream, INITIAL_WINDOW)
    events = pair.to_client()
    assert events == [StreamWritable(stream)]
    assert pair.client.buffered(stream) == 0
    [tail] = pair.to_agent()
    assert isinstance(tail, DataReceived) and tail.data == b"x" * 1000


def test_one_blocked_stream_does_not_stall_another() -> None:
    pair = ConnectionPair()
    pair.handshake()
    slow = pair.client.open_stream("tcp", {})
    fast = pair.client.open_stream("tcp", {})
    pair.to_agent()
    pair.agent.accept_stream(slow)
    pair.agent.accept_stream(fast)
    pair.to_client()
    pair.client.send_data(slow, b"s" * (INITIAL_WINDOW * 2))
    pair.client.send_data(fast, b"quick")
    events = pair.to_agent()
    assert DataReceived(fast, b"quick") in events


def test_peer_exceeding_the_window_is_a_remote_error() -> None:
    pair = ConnectionPair()
    pair.handshake()
    stream = pair.client.open_stream("tcp", {})
    pair.to_agent()
    pair.agent.accept_stream(stream)
    pair.to_client()
    rogue = b"".join(
        [
            encode_data_header(stream, INITIAL_WINDOW),
            b"y" * INITIAL_WINDOW,
            encode_data_header(stream, 1),
            b"z",
        ]
    )
    with pytest.raises(RemoteProtocolError, match="window"):
        pair.agent.receive_data(rogue)


def test_data_for_a_stream_never_opened_is_a_remote_error() -> None:
    pair = ConnectionPair()
    pair.handshake()
    with pytest.raises(RemoteProtocolError):
        pair.agent.receive_data(encode_data_header(7, 1) + b"a")


def test_peer_opening_a_stream_with_our_parity_is_a_remote_error() -> None:
    pair = ConnectionPair()
    pair.handshake()
    with pytest.raises(RemoteProtocolError):
        pair.agent.receive_data(encode(Kind.OPEN, 2, "tcp", {}))


def test_goodbye_closes_the_connection() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.client.close("done")
    assert pair.to_agent() == [ConnectionClosed("done")]
    assert pair.agent.state.value == "closed"


def test_sending_on_a_closed_connection_is_a_local_error() -> None:
    pair = ConnectionPair()
    pair.handshake()
    pair.client.close()
    with pytest.raises(LocalProtocolError):
        pair.client.open_stream("tcp", {})


def test_the_agent_buffers_little_before_hello_and_one_chunk_write_after() -> None:
    agent = Connection(Role.AGENT, TOKEN)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        agent.receive_data((MAX_HANDSHAKE_BODY + 1).to_bytes(4, "big"))
    pair = ConnectionPair()
    pair.handshake()
    pair.client.send_request("file.write", {"path": "/x", "offset": 0, "data": b"x" * CHUNK})
    [request] = pair.to_agent()
    assert isinstance(request, Request) and len(request.params["data"]) == CHUNK
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        pair.agent.receive_data((MAX_CLIENT_FRAME_BODY + 1).to_bytes(4, "big"))


def test_the_client_accepts_the_agents_large_answers() -> None:
    pair = ConnectionPair()
    pair.handshake()
    request_id = pair.client.send_request("file.read", {"path": "/big"})
    pair.to_agent()
    pair.agent.send_response(request_id, {"data": b"x" * (4 * 1024 * 1024)})
    [response] = pair.to_client()
    assert isinstance(response, Response) and response.ok


def test_abandoning_a_stream_refuses_it_if_unanswered_and_resets_it_otherwise() -> None:
    pair = ConnectionPair()
    pair.handshake()
    first, second = pair.client.open_stream("tcp"), pair.client.open_stream("tcp")
    pair.to_agent()
    pair.agent.accept_stream(second)
    pair.agent.abandon_stream(first, 22, "invalid address")
    pair.agent.abandon_stream(second, 5, "it broke")
    events = pair.to_client()
    assert StreamRefused(first, 22, "invalid address") in events
    assert StreamReset(second, "it broke") in events
    pair.agent.abandon_stream(first, 22, "again")  # gone: nothing more is sent
    assert pair.agent.data_to_send() == []
