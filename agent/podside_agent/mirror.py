"""Mirror feature (agent side): copy each connection that reaches the pod's app on a subscribed
port to every subscriber of that port, once.

Two sources feed the copies. The sniffer sees what arrives on the pod's interfaces; one
sniffer serves every client, its filter covering the union of subscribed ports. On a port the
steal router takes (redirected by steal's TPROXY rule), what arrives is not what reaches the
app: there the sniffer leaves out connections from other hosts (`sniffer.build_port_filter`)
and the router's own loopback connections to the app (`exclude`), and the router copies the
bytes it passes to the app itself (`copy`). So a request a client stole is never copied, and
nothing is copied twice. Each copy is a `mirror` stream to each subscriber; the pod's app is
never touched. A subscriber that cannot keep up loses that copy (reset), never the agent's
memory. A connection that was open before (a client's keep-alive connection) is copied from
its next HTTP/1 request line on, to a subscriber that came late as well; other protocols'
connections from before are not copied.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

from podside_agent import http1
from podside_agent.peer import Peer
from podside_agent.podnet import PodNetwork
from podside_agent.request_filter import RequestMatcher
from podside_agent.sniffer import Segment, Sniffer
from podside_agent.tcp_reassembly import (
    ACK,
    SYN,
    Closed,
    ConnectionKey,
    Data,
    Opened,
    Reassembler,
    Skipped,
    starts_a_request,
)
from podside_protocol import mirror
from podside_protocol.addresses import Address, family_of
from podside_protocol.http_filter import HttpFilter

log = logging.getLogger(__name__)

# Bytes a subscriber may fall behind on one mirrored connection before it is dropped.
SUBSCRIBER_BACKLOG_LIMIT = 16 * 1024 * 1024
# How long the sniffer keeps leaving out an agent's connection after it closed: its SYN may
# still wait in the packet socket's queue when the connection is already over.
OWN_CONNECTION_LINGER_SECONDS = 10.0
_TICK_SECONDS = 0.25
WHOLE = RequestMatcher(HttpFilter())  # no filter: every connection copied as it is

# (source port, destination ip as the sniffer reports it, destination port) of the agent's own
# connections; a whole ConnectionKey for a client's connection the router holds.
OwnKey = tuple[int, bytes, int] | ConnectionKey


def _raw(address: Address) -> tuple[bytes, int]:
    """An address as the sniffer reports it: the IP's bytes (a zone is no byte of it), port."""
    host = address[0].split("%", 1)[0]
    return socket.inet_pton(family_of(address), host), address[1]


def _address(raw: bytes, port: int) -> tuple[str, int]:
    family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
    return socket.inet_ntop(family, raw), port


