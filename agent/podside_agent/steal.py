"""Steal feature (agent side): the clients' programs answer the pod's traffic on stolen ports.

New TCP connections to a stolen port are redirected by a TPROXY rule (`nftables.StealTable`,
removed by the kernel if the agent dies) to one transparent listener; the original destination
is the accepted socket's own address. Each connection waits for the first request head (at
most `DECIDE_SECONDS` for protocols where the server speaks first), then (the decisions are
`steal_routing`'s, sans-io; this module carries them out on sockets):

- a kubelet probe (`podside_protocol.probes`: a GET with `User-Agent: kube-probe/...` or of a
  probe path of the pod spec on that port) goes to the pod's app, whole, whatever is stolen;
- on a port stolen whole, everything else goes to that client, as a raw `steal` stream;
- on a port with filtered steals, each HTTP/1 request is routed on its own: to the first
  client whose filter matches (one `steal` stream per client and connection, reused for the
  next requests), or to the pod's app (one connection per client connection, reused). The
  next request waits for the answer to the current one. An upgrade (WebSocket, CONNECT) turns
  the connection into a tunnel to whoever answered it. Anything that is not HTTP/1 (HTTP/2
  prior knowledge, TLS) goes to the pod's app whole.

Bytes pass unchanged in both directions (`http1` only frames). When a client goes away its
ports are given back at once; its connections in flight are closed (FIN, or RST if data was
lost), never left hanging.

Mirror subscribers of a stolen port get what reaches the pod's app, from here: the bytes each
connection passes to the app are one copy (`Mirror.copy`), requests a client stole are not in
it, and the sniffer leaves out both the redirected connections and the loopback connections
made here to the app (`Mirror.set_redirected`, `Mirror.exclude`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable

from podside_agent import http1
from podside_agent.mirror import Mirror, MirrorCopy
from podside_agent.nftables import NftablesError, StealTable
from podside_agent.peer import Peer, RequestFailed
from podside_agent.podnet import PodNetwork
from podside_agent.steal_routing import (
    EACH_REQUEST,
    WAIT,
    Route,
    Rule,
    route_connection,
    route_request,
)
from podside_protocol import INITIAL_WINDOW, steal
from podside_protocol.addresses import Address, family_of

log = logging.getLogger(__name__)

DECIDE_SECONDS = 0.5
_IP_TRANSPARENT = 19
_IPV6_TRANSPARENT = 75


def _refusal(status: int, reason: str) -> bytes:
    """The whole answer the agent gives itself, ending the connection."""
    body = f"{reason}\n".encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


_BAD_REQUEST = _refusal(400, "Bad Request")
_TOO_LARGE = _refusal(431, "Request Header Fields Too Large")
_BAD_GATEWAY = _refusal(502, "Bad Gateway")


class Steal:
    def __init__(self, network: PodNetwork, mirror: Mirror) -> None:
        self._network = network
        self.mirror = mirror
        self._table: StealTable | None = None
        self._server: asyncio.Server | None = None
        self._server6: asyncio.Server | None = None
        self._listener_port = 0
        self._listener_port6: int | None = None  # None: the pod has no IPv6
        self._rules: dict[int, list[Rule]] = {}
        self._redirected: set[int] = set()  # the ports the table redirects now
        self._connections: set[StolenConnection] = set()
        self._preparing = asyncio.Lock()
        self.connections = 0

    # --- set-up --------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Make the netlink socket owning the table and the transparent listener; one line
        if impossible."""
        async with self._preparing:
            if self._server is not None:
                return
            try:
                table = StealTable(self._network)
            except NftablesError as error:
                raise RequestFailed(f"steal is not available: {error}", errno.ENOTSUP) from None
            try:
                sock = self._transparent_listener(socket.AF_INET)
                table.create()  # replaces a leftover table of an earlier run
            except (OSError, NftablesError) as error:
                table.close()
                if isinstance(error, OSError) and error.errno not in (errno.EPERM, errno.EACCES):
                    raise
                detail = str(error) if isinstance(error, NftablesError) else "no NET_ADMIN"
                raise RequestFailed(
                    f"steal needs NET_ADMIN in the agent's container ({detail}); "
                    "mirror works without it",
                    errno.EPERM,
                ) from None
            loop = asyncio.get_running_loop()
            self._listener_port = sock.getsockname()[1]
            self._server = await loop.create_server(lambda: StolenConnection(self), sock=sock)
            try:
                sock6 = self._transparent_listener(socket.AF_INET6)
            except OSError as error:
                # IPv6 switched off in the pod (or no address family): steal IPv4 alone.
                log.info("steal: no IPv6 listener (%s); IPv4 clients only", error)
            else:
                port6 = sock6.getsockname()[1]
                try:
                    # Tried now, redirecting nothing real (port 0): a kernel without IPv6
                    # TPROXY must not make every later steal fail, IPv4 included.
                    table.apply([0], self._listener_port, port6)
                    table.apply([], self._listener_port, port6)
                except NftablesError as error:
                    log.info("steal: IPv6 clients cannot be redirected (%s); IPv4 only", error)
                    sock6.close()
                else:
                    self._listener_port6 = port6
                    self._server6 = await loop.create_server(
                        lambda: StolenConnection(self), sock=sock6
                    )
            self._table = table
            log.info(
                "steal ready: transparent listeners on port %d (IPv4), %s (IPv6)",
                self._listener_port,
                self._listener_port6,
            )

    def _transparent_listener(self, family: int) -> socket.socket:
        """A listener that TPROXY can hand connections to any address and port of the pod."""
        sock = self._network.socket(family, socket.SOCK_STREAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_TRANSPARENT, 1)
                sock.bind(("::", 0))
            else:
                sock.setsockopt(socket.SOL_IP, _IP_TRANSPARENT, 1)
                sock.bind(("0.0.0.0", 0))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        return sock

    # --- subscriptions -------------------------------------------------------------------------

    async def subscribe(self, peer: Peer, subscription: steal.Subscription) -> None:
        await self.prepare()
        port = subscription.port
        others = [rule for rule in self._rules.get(port, []) if rule.peer is not peer]
        whole = [rule for rule in others if rule.whole]
        if others and (subscription.filter.empty or whole):
            holder = (whole or others)[0].subscription
            how = "whole" if holder.filter.empty else f"with filter {holder.filter.describe()}"
            raise RequestFailed(
                f"port {port} is already stolen {how} by {holder.owner or 'another session'}"
                + ("; steal only some requests with a filter" if not whole else ""),
                errno.EADDRINUSE,
            )
        previous = self._rules.get(port)
        self._rules[port] = [*others, Rule.make(peer, subscription)]
        try:
            self._apply()
        except NftablesError as error:
            if previous is None:
                self._rules.pop(port, None)
            else:
                self._rules[port] = previous
            raise RequestFailed(str(error), errno.EPERM) from None
        log.info(
            "port %d stolen (%s) by %s",
            port,
            subscription.filter.describe(),
            subscription.owner or "a client",
        )

    def unsubscribe(self, peer: Peer, port: int) -> None:
        rules = [rule for rule in self._rules.get(port, []) if rule.peer is not peer]
        self._set_rules(port, rules)

    def drop_peer(self, peer: Peer) -> None:
        for port in list(self._rules):
            self.unsubscribe(peer, port)

    def _set_rules(self, port: int, rules: list[Rule]) -> None:
        if rules == self._rules.get(port, []):
            return
        if rules:
            self._rules[port] = rules
        else:
            del self._rules[port]
        try:
            self._apply()
        except NftablesError as error:
            log.error("cannot update the steal rule: %s", error)

    def _apply(self) -> None:
        if self._table is None:
            return
        before, after = self._redirected, set(self._rules)
        ipv6 = self._listener_port6 is not None
        # While the rule changes, the sniffer leaves out the old ports and the new ones: a
        # connection caught in between is then copied by no one, rather than twice with the
        # requests a client stole.
        self.mirror.set_redirected(before | after, ipv6=ipv6)
        try:
            self._table.apply(after, self._listener_port, self._listener_port6)
        except NftablesError:
            self.mirror.set_redirected(before, ipv6=ipv6)
            raise
        self._redirected = after
        self.mirror.set_redirected(after, ipv6=ipv6)

    def ports(self) -> dict[str, list[str]]:
        """Stolen ports (as text: msgpack map keys) and what each session takes there."""
        return {
            str(port): [rule.subscription.filter.describe() for rule in rules]
            for port, rules in self._rules.items()
        }

    def close(self) -> None:
        if self._table is not None:
            self._table.close()
            self._table = None
            self._redirected = set()
            self.mirror.set_redirected((), ipv6=False)
        for server in (self._server, self._server6):
            if server is not None:
                server.close()
        self._server = self._server6 = None
        for connection in list(self._connections):
            connection.abort()

    # --- connections ---------------------------------------------------------------------------

    def connection_opened(self, connection: StolenConnection) -> Callable[[], None]:
        """A connection to a stolen port began: counted, and aborted if steal closes; the
        mirror's sniffer leaves it to the router until the returned call says it closed."""
        self.connections += 1
        self._connections.add(connection)
        return self.mirror.routed(connection.source, connection.destination)

    def connection_closed(self, connection: StolenConnection) -> None:
        self._connections.discard(connection)

    # --- routing -------------------------------------------------------------------------------

    def rules(self, port: int) -> list[Rule]:
        return self._rules.get(port, [])

    def probe_paths(self, port: int) -> list[str]:
        """The paths of the pod spec's kubelet probes of `port` (any client may have sent them)."""
        return [
            probe.path
            for rules in self._rules.values()
            for rule in rules
            for probe in rule.subscription.probes
            if probe.port == port
        ]

    def app_socket(self, destination: Address) -> tuple[socket.socket, Callable[[], None]]:
        """A socket in the pod to reach the app at `destination` (the client's original one),
        left out by the sniffer until the returned call says it closed."""
        family = family_of(destination)
        sock = self._network.socket(family, socket.SOCK_STREAM)
        try:
            # Bound first: its port is known before the SYN leaves.
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        except OSError:
            sock.close()
            raise
        return sock, self.mirror.exclude(sock.getsockname()[1], destination)


