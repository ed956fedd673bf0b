"""The local ends of tunnelled sockets: a TCP proxy listener and UDP relays.

A tunnelled TCP socket of the program is connected (by the supervisor, on a duplicate of it)
to the proxy listener; the proxy recognises it by its source port, registered just before, and
joins it to the agent stream already opened for it. A tunnelled UDP socket is connected (or
sends) to a relay: one relay socket per original destination, so replies leave the relay from
an address the supervisor can translate back to that destination when the program asks who
sent them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.message

from podside.layer.routing import DNS_PORT
from podside_agent.peer import Peer, SocketRelay
from podside_protocol.outgoing import STREAM_UDP, open_params

log = logging.getLogger(__name__)

UDP_IDLE_SECONDS = 120.0
_UDP_BACKLOG_LIMIT = 256 * 1024
DNS_HERE_TIMEOUT_SECONDS = 10.0


class _ProxiedConnection(asyncio.Protocol):
    """Finds the relay registered for the connecting port and hands the socket to it."""

    def __init__(self, proxy: TcpProxy) -> None:
        self._proxy = proxy
        self._relay: SocketRelay | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        # A TCP connection is known by its source port, a Unix one by its autobound name.
        key = peer[1] if isinstance(peer, tuple) else os.fsencode(peer)
        relay = self._proxy.claim(key)
        if relay is None:
            log.warning("proxy: unexpected connection from %r", key)
            transport.close()
            return
        self._relay = relay
        relay.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._relay is not None:
            self._relay.data_received(data)

    def eof_received(self) -> bool | None:
        return self._relay.eof_received() if self._relay is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._relay is not None:
            self._relay.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._relay is not None:
            self._relay.pause_writing()

    def resume_writing(self) -> None:
        if self._relay is not None:
            self._relay.resume_writing()


class TcpProxy:
    """Where tunnelled stream sockets of the program are connected to: loopback TCP listeners
    for TCP ones, an abstract Unix listener for the Unix ones tunnelled to the pod."""

    def __init__(self) -> None:
        self._expected: dict[int | bytes, SocketRelay] = {}
        self._servers: list[asyncio.Server] = []
        self.ipv4_port = 0
        self.ipv6_port = 0
        # Abstract (leading NUL): nothing on the filesystem, gone with the process.
        self.unix_name = f"\0podside-proxy-{os.getpid()}-{secrets.token_hex(8)}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _ProxiedConnection(self), "127.0.0.1", 0, backlog=4096
        )
        self._servers.append(server)
        unix = await loop.create_unix_server(
            lambda: _ProxiedConnection(self), self.unix_name, backlog=4096
        )
        self._servers.append(unix)
        self.ipv4_port = server.sockets[0].getsockname()[1]
        try:
            server6 = await loop.create_server(
                lambda: _ProxiedConnection(self), "::1", 0, backlog=4096
            )
        except OSError:
            return  # no IPv6 loopback: v6-only sockets cannot be tunnelled here
        self._servers.append(server6)
        self.ipv6_port = server6.sockets[0].getsockname()[1]

    def expect(self, source: int | bytes, relay: SocketRelay) -> None:
        """`source`: the TCP source port, or the Unix socket's autobound abstract name."""
        self._expected[source] = relay

    def forget(self, source: int | bytes) -> None:
        self._expected.pop(source, None)

    def claim(self, source: int | bytes) -> SocketRelay | None:
        return self._expected.pop(source, None)

    def close(self) -> None:
        for server in self._servers:
            server.close()


class _UdpReturn:
    """The stream end of one UDP flow: replies go back to the program's socket."""

    def __init__(self, relay: UdpRelay, program_address: Any) -> None:
        self._relay = relay
        self._program_address = program_address
        self.stream_id = 0

    def data_received(self, data: bytes) -> None:
        self._relay.peer.acknowledge(self.stream_id, len(data))
        self._relay.send_to_program(data, self._program_address)

    def eof_received(self) -> None:
        pass

    def writable(self) -> None:
        pass

    def reset(self, reason: str) -> None:
        self._relay.flow_ended(self._program_address)


