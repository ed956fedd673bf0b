"""Tokens and verifiers, and who may enroll one more: pure decisions, no root needed."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import replace
from typing import Any

import pytest

from podside_agent.enrollment import (
    Credentials,
    PeerReading,
    own_credentials,
    read_peer,
    refusal,
)
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
    assert not verifiers.add(verifier_of(second).upper())  # nothing dropped to make room
    assert verifiers.accepts(second)
    assert len(verifiers) == 2


@pytest.mark.parametrize("text", ["", "abc", "g" * 64, verifier_of("x") + "0"])
def test_a_malformed_verifier_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="64 hex digits"):
        Verifiers().add(text)


def test_a_full_set_of_verifiers_drops_the_one_unused_longest() -> None:
    verifiers = Verifiers(verifier_of(str(n)) for n in range(MAX_VERIFIERS))
    assert not verifiers.add(verifier_of("0"))  # one it has takes no room
    assert verifiers.accepts("1")  # used now: "2" is the one unused longest
    assert verifiers.add(verifier_of("newcomer"))
    assert len(verifiers) == MAX_VERIFIERS
    assert verifiers.accepts("newcomer")
    assert not verifiers.accepts("2")
    assert verifiers.accepts("0")
    assert verifiers.accepts("1")
    assert verifiers.accepts("3")


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


AGENT = Credentials(uid=0, capabilities=NET_ADMIN | NET_RAW, user_namespace=(4, 4026531837))


def _peer(credentials: Credentials | None = AGENT, pid: int = 42, **identity: Any) -> PeerReading:
    """A peer read with a pidfd still alive afterwards, unless `identity` says otherwise."""
    return PeerReading(pid, credentials, **(identity or {"alive_after": True}))


def test_a_peer_holding_what_the_agent_holds_may_enroll() -> None:
    assert refusal(_peer(), AGENT) is None
    more = replace(AGENT, capabilities=AGENT.capabilities | 1)
    assert refusal(_peer(more), AGENT) is None


def test_another_uid_may_not_enroll() -> None:
    assert refusal(_peer(replace(AGENT, uid=1000)), AGENT) == (
        "the peer runs as uid 1000, the agent as uid 0"
    )


def test_a_peer_missing_one_of_the_agents_capabilities_may_not_enroll() -> None:
    assert refusal(_peer(replace(AGENT, capabilities=NET_ADMIN)), AGENT) == (
        "the peer lacks capabilities the agent has (mask 0x2000)"
    )


def test_capabilities_in_another_user_namespace_do_not_count() -> None:
    everything = (1 << 41) - 1
    own_namespace = replace(AGENT, capabilities=everything, user_namespace=(4, 4026532321))
    assert refusal(_peer(own_namespace), AGENT) == (
        "the peer runs in another user namespace than the agent (its capabilities count there only)"
    )
    # The same inode number on another device is another namespace.
    assert refusal(_peer(replace(AGENT, user_namespace=(5, 4026531837))), AGENT) is not None


def test_a_peer_whose_credentials_cannot_be_read_may_not_enroll() -> None:
    assert refusal(_peer(None), AGENT) == "the peer's capabilities cannot be read"
    assert refusal(_peer(None, pid=0), AGENT) == ("the peer is outside the agent's PID namespace")


def test_an_agent_that_cannot_read_its_own_credentials_takes_no_one() -> None:
    """Comparing with nothing would let in anyone with the agent's uid: fail closed."""
    reason = "the agent cannot read its own credentials, so it takes no enrollment"
    assert refusal(_peer(), None) == reason
    assert refusal(_peer(replace(AGENT, capabilities=(1 << 41) - 1)), None) == reason


def test_a_peer_that_exited_while_it_was_read_may_not_enroll() -> None:
    """Its pid may name another process by then: what was read may not be the peer's."""
    assert refusal(_peer(alive_after=False), AGENT) == "the peer exited while it was checked"


def test_without_a_pidfd_the_start_time_must_not_change_while_the_peer_is_read() -> None:
    assert refusal(_peer(started=(1234, 1234)), AGENT) is None
    reused = "the peer's pid was taken by another process while it was checked"
    assert refusal(_peer(started=(1234, 1300)), AGENT) == reused
    # Neither a pidfd nor both start times: nothing shows the pid was still the peer's.
    assert refusal(PeerReading(42, AGENT), AGENT) == reused


def test_a_live_peer_is_read_with_what_shows_its_pid_was_still_its_own() -> None:
    """Through a real process: with a pidfd (still signallable afterwards), and without one
    (the same start time before and after)."""
    with subprocess.Popen(["sleep", "30"]) as child:
        pidfd = os.pidfd_open(child.pid)
        try:
            with_pidfd = read_peer(child.pid, os.geteuid(), pidfd)
            without = read_peer(child.pid, os.geteuid(), None)
            child.kill()
            child.wait()
            gone = read_peer(child.pid, os.geteuid(), pidfd)
        finally:
            os.close(pidfd)
    own = own_credentials()
    assert own is not None
    assert with_pidfd.alive_after is True and with_pidfd.credentials is not None
    assert with_pidfd.credentials.user_namespace == own.user_namespace
    assert without.started is not None and without.started[0] == without.started[1]
    assert refusal(with_pidfd, own) is None and refusal(without, own) is None
    assert gone.credentials is None and refusal(gone, own) is not None