class _Link:
    """One upstream of a stolen connection: the pod's app or one client's program."""

    who = ""  # for log lines

    def __init__(self, owner: StolenConnection) -> None:
        self.owner = owner
        self.responses = http1.MessageReader(http1.RESPONSE)
        self.backed_up = False
        self.eof = False

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def write_eof(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def pause_reading(self) -> None:
        raise NotImplementedError

    def resume_reading(self) -> None:
        raise NotImplementedError


class _AppLink(_Link, asyncio.Protocol):
    """A connection from the agent to the pod's app (over loopback: never redirected)."""

    who = "the pod's app"

    def __init__(self, owner: StolenConnection, destination: Address) -> None:
        super().__init__(owner)
        self.transport: asyncio.Transport | None = None
        self._early: list[bytes] = []
        self._early_eof = False
        self._closed = False
        self._release: Callable[[], None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._connect(destination))

    async def _connect(self, destination: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            sock, release = self.owner.steal.app_socket(destination)
            self._release = release
            try:
                await loop.sock_connect(sock, destination)
                await loop.create_connection(lambda: self, sock=sock)
            except BaseException:
                sock.close()
                release()
                raise
        except OSError as error:
            self.owner.link_lost(self, f"the pod's app: {error.strerror or error}")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._closed:
            transport.close()
            return
        early, self._early = self._early, []
        transport.writelines(early)
        for data in early:
            self.owner.reached_app(data)
        if self._early_eof:
            self.write_eof()

    def data_received(self, data: bytes) -> None:
        self.owner.link_data(self, data)

    def eof_received(self) -> bool:
        self.eof = True
        self.owner.link_eof(self)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._release is not None:
            self._release()
        if not self._closed:
            self.owner.link_lost(self, f"the pod's app: {exc or 'closed'}")

    def pause_writing(self) -> None:
        self.backed_up = True

    def resume_writing(self) -> None:
        self.backed_up = False
        self.owner.link_drained()

    def write(self, data: bytes) -> None:
        if self.transport is None:
            self._early.append(data)
        elif not self.transport.is_closing():
            self.transport.write(data)
            self.owner.reached_app(data)

    def write_eof(self) -> None:
        if self.transport is None:
            self._early_eof = True
        elif not self.transport.is_closing() and self.transport.can_write_eof():
            with contextlib.suppress(OSError):
                self.transport.write_eof()

    def close(self) -> None:
        self._closed = True
        if self.transport is not None:
            self.transport.close()
        else:
            self._task.cancel()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()


class _SessionLink(_Link):
    """A `steal` stream to one client; its program answers."""

    who = "the local program"

    def __init__(self, owner: StolenConnection, peer: Peer, *, filtered: bool) -> None:
        super().__init__(owner)
        self.peer = peer
        self._paused = False
        self._unacknowledged = 0
        self._closed = False
        self._eof_sent = False
        params = steal.stream_params(owner.port, owner.source, owner.destination, filtered=filtered)
        self.stream_id = peer.open_stream_nowait(steal.STREAM, params, self)

    # StreamEndpoint
    def data_received(self, data: bytes) -> None:
        if self._paused:
            self._unacknowledged += len(data)
        else:
            self.peer.acknowledge(self.stream_id, len(data))
        self.owner.link_data(self, data)

    def eof_received(self) -> None:
        self.eof = True
        self.owner.link_eof(self)

    def writable(self) -> None:
        self.backed_up = False
        self.owner.link_drained()

    def reset(self, reason: str) -> None:
        self._closed = True
        self.owner.link_lost(self, f"the local program: {reason}")

    # _Link
    def write(self, data: bytes) -> None:
        if self._closed:
            return
        pending = self.peer.send_data(self.stream_id, data)
        # Bytes also wait while the client has not accepted the stream yet; no StreamWritable
        # follows that, so only a spent window (or a large backlog) counts as backed up.
        if pending and (
            self.peer.connection.send_window(self.stream_id) == 0 or pending > INITIAL_WINDOW
        ):
            self.backed_up = True

    def write_eof(self) -> None:
        if not self._closed and not self._eof_sent:
            self._eof_sent = True
            self.peer.send_eof(self.stream_id)

    def close(self) -> None:
        """Done with this stream: end it gently; the program's last bytes are not needed."""
        if not self._closed:
            self.write_eof()
            self._closed = True
            self.peer.forget_stream(self.stream_id)

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        self._paused = False
        if self._unacknowledged and not self._closed:
            self.peer.acknowledge(self.stream_id, self._unacknowledged)
            self._unacknowledged = 0


_DECIDING, _ROUTING, _TUNNEL, _CLOSED = "deciding", "routing", "tunnel", "closed"


def _framed(
    reader: http1.MessageReader, started: Callable[[http1.Head], None]
) -> tuple[list[bytes], http1.End | http1.Sentinel]:
    """The bytes of the messages framed until the reader needs more data, pauses or ends a
    message, and that event; `started` is told of each head first. They are held so that a
    message that arrived whole (nearly all, and every smuggling attempt in one segment) and
    cannot be framed is refused before any of it is passed on: `FramingError` drops them."""
    framed: list[bytes] = []
    while True:
        event = reader.next_event()
        if isinstance(event, http1.Head):
            started(event)
            framed.append(event.raw)
        elif isinstance(event, http1.Body):
            framed.append(event.data)
        else:
            return framed, event


class StolenConnection(asyncio.Protocol):
    """One connection a pod's client made to a stolen port."""

    def __init__(self, steal_: Steal) -> None:
        self.steal = steal_
        self.transport: asyncio.Transport | None = None
        self.port = 0
        self.source: Address = ("0.0.0.0", 0)
        self.destination: Address = ("0.0.0.0", 0)
        self._phase = _DECIDING
        self._received = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._requests = http1.MessageReader(http1.REQUEST)
        self._app: _AppLink | None = None
        self._sessions: dict[Peer, _SessionLink] = {}
        self._target: _Link | None = None  # where the current request goes
        self._request_done = False
        self._response_done = False
        self._answered = False  # the final answer to the current request has begun
        self._client_eof = False
        self._writing_paused = False
        self._copy: MirrorCopy | None = None
        self._copy_decided = False
        self._unrouted: Callable[[], None] | None = None

    # --- client side ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        destination = transport.get_extra_info("sockname")
        source = transport.get_extra_info("peername")
        self.destination, self.source = destination[:2], source[:2]
        self.port = destination[1]
        if not self.steal.rules(self.port):
            # Not a stolen port (someone dialled the listener itself, or the port was given
            # back while this connection was being set up).
            transport.abort()
            return
        self._unrouted = self.steal.connection_opened(self)
        self._timer = asyncio.get_running_loop().call_later(DECIDE_SECONDS, self._decide_silent)

    def data_received(self, data: bytes) -> None:
        if self._phase == _TUNNEL:
            assert self._target is not None
            self._target.write(data)
            self._check_backed_up()
        elif self._phase == _ROUTING:
            self._requests.receive_data(data)
            self._pump_requests()
        elif self._phase == _DECIDING:
            self._received += data
            self._decide()

    def eof_received(self) -> bool:
        self._client_eof = True
        if self._phase == _TUNNEL:
            assert self._target is not None
            self._target.write_eof()
            self._finish_tunnel()
        elif self._phase == _ROUTING:
            self._requests.receive_data(b"")
            self._pump_requests()
        elif self._phase == _DECIDING:
            self._decide(eof=True)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_links()
        self._phase = _CLOSED
        if self._copy is not None:
            self._copy.end(reset=exc is not None)
            self._copy = None
        self.steal.connection_closed(self)
        if self._unrouted is not None:
            self._unrouted()
        if self._timer is not None:
            self._timer.cancel()

    def pause_writing(self) -> None:
        self._writing_paused = True
        for link in self._links():
            link.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        for link in self._links():
            link.resume_reading()

    # --- the decision --------------------------------------------------------------------------

    def _decide_silent(self) -> None:
        """The client sent nothing: a protocol where the server speaks first."""
        self._timer = None
        if self._phase == _DECIDING:
            self._decide(eof=False, silent=True)

    def _decide(self, *, eof: bool = False, silent: bool = False) -> None:
        data = bytes(self._received)
        route = route_connection(
            data,
            final=eof or silent,
            rules=self.steal.rules(self.port),
            probe_paths=self.steal.probe_paths(self.port),
        )
        if route == WAIT:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._received = bytearray()
        if route == EACH_REQUEST:
            self._phase = _ROUTING
            self._requests.receive_data(data)
            if eof:
                self._requests.receive_data(b"")
            self._pump_requests()
            return
        assert isinstance(route, Route)
        self._tunnel(self._link(route), data)
        if eof and self._target is not None:
            self._target.write_eof()
            self._finish_tunnel()

    # --- per-request routing -------------------------------------------------------------------

    def _link(self, route: Route) -> _Link:
        if route.rule is None:
            return self._app_link()
        return self._session_link(route.rule.peer, filtered=route.filtered)

    def _pump_requests(self) -> None:
        while self._phase == _ROUTING:
            try:
                framed, event = _framed(self._requests, self._start_request)
            except http1.FramingError as error:
                self._refuse(error)
                return
            if framed:
                assert self._target is not None
                self._target.write(b"".join(framed))
            if event is http1.NEED_DATA:
                if self._requests.closed and not self._requests.in_message:
                    self._client_finished()
                break
            if event is http1.PAUSED:
                if self._requests.buffered > http1.MAX_HEAD and self.transport is not None:
                    self.transport.pause_reading()  # pipelined requests wait their turn
                break
            self._request_done = True
            self._next_cycle()
        self._check_backed_up()

    def _start_request(self, head: http1.Head) -> None:
        target = self._link(
            route_request(head, self.steal.rules(self.port), self.steal.probe_paths(self.port))
        )
        self._target = target
        self._request_done = self._response_done = self._answered = False
        target.responses.expect(head.method)

    def _refuse(self, error: http1.FramingError) -> None:
        """A request that cannot be framed without doubt (RFC 9112): 400, then close. The
        upstream that has its beginning is cut off, so it never completes it."""
        log.info("stolen connection from %s: refused a request (%s)", self.source, error)
        self._close_links()
        if self.transport is None or self.transport.is_closing():
            return
        if not self._answered:
            self.transport.write(_TOO_LARGE if isinstance(error, http1.TooLarge) else _BAD_REQUEST)
        self.close()

    def _client_finished(self) -> None:
        """The client closed between requests: close what we opened for it."""
        if self._target is None or self._response_done:
            self._close_links()
            if self.transport is not None:
                self.transport.close()

    def _next_cycle(self) -> None:
        if self._request_done and self._response_done:
            self._target = None
            self._request_done = self._response_done = False
            self._requests.start_next()
            if self._client_eof and not self._requests.buffered:
                self._client_finished()
                return
            self._pump_requests()

    # --- upstream side -------------------------------------------------------------------------

    def reached_app(self, data: bytes) -> None:
        """Bytes of this connection the pod's app was given: the port's mirror subscribers see
        them (the subscribers of the moment the first of them went)."""
        if not self._copy_decided:
            self._copy_decided = True
            self._copy = self.steal.mirror.copy(self.port, self.source, self.destination)
        if self._copy is not None:
            self._copy.send(data)

    def _app_link(self) -> _Link:
        if self._app is None or self._app.eof:
            self._app = _AppLink(self, self.destination)
        return self._app

    def _session_link(self, peer: Peer, *, filtered: bool) -> _Link:
        link = self._sessions.get(peer)
        if link is None or link.eof:
            link = _SessionLink(self, peer, filtered=filtered)
            self._sessions[peer] = link
        return link

    def _links(self) -> list[_Link]:
        links: list[_Link] = list(self._sessions.values())
        if self._app is not None:
            links.append(self._app)
        return links

    def link_data(self, link: _Link, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self._phase == _TUNNEL:
            self.transport.write(data)
            return
        if link is not self._target or self._phase != _ROUTING:
            log.info("stolen connection: %s answered out of turn; closing", type(link).__name__)
            self.abort()
            return
        link.responses.receive_data(data)
        self._pump_response(link)

    def _pump_response(self, link: _Link) -> None:
        assert self.transport is not None
        final = self._answered

        def started(head: http1.Head) -> None:
            nonlocal final
            final = final or not 100 <= head.status < 200

        try:
            framed, event = _framed(link.responses, started)
        except http1.FramingError as error:
            self._refuse_answer(link, error)
            return
        if framed:
            self.transport.writelines(framed)
            self._answered = final
        if event is http1.NEED_DATA or event is http1.PAUSED:
            return
        if link.responses.switched:
            self._tunnel(link, link.responses.detach(), upgraded=True)
            return
        if link.responses.closed:
            # A close-delimited answer: the connection ends with it.
            self.close()
            return
        self._response_done = True
        link.responses.start_next()
        if link.responses.buffered:
            self.abort()  # answered more than was asked
            return
        self._next_cycle()

    def _refuse_answer(self, link: _Link, error: http1.FramingError) -> None:
        """An answer that cannot be framed without doubt (RFC 9112): the pod's client gets
        `502 Bad Gateway` if none of it went out, else the connection ends where it is."""
        begun = self._answered
        log.info(
            "stolen connection from %s: a bad answer from %s (%s); %s",
            self.source,
            link.who,
            error,
            "closed it mid-answer" if begun else "answered 502",
        )
        self._close_links()
        if not begun and self.transport is not None and not self.transport.is_closing():
            self.transport.write(_BAD_GATEWAY)
        self.close()

    def link_eof(self, link: _Link) -> None:
        if self._phase == _TUNNEL:
            if link is self._target and self.transport is not None:
                if self.transport.can_write_eof() and not self.transport.is_closing():
                    try:
                        self.transport.write_eof()
                    except OSError:  # the pod's client already left (ENOTCONN)
                        self.abort()
                        return
                self._finish_tunnel()
            return
        if link is self._target and self._phase == _ROUTING:
            link.responses.receive_data(b"")
            self._pump_response(link)
            if self._phase == _ROUTING and not self._response_done:
                self.close()
            return
        self._forget(link)  # an idle upstream closed its keep-alive connection

    def link_lost(self, link: _Link, reason: str) -> None:
        in_use = link is self._target and (
            self._phase == _TUNNEL or (self._phase == _ROUTING and not self._response_done)
        )
        if in_use:
            log.info("stolen connection from %s closed: lost %s", self.source, reason)
            self.close()
            return
        self._forget(link)

    def link_drained(self) -> None:
        self._check_backed_up()

    def _check_backed_up(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if any(link.backed_up for link in self._links()):
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def _forget(self, link: _Link) -> None:
        if link is self._app:
            self._app = None
        for peer, session in list(self._sessions.items()):
            if session is link:
                del self._sessions[peer]

    # --- tunnel --------------------------------------------------------------------------------

    def _tunnel(self, link: _Link, data: bytes, *, upgraded: bool = False) -> None:
        """From now on the connection is a byte pipe between the client and `link`."""
        assert self.transport is not None
        self._phase = _TUNNEL
        self._target = link
        for other in self._links():
            if other is not link:
                other.close()
        self._sessions = {p: s for p, s in self._sessions.items() if s is link}
        if self._app is not link:
            self._app = None
        if upgraded:
            if data:
                self.transport.write(data)
            pending = self._requests.detach()
            if pending:
                link.write(pending)
            if self._client_eof:
                link.write_eof()
        elif data:
            link.write(data)
        if self._writing_paused:
            link.pause_reading()
        self._check_backed_up()

    def _finish_tunnel(self) -> None:
        if self._client_eof and self._target is not None and self._target.eof:
            self.close()

    # --- endings -------------------------------------------------------------------------------

    def _close_links(self) -> None:
        for link in self._links():
            link.close()
        self._app = None
        self._sessions = {}

    def close(self) -> None:
        """End cleanly: what was written still goes out, then FIN."""
        self._close_links()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self._close_links()
        if self.transport is not None:
            self.transport.abort()