class UdpRelay(asyncio.DatagramProtocol):
    """Relays datagrams between the program and one destination in the pod's network."""

    def __init__(
        self,
        peer: Peer,
        remote: tuple[str, int],
        sock: socket.socket,
        dns: DnsRelaying | None = None,
    ) -> None:
        """`dns`: what a relay to a nameserver does beside relaying."""
        self.peer = peer
        self.remote = remote
        self.socket = sock
        self._dns = dns
        self._asked_here: set[asyncio.Task[None]] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._flows: dict[Any, _UdpReturn] = {}
        self._last_active: dict[Any, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._sweeper = asyncio.get_running_loop().call_later(UDP_IDLE_SECONDS, self._sweep)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self._dns is not None and self._dns.in_pod is not None:
            name = _query_name(data)
            if name is not None and not self._dns.in_pod(name):
                task = asyncio.get_running_loop().create_task(self._ask_here(data, addr))
                self._asked_here.add(task)
                task.add_done_callback(self._asked_here.discard)
                return
        flow = self._flows.get(addr)
        if flow is None:
            flow = _UdpReturn(self, addr)
            flow.stream_id = self.peer.open_stream_nowait(
                STREAM_UDP, open_params(self.remote), flow
            )
            self._flows[addr] = flow
        self._last_active[addr] = asyncio.get_running_loop().time()
        connection = self.peer.connection
        if (
            connection.send_window(flow.stream_id) >= len(data)
            or connection.buffered(flow.stream_id) < _UDP_BACKLOG_LIMIT
        ):
            self.peer.send_data(flow.stream_id, data)

    async def _ask_here(self, query: bytes, address: Any) -> None:
        """A query this machine's nameserver answers; its answer goes back as the pod's would."""
        assert self._dns is not None
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[bytes] = loop.create_future()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _HereAnswer(answered), remote_addr=self._dns.here
            )
        except OSError as error:
            log.warning("cannot ask this machine's nameserver %s: %s", self._dns.here[0], error)
            return
        try:
            transport.sendto(query)
            answer = await asyncio.wait_for(answered, DNS_HERE_TIMEOUT_SECONDS)
        except (TimeoutError, OSError):
            return  # as a lost datagram: the program's resolver asks again
        finally:
            transport.close()
        self.send_to_program(answer, address)

    def send_to_program(self, data: bytes, address: Any) -> None:
        answers = self._dns.answers if self._dns is not None else None
        if answers is not None:
            try:
                answers(data)
            except Exception as error:  # an observer never costs the program its answer
                log.warning("reading a reply for the program failed: %r", error)
        if self._transport is not None:
            self._last_active[address] = asyncio.get_running_loop().time()
            self._transport.sendto(data, address)

    def flow_ended(self, address: Any) -> None:
        self._flows.pop(address, None)
        self._last_active.pop(address, None)

    def _sweep(self) -> None:
        now = asyncio.get_running_loop().time()
        for address, last in list(self._last_active.items()):
            if now - last >= UDP_IDLE_SECONDS:
                flow = self._flows.pop(address, None)
                self._last_active.pop(address, None)
                if flow is not None:
                    self.peer.reset_stream(flow.stream_id, "udp flow idle")
        self._sweeper = asyncio.get_running_loop().call_later(UDP_IDLE_SECONDS / 4, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in self._asked_here:
            task.cancel()
        for flow in self._flows.values():
            self.peer.reset_stream(flow.stream_id, "session ending")
        self._flows.clear()
        if self._transport is not None:
            self._transport.close()


class _HereAnswer(asyncio.DatagramProtocol):
    def __init__(self, answered: asyncio.Future[bytes]) -> None:
        self._answered = answered

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self._answered.done():
            self._answered.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self._answered.done():
            self._answered.set_exception(exc)


def _query_name(datagram: bytes) -> str | None:
    """The name a DNS query asks for; None when it is not one (it then goes to the pod)."""
    try:
        message = dns.message.from_wire(datagram)
    except dns.exception.DNSException:
        return None
    return str(message.question[0].name) if message.question else None


@dataclass(frozen=True)
class DnsRelaying:
    """What the relays to the pod's nameservers (port 53) do beside relaying: `answers` sees
    each answer on its way to the program; a query whose name `in_pod` refuses is asked of
    this machine's nameserver (`here`) instead, and its answer given back the same way."""

    answers: Callable[[bytes], None] | None = None
    in_pod: Callable[[str], bool] | None = None
    here: tuple[str, int] = ("127.0.0.1", DNS_PORT)


class UdpRelays:
    """One relay per (original destination, address family), created on first use.

    `relay_address` is called from the supervisor's thread and must answer at once: it binds
    the relay socket there and lets the event loop adopt it; datagrams that arrive before then
    wait in the socket.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        peer: Peer,
        dns: DnsRelaying | None = None,
    ) -> None:
        self._loop = loop
        self._peer = peer
        self._dns = dns
        self._lock = threading.Lock()
        self._by_destination: dict[tuple[tuple[str, int], int], tuple[str, int]] = {}
        self.original_by_relay: dict[tuple[str, int], tuple[str, int]] = {}
        self._relays: list[UdpRelay] = []

    def relay_address(
        self, original: tuple[str, int], remote: tuple[str, int], family: int
    ) -> tuple[str, int]:
        key = (original, family)
        with self._lock:
            address = self._by_destination.get(key)
            if address is not None:
                return address
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0) if family == socket.AF_INET else ("::1", 0))
            sock.setblocking(False)
            host, port = sock.getsockname()[:2]
            address = (str(host), int(port))
            self._by_destination[key] = address
            self.original_by_relay[address] = original
        self._loop.call_soon_threadsafe(self._adopt, sock, remote)
        return address

    def _adopt(self, sock: socket.socket, remote: tuple[str, int]) -> None:
        relay = UdpRelay(self._peer, remote, sock, self._dns if remote[1] == DNS_PORT else None)
        self._relays.append(relay)
        self._loop.create_task(self._loop.create_datagram_endpoint(lambda: relay, sock=sock))

    def close(self) -> None:
        for relay in self._relays:
            relay.close()