class OwnConnections:
    """The agent's own connections to the pod's app, which the sniffer must not copy.

    A connection is known by its source port and destination: the agent binds its socket
    before connecting, so the key exists before the SYN leaves. A released key stays for
    `linger` seconds; a key added again meanwhile (the port reused) is kept.
    """

    def __init__(self, linger: float = OWN_CONNECTION_LINGER_SECONDS) -> None:
        self._linger = linger
        self._keys: dict[OwnKey, float | None] = {}  # key -> when it expires (None: open)
        self._released: deque[tuple[float, OwnKey]] = deque()

    def __contains__(self, key: OwnKey) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: OwnKey, now: float) -> None:
        self.expire(now)
        self._keys[key] = None

    def release(self, key: OwnKey, now: float) -> None:
        if key in self._keys and self._keys[key] is None:
            expiry = now + self._linger
            self._keys[key] = expiry
            self._released.append((expiry, key))

    def hold(self, key: OwnKey, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """`add` the key now; returns the call that releases it (once, however often called)."""
        self.add(key, loop.time())
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.release(key, loop.time())

        return release

    def expire(self, now: float) -> None:
        while self._released and self._released[0][0] <= now:
            expiry, key = self._released.popleft()
            if self._keys.get(key) == expiry:
                del self._keys[key]


class MirrorCopy:
    """One connection copied to the subscribers of its port, as one `mirror` stream each.

    A subscriber without a filter gets the connection's bytes as they come. A subscriber with
    a filter gets the HTTP/1 requests it matches, framed by one `http1.MessageReader` shared by
    all of them: its stream opens at the first request it matches and carries only those, so
    a busy connection's other requests never cross the tunnel. A matching Upgrade request
    (a WebSocket) takes the rest of the connection whole. Bytes that do not frame as HTTP/1
    (another protocol, a gap the sniffer could not fill, a head over `http1.MAX_HEAD`) end
    every filtered stream of the connection there; the reader holds at most one head, so a
    filtered copy never buffers without bound.

    A subscriber that comes while the connection is open joins it at the next HTTP/1 request
    line, so a keep-alive connection from before its session reaches its program from the next
    request on; each subscriber is offered a connection once.
    """

    def __init__(self, owner: Mirror, port: int, source: Address, destination: Address) -> None:
        self._owner = owner
        self._port = port
        self._params = mirror.stream_params(port, source, destination)
        self._offered: set[Peer] = set()
        self.receivers: list[tuple[Peer, int]] = []  # whole copies
        self._filtered: dict[Peer, int | None] = {}  # -> its stream, once a request matched
        self._taking: list[Peer] = []  # the filtered subscribers the current request goes to
        self._reader: http1.MessageReader | None = None
        self._unframed = False  # the bytes stopped framing as HTTP/1: no filtered copies
        self._upgrade = False  # the current request may switch the connection's protocol
        self._offer_to_new_subscribers()

    def _offer_to_new_subscribers(self) -> None:
        for peer in self._owner.subscribers(self._port) - self._offered:
            self._offered.add(peer)
            if not self._owner.matcher(self._port, peer).whole:
                if not self._unframed:
                    self._filtered[peer] = None
                    if self._reader is None:
                        self._reader = http1.MessageReader(http1.REQUEST)
                continue
            stream_id = self._open(peer)
            if stream_id is not None:
                self.receivers.append((peer, stream_id))

    def _open(self, peer: Peer) -> int | None:
        if peer.writing_paused:
            self._owner.skipped_connections += 1  # the subscriber is not keeping up
            return None
        sink = _SubscriberEnd(peer, self._gone)
        sink.stream_id = peer.open_stream_nowait(mirror.STREAM, self._params, sink)
        return sink.stream_id

    def _gone(self, peer: Peer, stream_id: int) -> None:
        """A subscriber refused or dropped its stream (its program stopped listening)."""
        if (peer, stream_id) in self.receivers:
            self.receivers.remove((peer, stream_id))
        if self._filtered.get(peer) == stream_id:
            self._leave_filtered(peer)

    def _leave_filtered(self, peer: Peer) -> None:
        del self._filtered[peer]
        if peer in self._taking:
            self._taking.remove(peer)

    def send(self, data: bytes) -> None:
        late = not self._offered.issuperset(self._owner.subscribers(self._port))
        if late and starts_a_request(data):
            self._offer_to_new_subscribers()
        for peer, stream_id in list(self.receivers):
            if not self._deliver(peer, stream_id, data):
                self.receivers.remove((peer, stream_id))
        if self._filtered and self._reader is not None:
            self._frame(self._reader, data)

    def _deliver(self, peer: Peer, stream_id: int, data: bytes) -> bool:
        """`data` sent on the stream; False when the subscriber fell too far behind (reset)."""
        if peer.send_data(stream_id, data) <= SUBSCRIBER_BACKLOG_LIMIT:
            return True
        self._owner.overflowed_connections += 1
        log.warning("dropping a mirrored connection: subscriber too slow")
        peer.reset_stream(stream_id, "subscriber fell too far behind")
        return False

    def _frame(self, reader: http1.MessageReader, data: bytes) -> None:
        reader.receive_data(data)
        try:
            while True:
                event = reader.next_event()
                if event is http1.NEED_DATA:
                    return
                if event is http1.PAUSED:
                    reader.start_next()
                    continue
                if isinstance(event, http1.Head):
                    self._taking = [
                        peer
                        for peer in self._filtered
                        if self._owner.matcher(self._port, peer).matches(event)
                    ]
                    self._upgrade = event.upgrade
                    self._to_taking(event.raw)
                elif isinstance(event, http1.Body):
                    self._to_taking(event.data)
                elif self._upgrade:
                    self._take_the_rest(reader.detach())
                    return
                else:
                    self._taking = []
        except http1.FramingError:
            self._owner.unframed_connections += 1
            self._end_filtered(reset=False)

    def _to_taking(self, data: bytes) -> None:
        for peer in list(self._taking):
            stream_id = self._filtered[peer]
            if stream_id is None:
                stream_id = self._filtered[peer] = self._open(peer)
                if stream_id is None:
                    self._leave_filtered(peer)  # not keeping up: not this connection
                    continue
            if not self._deliver(peer, stream_id, data):
                self._leave_filtered(peer)

    def _take_the_rest(self, rest: bytes) -> None:
        """After a matching Upgrade request: its subscribers get the rest of the connection
        whole, the other filtered subscribers are done with it."""
        taking = {peer: self._filtered[peer] for peer in self._taking}
        for peer in taking:
            self._leave_filtered(peer)
        self._end_filtered(reset=False)
        for peer, stream_id in taking.items():
            if stream_id is not None:
                self.receivers.append((peer, stream_id))
                if rest and not self._deliver(peer, stream_id, rest):
                    self.receivers.remove((peer, stream_id))

    def _end_filtered(self, *, reset: bool) -> None:
        filtered, self._filtered, self._taking = self._filtered, {}, []
        self._reader = None
        self._unframed = True
        for peer, stream_id in filtered.items():
            if stream_id is not None:
                _end_stream(peer, stream_id, reset=reset)

    def gap(self) -> None:
        """Bytes of the connection were lost: the filtered copies cannot be framed on."""
        if self._filtered or self._reader is not None:
            self._end_filtered(reset=True)

    def end(self, *, reset: bool = False) -> None:
        receivers, self.receivers = self.receivers, []
        self._owner.forget(self)
        self._end_filtered(reset=reset)
        for peer, stream_id in receivers:
            _end_stream(peer, stream_id, reset=reset)

    def drop_peer(self, peer: Peer) -> None:
        self.receivers[:] = [(p, s) for p, s in self.receivers if p is not peer]
        if peer in self._filtered:
            self._leave_filtered(peer)
        self._offered.discard(peer)


def _end_stream(peer: Peer, stream_id: int, *, reset: bool) -> None:
    if reset:
        peer.reset_stream(stream_id, "the client reset the connection")
    else:
        peer.send_eof(stream_id)
        peer.forget_stream(stream_id)


class Mirror:
    def __init__(self, network: PodNetwork) -> None:
        self._sniffer = Sniffer(network)
        # A connection already open when the sniffer starts is followed from a request line.
        self._reassembler = Reassembler(pick_up=self._picks_up)
        # port -> its subscribers, each with its filter (whole: every connection as it is)
        self._subscribers: dict[int, dict[Peer, RequestMatcher]] = defaultdict(dict)
        self._sniffed: dict[ConnectionKey, MirrorCopy] = {}
        self._copies: set[MirrorCopy] = set()
        self._redirected4: frozenset[int] = frozenset()
        self._redirected6: frozenset[int] = frozenset()
        self._own = OwnConnections()
        self._routed = OwnConnections()
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self._ticker: asyncio.TimerHandle | None = None
        self.skipped_bytes = 0
        self.skipped_connections = 0
        self.overflowed_connections = 0
        self.unframed_connections = 0
        self.connections = 0

    # --- subscriptions -------------------------------------------------------------------------

    def subscribe(self, peer: Peer, port: int, matcher: RequestMatcher = WHOLE) -> None:
        """`peer` gets copies of `port`'s connections, or of the requests `matcher` matches;
        subscribing again changes the filter from the next connection or request on."""
        self._subscribers[port][peer] = matcher
        try:
            self._apply_ports()
        except OSError:
            self._subscribers[port].pop(peer, None)  # not subscribed: no copies from the router
            raise

    def unsubscribe(self, peer: Peer, port: int) -> None:
        self._subscribers[port].pop(peer, None)
        self._apply_ports()

    def drop_peer(self, peer: Peer) -> None:
        for subscribers in self._subscribers.values():
            subscribers.pop(peer, None)
        for copy in self._copies:
            copy.drop_peer(peer)
        self._apply_ports()

    def ports(self) -> set[int]:
        return {port for port, peers in self._subscribers.items() if peers}

    def subscribers(self, port: int) -> set[Peer]:
        return set(self._subscribers.get(port) or ())

    def matcher(self, port: int, peer: Peer) -> RequestMatcher:
        """`peer`'s filter on `port` (whole once it unsubscribed: what it has, it keeps)."""
        return (self._subscribers.get(port) or {}).get(peer, WHOLE)

    def statistics(self) -> dict[str, int]:
        stats = self._sniffer.statistics()
        stats["connections"] = self.connections
        stats["skipped_bytes"] = self.skipped_bytes
        stats["skipped_connections"] = self.skipped_connections
        stats["overflowed_connections"] = self.overflowed_connections
        stats["unframed_connections"] = self.unframed_connections
        return stats

    def close(self) -> None:
        self._stop_reading()
        self._sniffer.close()

    # --- what steal tells the mirror -----------------------------------------------------------

    def set_redirected(self, ports: Iterable[int], *, ipv6: bool) -> None:
        """The ports steal redirects now (IPv6 as well when `ipv6`): the router copies them."""
        self._redirected4 = frozenset(ports)
        self._redirected6 = self._redirected4 if ipv6 else frozenset()
        self._apply_ports()

    def copy(self, port: int, source: Address, destination: Address) -> MirrorCopy | None:
        """A copy of one connection for the subscribers of `port`; None when there are none."""
        if not self.subscribers(port):
            return None
        self.connections += 1
        copy = MirrorCopy(self, port, source, destination)
        self._copies.add(copy)
        return copy

    def forget(self, copy: MirrorCopy) -> None:
        self._copies.discard(copy)

    def exclude(self, local_port: int, destination: Address) -> Callable[[], None]:
        """Leave out the agent's own connection from `local_port` to `destination` (bound, not
        yet connected); returns the call that says it closed."""
        return self._own.hold((local_port, *_raw(destination)), self._loop)

    def routed(self, source: Address, destination: Address) -> Callable[[], None]:
        """A client's connection the steal router holds (it copies what it passes on): the
        sniffer never picks it up; returns the call that says it closed."""
        return self._routed.hold((*_raw(source), *_raw(destination)), self._loop)

    # --- the sniffer ---------------------------------------------------------------------------

    def _apply_ports(self) -> None:
        ports = self.ports()
        if not ports:
            self._stop_reading()
            self._sniffer.close()
            return
        self._sniffer.set_ports(ports, self._redirected4, self._redirected6)
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

    def _drain(self) -> None:
        self._sniffer.read_segments(self._on_segment)

    def _tick(self) -> None:
        now = self._loop.time()
        self._own.expire(now)
        self._routed.expire(now)
        for action in self._reassembler.tick(now):
            self._apply(action)
        self._ticker = self._loop.call_later(_TICK_SECONDS, self._tick)

    def _on_segment(self, segment: Segment) -> None:
        source, sport, destination, dport, seq, flags, payload = segment
        if flags & SYN and not flags & ACK and (sport, destination, dport) in self._own:
            return  # the router's own connection to the app: the router copies it
        key = (source, sport, destination, dport)
        for action in self._reassembler.segment(key, seq, flags, payload, self._loop.time()):
            self._apply(action)

    def _picks_up(self, key: ConnectionKey, payload: bytes) -> bool:
        _, sport, destination, dport = key
        # On a port the router takes, the sniffer drops only the SYNs of the connections the
        # router gets: their other segments are the router's to copy, never picked up here,
        # nor after the port is given back while the router still holds them (`routed`).
        redirected = self._redirected4 if len(destination) == 4 else self._redirected6
        if dport in redirected or key in self._routed or (sport, destination, dport) in self._own:
            return False
        return starts_a_request(payload)

    def _apply(self, action: Opened | Data | Skipped | Closed) -> None:
        if isinstance(action, Data):
            copy = self._sniffed.get(action.key)
            if copy is not None:
                copy.send(action.data)
        elif isinstance(action, Opened):
            source, sport, destination, dport = action.key
            new = self.copy(dport, _address(source, sport), _address(destination, dport))
            if new is not None:
                self._sniffed[action.key] = new
        elif isinstance(action, Closed):
            ended = self._sniffed.pop(action.key, None)
            if ended is not None:
                ended.end(reset=action.reason == "reset")
        elif isinstance(action, Skipped):
            self.skipped_bytes += action.missing
            gapped = self._sniffed.get(action.key)
            if gapped is not None:
                gapped.gap()
            log.warning(
                "mirror lost %d bytes of a connection; continuing after the gap", action.missing
            )


class _SubscriberEnd:
    """A subscriber's end of one mirrored connection.

    Subscribers never send on it; when one refuses or drops the stream (its program stopped
    listening), the connection's copy is told (`gone`) and sends it nothing more.
    """

    def __init__(self, peer: Peer, gone: Callable[[Peer, int], None]) -> None:
        self._peer = peer
        self._gone = gone
        self.stream_id = 0

    def data_received(self, data: bytes) -> None:
        self._peer.acknowledge(self.stream_id, len(data))

    def eof_received(self) -> None:
        pass

    def writable(self) -> None:
        pass

    def reset(self, reason: str) -> None:
        self._gone(self._peer, self.stream_id)
