"""Mirror feature (agent side): copy new connections on subscribed ports to subscribers.

One sniffer serves every client: its filter covers the union of subscribed ports, and each
reassembled connection is fanned out as a `mirror` stream to every client subscribed to its
port. The pod's app is never touched. A subscriber that cannot keep up loses that mirrored
connection (reset), never the agent's memory.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import defaultdict

from podside_agent.peer import Peer
from podside_agent.podnet import PodNetwork
from podside_agent.sniffer import Segment, Sniffer
from podside_agent.tcp_reassembly import (
    Closed,
    ConnectionKey,
    Data,
    Opened,
    Reassembler,
    Skipped,
)
from podside_protocol import mirror

log = logging.getLogger(__name__)

# Bytes a subscriber may fall behind on one mirrored connection before it is dropped.
SUBSCRIBER_BACKLOG_LIMIT = 16 * 1024 * 1024
_TICK_SECONDS = 0.25


def _address(raw: bytes, port: int) -> tuple[str, int]:
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw), port


class Mirror:
    def __init__(self, network: PodNetwork) -> None:
        self._sniffer = Sniffer(network)
        self._reassembler = Reassembler()
        self._subscribers: dict[int, set[Peer]] = defaultdict(set)
        self._streams: dict[ConnectionKey, list[tuple[Peer, int]]] = {}
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._ticker: asyncio.TimerHandle | None = None
        self.skipped_bytes = 0
        self.skipped_connections = 0
        self.overflowed_connections = 0
        self.connections = 0

    # --- subscriptions -------------------------------------------------------------------------

    def subscribe(self, peer: Peer, port: int) -> None:
        self._subscribers[port].add(peer)
        self._apply_ports()

    def unsubscribe(self, peer: Peer, port: int) -> None:
        self._subscribers[port].discard(peer)
        self._apply_ports()

    def drop_peer(self, peer: Peer) -> None:
        for subscribers in self._subscribers.values():
            subscribers.discard(peer)
        for streams in self._streams.values():
            streams[:] = [(p, s) for p, s in streams if p is not peer]
        self._apply_ports()

    def ports(self) -> set[int]:
        return {port for port, peers in self._subscribers.items() if peers}

    def statistics(self) -> dict[str, int]:
        stats = self._sniffer.statistics()
        stats["connections"] = self.connections
        stats["skipped_bytes"] = self.skipped_bytes
        stats["skipped_connections"] = self.skipped_connections
        stats["overflowed_connections"] = self.overflowed_connections
        return stats

    def close(self) -> None:
        self._stop_reading()
        self._sniffer.close()

    def _apply_ports(self) -> None:
        ports = self.ports()
        if not ports:
            self._stop_reading()
            self._sniffer.close()
            return
        self._sniffer.set_ports(ports)
        if not self._reading:
            self._loop.add_reader(self._sniffer.fileno(), self._drain)
            self._ticker = self._loop.call_later(_TICK_SECONDS, self._tick)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sniffer.fileno())
            self._reading = False
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    # --- packets -------------------------------------------------------------------------------

    def _drain(self) -> None:
        self._sniffer.read_segments(self._on_segment)

    def _tick(self) -> None:
        for action in self._reassembler.tick(self._loop.time()):
            self._apply(action)
        self._ticker = self._loop.call_later(_TICK_SECONDS, self._tick)

    def _on_segment(self, segment: Segment) -> None:
        source, sport, destination, dport, seq, flags, payload = segment
        key = (source, sport, destination, dport)
        for action in self._reassembler.segment(key, seq, flags, payload, self._loop.time()):
            self._apply(action)

    def _apply(self, action: Opened | Data | Skipped | Closed) -> None:
        if isinstance(action, Data):
            receivers = self._streams.get(action.key)
            if not receivers:
                return
            for peer, stream_id in list(receivers):
                if peer.send_data(stream_id, action.data) > SUBSCRIBER_BACKLOG_LIMIT:
                    self.overflowed_connections += 1
                    log.warning("dropping a mirrored connection: subscriber too slow")
                    peer.reset_stream(stream_id, "subscriber fell too far behind")
                    receivers.remove((peer, stream_id))
        elif isinstance(action, Opened):
            source, sport, destination, dport = action.key
            peers = self._subscribers.get(dport)
            if not peers:
                return
            self.connections += 1
            params = mirror.stream_params(
                dport, _address(source, sport), _address(destination, dport)
            )
            streams: list[tuple[Peer, int]] = []
            self._streams[action.key] = streams
            for peer in peers:
                if peer.writing_paused:
                    self.skipped_connections += 1  # the subscriber is not keeping up
                    continue
                sink = _SubscriberEnd(streams, peer)
                sink.stream_id = peer.open_stream_nowait(mirror.STREAM, params, sink)
                streams.append((peer, sink.stream_id))
        elif isinstance(action, Closed):
            for peer, stream_id in self._streams.pop(action.key, []):
                if action.reason == "reset":
                    peer.reset_stream(stream_id, "the client reset the connection")
                else:
                    peer.send_eof(stream_id)
                    peer.forget_stream(stream_id)
        elif isinstance(action, Skipped):
            self.skipped_bytes += action.missing
            log.warning(
                "mirror lost %d bytes of a connection; continuing after the gap", action.missing
            )


class _SubscriberEnd:
    """A subscriber's end of one mirrored connection.

    Subscribers never send on it; when one refuses or drops the stream (its program stopped
    listening), it leaves the fan-out list of that connection.
    """

    def __init__(self, streams: list[tuple[Peer, int]], peer: Peer) -> None:
        self._streams = streams
        self._peer = peer
        self.stream_id = 0

    def data_received(self, data: bytes) -> None:
        self._peer.acknowledge(self.stream_id, len(data))

    def eof_received(self) -> None:
        pass

    def writable(self) -> None:
        pass

    def reset(self, reason: str) -> None:
        entry = (self._peer, self.stream_id)
        if entry in self._streams:
            self._streams.remove(entry)
