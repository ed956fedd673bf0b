"""Rebuilds the client-to-server byte stream of sniffed TCP connections (no I/O here).

The sniffer hands over every segment it sees towards a mirrored port; this turns them back
into ordered bytes per connection: retransmitted and overlapping bytes are delivered once,
segments that arrive early wait for the gap before them, and a gap that is never filled (the
sniffer itself lost the packet, so no retransmission will come) is skipped after a while so
the connection goes on instead of stalling.

A connection is followed from its SYN. One that was already open when the sniffer started (an
HTTP/1 keep-alive connection of a client that came before the session) is picked up only at a
segment `pick_up` accepts, such as one that starts with a request line: a connection picked up
at any other byte could start in the middle of a request. A connection that ended is not
picked up again from its late retransmissions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

ConnectionKey = tuple[bytes, int, bytes, int]  # source ip, source port, destination ip, port

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
_SEQ_MOD = 1 << 32
_HALF = 1 << 31
# How long an ended connection's segments are not taken for a new one (twice Linux's 60 s
# TIME_WAIT would be safe for any peer; late retransmissions come within seconds).
_ENDED_SECONDS = 120.0
_ENDED_LIMIT = 65536  # at most this many remembered: a flood of short connections stays bounded

# RFC 9112's request-line: method (a token) SP request-target SP HTTP-version CRLF.
_REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [!-~]+ HTTP/1\.[01]\r\n")
_REQUEST_LINE_LIMIT = 8192


def starts_a_request(payload: bytes) -> bool:
    """Whether `payload` begins with an HTTP/1 request line: a request boundary to pick an
    already-open connection up at."""
    # endpos, not a slice: a segment of a connection not followed costs no copy.
    return _REQUEST_LINE.match(payload, 0, _REQUEST_LINE_LIMIT) is not None


def _distance(later: int, earlier: int) -> int:
    """Signed distance between sequence numbers, wrapping at 2**32."""
    diff = (later - earlier) % _SEQ_MOD
    return diff - _SEQ_MOD if diff >= _HALF else diff


@dataclass
class Opened:
    key: ConnectionKey


@dataclass
class Data:
    key: ConnectionKey
    data: bytes


@dataclass
class Skipped:
    """Bytes that were never seen and were given up on."""

    key: ConnectionKey
    missing: int


@dataclass
class Closed:
    key: ConnectionKey
    reason: str  # "fin", "reset", "idle", "replaced"


Action = Opened | Data | Skipped | Closed


@dataclass
class _Flow:
    next_seq: int
    last_seen: float
    early: dict[int, bytes] = field(default_factory=dict)  # seq -> payload, beyond a gap
    early_bytes: int = 0
    gap_since: float | None = None
    fin_seq: int | None = None


class Reassembler:
    def __init__(
        self,
        *,
        max_early_bytes: int = 4 * 1024 * 1024,
        gap_timeout: float = 0.5,
        idle_timeout: float = 600.0,
        pick_up: Callable[[ConnectionKey, bytes], bool] | None = None,
    ) -> None:
        """`pick_up(key, payload)`: whether a connection whose SYN was not seen is followed
        from this segment on (None: never)."""
        self._flows: dict[ConnectionKey, _Flow] = {}
        self._pick_up = pick_up
        self._ended: dict[ConnectionKey, float] = {}  # key -> when it ended
        self._now = 0.0
        self._max_early = max_early_bytes
        self._gap_timeout = gap_timeout
        self._idle_timeout = idle_timeout

    def __len__(self) -> int:
        return len(self._flows)

    def segment(
        self, key: ConnectionKey, seq: int, flags: int, payload: bytes, now: float
    ) -> list[Action]:
        self._now = now
        flow = self._flows.get(key)
        actions: list[Action] = []
        if flags & SYN and not flags & ACK:
            if flow is not None:
                # A new SYN on a known 4-tuple: the old connection is over (port reuse).
                del self._flows[key]
                actions.append(Closed(key, "replaced"))
            self._ended.pop(key, None)
            self._flows[key] = _Flow(next_seq=(seq + 1) % _SEQ_MOD, last_seen=now)
            actions.append(Opened(key))
            return actions
        if flow is None:
            if not self._picks_up(key, flags, payload):
                return []
            flow = self._flows[key] = _Flow(next_seq=seq, last_seen=now)
            actions.append(Opened(key))
        flow.last_seen = now
        if flags & RST:
            self._end(key)
            return [*actions, Closed(key, "reset")]
        if flags & FIN:
            flow.fin_seq = (seq + len(payload)) % _SEQ_MOD
        if payload:
            self._accept(flow, key, seq, payload, actions)
        if flow.early and flow.gap_since is None:
            flow.gap_since = now
        if flow.early_bytes > self._max_early:
            self._skip_gap(flow, key, actions)
        self._close_if_complete(flow, key, actions)
        return actions

    def _picks_up(self, key: ConnectionKey, flags: int, payload: bytes) -> bool:
        if self._pick_up is None or not payload or flags & (SYN | RST) or key in self._ended:
            return False
        return self._pick_up(key, payload)

    def _end(self, key: ConnectionKey) -> None:
        del self._flows[key]
        if self._pick_up is not None:
            self._ended.pop(key, None)
            self._ended[key] = self._now  # last in the dict: the dict stays ordered by time
            if len(self._ended) > _ENDED_LIMIT:
                del self._ended[next(iter(self._ended))]

    def tick(self, now: float) -> list[Action]:
        """Call now and then: skips gaps that waited too long, forgets idle connections."""
        self._now = now
        while self._ended:
            oldest = next(iter(self._ended))
            if now - self._ended[oldest] < _ENDED_SECONDS:
                break
            del self._ended[oldest]
        actions: list[Action] = []
        for key, flow in list(self._flows.items()):
            if flow.gap_since is not None and now - flow.gap_since >= self._gap_timeout:
                self._skip_gap(flow, key, actions)
                self._close_if_complete(flow, key, actions)
            elif now - flow.last_seen >= self._idle_timeout:
                del self._flows[key]
                actions.append(Closed(key, "idle"))
        return actions

    def _accept(
        self, flow: _Flow, key: ConnectionKey, seq: int, payload: bytes, actions: list[Action]
    ) -> None:
        offset = _distance(seq, flow.next_seq)
        if offset > 0:
            # Beyond a gap: keep it (the longest copy wins) until the gap is filled.
            previous = flow.early.get(seq)
            if previous is None or len(previous) < len(payload):
                flow.early[seq] = payload
                flow.early_bytes += len(payload) - (len(previous) if previous else 0)
            return
        if -offset >= len(payload):
            return  # a pure retransmission of bytes already delivered
        fresh = payload[-offset:] if offset else payload
        actions.append(Data(key, fresh))
        flow.next_seq = (flow.next_seq + len(fresh)) % _SEQ_MOD
        self._drain(flow, key, actions)

    def _drain(self, flow: _Flow, key: ConnectionKey, actions: list[Action]) -> None:
        while flow.early:
            progressed = False
            for seq in list(flow.early):
                offset = _distance(seq, flow.next_seq)
                if offset > 0:
                    continue
                payload = flow.early.pop(seq)
                flow.early_bytes -= len(payload)
                progressed = True
                if -offset < len(payload):
                    fresh = payload[-offset:] if offset else payload
                    actions.append(Data(key, fresh))
                    flow.next_seq = (flow.next_seq + len(fresh)) % _SEQ_MOD
            if not progressed:
                break
        if not flow.early:
            flow.gap_since = None

    def _skip_gap(self, flow: _Flow, key: ConnectionKey, actions: list[Action]) -> None:
        if not flow.early:
            flow.gap_since = None
            return
        nearest = min(flow.early, key=lambda seq: _distance(seq, flow.next_seq))
        actions.append(Skipped(key, _distance(nearest, flow.next_seq)))
        flow.next_seq = nearest
        self._drain(flow, key, actions)

    def _close_if_complete(self, flow: _Flow, key: ConnectionKey, actions: list[Action]) -> None:
        if flow.fin_seq is not None and _distance(flow.next_seq, flow.fin_seq) >= 0:
            self._end(key)
            actions.append(Closed(key, "fin"))
