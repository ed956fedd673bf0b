"""Tokens and verifiers, and who may enroll one more: pure decisions, no root needed."""

from __future__ import annotations

import hashlib

import pytest

from podside_agent.enrollment import refusal
from podside_protocol import Connection, Role
from podside_protocol.tokens import MAX_VERIFIERS, Verifiers, new_token, verifier_of

NET_ADMIN, NET_RAW = 1 << 12, 1 << 13


def test_a_verifier_is_the_hex_sha256_of_the_token() -> None:
    assert verifier_of("abc") == hashlib.sha256(b"abc").hexdigest()


def test_new_tokens_carry_256_bits() -> None:
    assert len(new_token()) == 43  # 32 bytes, base64 without padding
    assert new_token() != new_token()


def test_verifiers_accept_their_tokens_only() -> None:
    first, second = new_token(), new_token()
    verifiers = Verifiers([verifier_of(first)])
    assert verifiers.accepts(first)
    assert not verifiers.accepts(second)
    assert not verifiers.accepts(verifier_of(first))
    assert verifiers.add(verifier_of(second).upper())
    assert verifiers.accepts(second)
    assert len(verifiers) == 2


@pytest.mark.parametrize("text", ["", "abc", "g" * 64, verifier_of("x") + "0"])
def test_a_malformed_verifier_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        Verifiers().add(text)


def test_the_set_of_verifiers_is_bounded() -> None:
    verifiers = Verifiers(verifier_of(str(n)) for n in range(MAX_VERIFIERS))
    assert not verifiers.add(verifier_of("one too many"))
    assert verifiers.add(verifier_of("0"))  # one it has is still fine
    assert not verifiers.accepts("one too many")


def test_the_handshake_checks_the_token_against_the_verifiers() -> None:
    token = new_token()
    agent = Connection(Role.AGENT, Verifiers([verifier_of(token)]))
    good = Connection(Role.CLIENT, token)
    agent.receive_data(b"".join(good.data_to_send()))
    assert agent.state.value == "open"
    agent = Connection(Role.AGENT, Verifiers([verifier_of(token)]))
    spec_reader = Connection(Role.CLIENT, verifier_of(token))
    (rejected,) = agent.receive_data(b"".join(spec_reader.data_to_send()))
    assert rejected.code == "token"  # type: ignore[attr-defined]


def test_a_peer_holding_what_the_agent_holds_may_enroll() -> None:
    assert refusal(0, NET_ADMIN | NET_RAW, 0, NET_ADMIN | NET_RAW) is None
    assert refusal(0, NET_ADMIN | NET_RAW | 1, 0, NET_ADMIN | NET_RAW) is None


def test_another_uid_may_not_enroll() -> None:
    assert refusal(1000, NET_ADMIN | NET_RAW, 0, NET_ADMIN | NET_RAW) == (
        "the peer runs as uid 1000, the agent as uid 0"
    )


def test_a_peer_missing_one_of_the_agents_capabilities_may_not_enroll() -> None:
    assert refusal(0, NET_ADMIN, 0, NET_ADMIN | NET_RAW) == (
        "the peer lacks capabilities the agent has (mask 0x2000)"
    )


def test_a_peer_whose_capabilities_cannot_be_read_may_not_enroll() -> None:
    reason = refusal(0, None, 0, NET_ADMIN)
    assert reason is not None and "cannot be read" in reason
