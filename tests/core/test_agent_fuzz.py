"""Fuzzed frames against a live agent, before and after HELLO: whatever arrives, the agent only
ever closes (or answers) that connection, never logs a traceback, and a session that was
there all along keeps being served.

The requests the fuzzer may make are the ones that only read: the agent's target here is a
process of this machine, so a fuzzed `file.mkdir` or `file.unlink` would touch its files.
"""

from __future__ import annotations

import json
import socket

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podside_protocol import (
    capabilities,
    environment,
    files,
    mirror,
    status,
    steal,
)
from podside_protocol.frames import MAX_HANDSHAKE_BODY, Kind
from tests.core.agent_client import RawClient
from tests.core.conftest import podside_exec
from tests.topology import Pod

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=12)
    | st.binary(max_size=32),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
READ_ONLY_METHODS = [
    environment.GET,
    files.READ,
    files.OPEN,
    files.READ_CHUNK,
    files.STAT,
    files.LIST,
    files.READLINK,
    mirror.UNSUBSCRIBE,
    mirror.STATS,
    steal.UNSUBSCRIBE,
    status.STATUS,
    capabilities.CAPABILITIES,
    "no.such.method",
]
PARAM_NAMES = ["path", "port", "offset", "length", "follow", "destination", "source", "headers"]
params = st.dictionaries(st.sampled_from(PARAM_NAMES), values, max_size=4)
# Mostly ids a client may open (odd, new), some that break the rules.
stream_ids = st.integers(0, 2**20).map(lambda n: 2 * n + 1) | st.integers(0, 2**32 + 1)


def _frame(body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + body


def _packed(value: object) -> bytes:
    return _frame(msgpack.packb(value, use_bin_type=True))


frames = st.one_of(
    st.binary(max_size=64),  # not even a length
    st.binary(max_size=256).map(_frame),  # framed garbage
    values.map(_packed),  # valid msgpack of any shape
    st.tuples(st.sampled_from(list(Kind)), st.lists(values, max_size=4)).map(
        lambda kind_fields: _packed([int(kind_fields[0]), *kind_fields[1]])
    ),  # a real kind, arbitrary fields
    st.tuples(stream_ids, st.sampled_from(["tcp", "udp", "mirror", "steal", "x"]), params).map(
        lambda open_: _packed([int(Kind.OPEN), *open_])
    ),
    st.tuples(st.integers(0, 2**40), st.sampled_from(READ_ONLY_METHODS), params).map(
        lambda request: _packed([int(Kind.REQUEST), *request])
    ),
    st.tuples(stream_ids, st.binary(max_size=64)).map(
        lambda data: _packed([int(Kind.DATA), *data])
    ),
    st.tuples(stream_ids, st.integers(-(2**33), 2**33)).map(
        lambda credit: _packed([int(Kind.CREDIT), *credit])
    ),
    st.integers(MAX_HANDSHAKE_BODY + 1, 2**32 - 1).map(lambda n: n.to_bytes(4, "big") + b"x"),
)


def _send(pod: Pod, data: bytes, *, after_hello: bool) -> None:
    """Send `data` on a new connection, then read what the agent says for a moment."""
    if after_hello:
        client = RawClient(pod, timeout=5)
        sock = client.sock
    else:
        sock = socket.create_connection((pod.pod_ip, pod.agent_port), timeout=5)
    try:
        sock.sendall(data)
        sock.settimeout(0.1)
        while sock.recv(65536):
            pass
    except OSError:
        pass  # the agent closed it, or said nothing more: both are fine
    finally:
        sock.close()


def test_fuzzed_frames_never_hurt_the_agent_or_another_session(pod: Pod) -> None:
    logged_before = len(pod.log("agent.log"))
    witness = RawClient(pod)  # the session that must keep being served

    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(after_hello=st.booleans(), sent=st.lists(frames, min_size=1, max_size=4))
    def one_connection(after_hello: bool, sent: list[bytes]) -> None:
        _send(pod, b"".join(sent), after_hello=after_hello)
        witness.ping()
        answer = witness.request(status.STATUS, {})
        assert answer.ok, answer

    try:
        one_connection()
    finally:
        witness.close()
    result = podside_exec(pod, "curl", "-sS", "-m", "10", "http://backend/after-fuzz")
    assert json.loads(result.stdout)["path"] == "/after-fuzz", result.stderr
    log = pod.log("agent.log")[logged_before:]
    assert "Traceback" not in log and "Fatal error" not in log, log
