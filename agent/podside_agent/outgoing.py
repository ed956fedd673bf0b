"""Outgoing feature (agent side): dial TCP and UDP from the pod for a client's program."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket

from podside_agent.peer import Peer, SocketRelay
from podside_agent.podnet import PodNetwork
from podside_protocol import StreamOpenRequested
from podside_protocol.addresses import Address, family_of
from podside_protocol.outgoing import STREAM_TCP, STREAM_UDP, destination_of, opened_info

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0
UDP_IDLE_TIMEOUT = 120.0


class Outgoing:
    def __init__(self, network: PodNetwork) -> None:
        self._network = network
        self._tasks: set[asyncio.Task[None]] = set()

    def handles(self, kind: str) -> bool:
        return kind in (STREAM_TCP, STREAM_UDP)

    def open(self, peer: Peer, request: StreamOpenRequested) -> None:
        destination = destination_of(request.params)
        if request.kind == STREAM_TCP:
            self._open_tcp(peer, request.stream_id, destination)
            return
        task = asyncio.get_running_loop().create_task(
            self._open_udp(peer, request.stream_id, destination)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _open_tcp(self, peer: Peer, stream_id: int, destination: Address) -> None:
        """Connect in the pod with callbacks, not a task: the program's connect() waits."""
        loop = asyncio.get_running_loop()
        try:
            sock = self._network.socket(family_of(destination), socket.SOCK_STREAM)
        except OSError as error:
            peer.refuse_stream(stream_id, error.errno or errno.EIO, error.strerror or str(error))
            return
        code = sock.connect_ex(destination)
        if code in (0, errno.EISCONN):
            self._connected(peer, stream_id, sock)
            return
        if code != errno.EINPROGRESS:
            sock.close()
            peer.refuse_stream(stream_id, code, os.strerror(code))
            return
        fd = sock.fileno()

        def give_up() -> None:
            loop.remove_writer(fd)
            sock.close()
            peer.refuse_stream(stream_id, errno.ETIMEDOUT, os.strerror(errno.ETIMEDOUT))

        timer = loop.call_later(CONNECT_TIMEOUT, give_up)

        def writable() -> None:
            loop.remove_writer(fd)
            timer.cancel()
            failure = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if failure:
                sock.close()
                peer.refuse_stream(stream_id, failure, os.strerror(failure))
            else:
                self._connected(peer, stream_id, sock)

        loop.add_writer(fd, writable)

    def _connected(self, peer: Peer, stream_id: int, sock: socket.socket) -> None:
        try:
            local, remote = sock.getsockname()[:2], sock.getpeername()[:2]
        except OSError as error:  # reset by the destination as soon as it connected
            sock.close()
            code = error.errno or errno.ECONNRESET
            peer.refuse_stream(stream_id, code, os.strerror(code))
            return
        relay = SocketRelay(peer, stream_id)
        # Answer at once. Bytes that arrive before the transport below exists wait in the
        # relay, unacknowledged.
        peer.accept_stream(stream_id, relay.endpoint, opened_info(local, remote))
        task = asyncio.get_running_loop().create_task(self._attach(peer, stream_id, sock, relay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _attach(
        self, peer: Peer, stream_id: int, sock: socket.socket, relay: SocketRelay
    ) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: relay, sock=sock)
        except OSError as error:
            sock.close()
            peer.reset_stream(stream_id, str(error))

    async def _open_udp(self, peer: Peer, stream_id: int, destination: Address) -> None:
        loop = asyncio.get_running_loop()
        try:
            sock = self._network.socket(family_of(destination), socket.SOCK_DGRAM)
            sock.connect(destination)
        except OSError as error:
            code = error.errno or errno.EIO
            peer.refuse_stream(stream_id, code, os.strerror(code))
            return
        flow = UdpFlow(peer, stream_id)
        try:
            local = sock.getsockname()[:2]
            await loop.create_datagram_endpoint(lambda: flow, sock=sock)
        except OSError as error:
            sock.close()
            code = error.errno or errno.EIO
            peer.refuse_stream(stream_id, code, os.strerror(code))
            return
        peer.accept_stream(stream_id, flow, opened_info(local, destination))


class UdpFlow(asyncio.DatagramProtocol):
    """One UDP flow: each DATA frame is one datagram, in both directions.

    Datagrams that arrive while the client has no credit for them are dropped, as a full
    socket buffer would drop them; the flow ends after a quiet period or when reset.
    """

    def __init__(self, peer: Peer, stream_id: int) -> None:
        self._peer = peer
        self._stream_id = stream_id
        self._transport: asyncio.DatagramTransport | None = None
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._touch()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._touch()
        if self._peer.connection.send_window(self._stream_id) >= len(data):
            self._peer.send_data(self._stream_id, data)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp flow %s: %s", self._stream_id, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()

    def _touch(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(UDP_IDLE_TIMEOUT, self._expire)

    def _expire(self) -> None:
        self._peer.reset_stream(self._stream_id, "udp flow idle")
        if self._transport is not None:
            self._transport.close()

    # StreamEndpoint

    def eof_received(self) -> None:
        pass

    def writable(self) -> None:
        pass

    def reset(self, reason: str) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._touch()
        self._peer.acknowledge(self._stream_id, len(data))
        if self._transport is not None:
            self._transport.sendto(data)
