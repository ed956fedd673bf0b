"""Rebuilds the client-to-server byte stream of sniffed TCP connections (no I/O here).

The sniffer hands over every segment it sees towards a mirrored port; this turns them back
into ordered bytes per connection: retransmitted and overlapping bytes are delivered once,
segments that arrive early wait for the gap before them, and a gap that is never filled (the
sniffer itself lost the packet, so no retransmission will come) is skipped after a while so
the connection goes on instead of stalling. Only connections whose SYN was seen are followed:
a connection picked up mid-way could start in the middle of a request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ConnectionKey = tuple[bytes, int, bytes, int]  # source ip, source port, destination ip, port

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
_SEQ_MOD = 1 << 32
_HALF = 1 << 31


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
    ) -> None:
        self._flows: dict[ConnectionKey, _Flow] = {}
        self._max_early = max_early_bytes
        self._gap_timeout = gap_timeout
        self._idle_timeout = idle_timeout

    def __len__(self) -> int:
        return len(self._flows)

    def segment(
        self, key: ConnectionKey, seq: int, flags: int, payload: bytes, now: float
    ) -> list[Action]:
        flow = self._flows.get(key)
        if flags & SYN and not flags & ACK:
            actions: list[Action] = []
            if flow is not None:
                # A new SYN on a known 4-tuple: the old connection is over (port reuse).
                del self._flows[key]
                actions.append(Closed(key, "replaced"))
            self._flows[key] = _Flow(next_seq=(seq + 1) % _SEQ_MOD, last_seen=now)
            actions.append(Opened(key))
            return actions
        if flow is None:
            return []
        flow.last_seen = now
        if flags & RST:
            del self._flows[key]
            return [Closed(key, "reset")]
        actions = []
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

    def tick(self, now: float) -> list[Action]:
        """Call now and then: skips gaps that waited too long, forgets idle connections."""
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
            del self._flows[key]
            actions.append(Closed(key, "fin"))
