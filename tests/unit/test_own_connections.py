"""The agent's own connections to the pod's app, which the sniffer leaves out: known from before
their SYN, kept a while after they close, and a reused key is never dropped early."""

from __future__ import annotations

from podside_agent.mirror import OwnConnections

KEY = (40000, b"\x0a\x00\x00\x02", 8080)
OTHER = (40001, b"\x0a\x00\x00\x02", 8080)


def test_a_connection_is_left_out_from_its_start_until_a_while_after_it_closed() -> None:
    own = OwnConnections(linger=10.0)
    own.add(KEY, now=0.0)
    assert KEY in own and OTHER not in own
    own.release(KEY, now=5.0)
    own.expire(now=14.9)
    assert KEY in own  # its SYN may still wait in the sniffer's queue
    own.expire(now=15.0)
    assert KEY not in own and len(own) == 0


def test_a_key_taken_again_before_it_expired_stays() -> None:
    own = OwnConnections(linger=10.0)
    own.add(KEY, now=0.0)
    own.release(KEY, now=1.0)
    own.add(KEY, now=2.0)  # the port was reused for a new connection to the same app
    own.expire(now=20.0)
    assert KEY in own
    own.release(KEY, now=20.0)
    own.release(KEY, now=25.0)  # a second release does not push the expiry on
    own.expire(now=30.0)
    assert KEY not in own


def test_released_keys_are_forgotten_as_new_ones_come_even_without_ticks() -> None:
    own = OwnConnections(linger=1.0)
    for port in range(1000):
        key = (port, b"\x0a\x00\x00\x02", 8080)
        own.add(key, now=float(port))
        own.release(key, now=float(port))
    assert len(own) <= 2
