"""Outgoing feature (agent side): dial TCP and UDP from the pod for a client's program, and
connect to Unix stream sockets in the target's filesystem."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable, Coroutine
from typing import Any

from podside_agent.files import open_in_root
from podside_agent.peer import Peer, SocketRelay
from podside_agent.podnet import PodNetwork
from podside_agent.workers import Workers
from podside_protocol import StreamOpenRequested
from podside_protocol.addresses import Address, family_of
from podside_protocol.outgoing import (
    STREAM_TCP,
    STREAM_UDP,
    STREAM_UNIX,
    destination_of,
    opened_info,
    unix_path_of,
)

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 30.0
UDP_IDLE_TIMEOUT = 120.0


class Outgoing:
    def __init__(
        self,
        network: PodNetwork,
        workers: Workers | None = None,
        target_pid: Callable[[], int] | None = None,
    ) -> None:
        """`workers` and `target_pid` (which may block: it runs on them) serve `unix`."""
        self._network = network
        self._workers = workers
        self._target_pid = target_pid
        self._tasks: set[asyncio.Task[None]] = set()

    def handles(self, kind: str) -> bool:
        return kind in (STREAM_TCP, STREAM_UDP, STREAM_UNIX)

    def open(self, peer: Peer, request: StreamOpenRequested) -> None:
        if request.kind == STREAM_UNIX:
            self._start(self._open_unix(peer, request.stream_id, unix_path_of(request.params)))
            return
        destination = destination_of(request.params)
        if request.kind == STREAM_TCP:
            self._open_tcp(peer, request.stream_id, destination)
            return
        self._start(self._open_udp(peer, request.stream_id, destination))

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _open_unix(self, peer: Peer, stream_id: int, path: str) -> None:
        """Connect to the Unix stream socket at `path` as the target sees its filesystem: the
        path is resolved inside the target's root (its symlinks too) and must be a socket."""
        if self._workers is None or self._target_pid is None:
            peer.refuse_stream(stream_id, errno.EAFNOSUPPORT, "no target: no Unix sockets")
            return
        target_pid = self._target_pid
        try:
            handle = await self._workers.run(
                lambda: _socket_in_root(target_pid(), path), late=os.close
            )
        except OSError as error:
            code = error.errno or errno.EIO
            peer.refuse_stream(stream_id, code, error.strerror or os.strerror(code))
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            # The O_PATH handle stands for the socket file: no path length limit, no second
            # lookup that a rename could redirect.
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, f"/proc/self/fd/{handle}"),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as error:
            sock.close()
            code = getattr(error, "errno", None) or errno.ETIMEDOUT
            peer.refuse_stream(stream_id, code, os.strerror(code))
            return
        finally:
            os.close(handle)
        relay = SocketRelay(peer, stream_id)
        peer.accept_stream(stream_id, relay.endpoint, {})
        await self._attach(peer, stream_id, sock, relay)

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


def _socket_in_root(target_pid: int, path: str) -> int:
    """An O_PATH handle of the socket at `path` in the target's root; ENOTSOCK otherwise."""
    handle = open_in_root(target_pid, path, os.O_PATH)
    try:
        if not stat.S_ISSOCK(os.fstat(handle).st_mode):
            raise OSError(errno.ECONNREFUSED, f"{path} is not a socket in the pod")
    except BaseException:
        os.close(handle)
        raise
    return handle


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
