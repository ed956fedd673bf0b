"""The program's tunnelled sockets, and the work on them that happens in the event loop.

The supervisor thread decides and answers what it can at once; what needs the agent (a TCP
connect must succeed in the pod before the program's connect returns) or must wait (a blocking
recvfrom on a tunnelled UDP socket) continues here, on the event loop, and answers the
notification when done — also when that work fails: a failure is answered with an errno,
never left to hold the program's thread. Sockets are recognised again by inode, because the
program may close a descriptor and reuse its number; descriptor numbers only serve as a cheap
first filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from podside.layer import seccomp, sockaddr
from podside.layer.proxy import TcpProxy
from podside_agent.peer import Peer, SocketRelay, StreamRefusedError
from podside_protocol.outgoing import STREAM_TCP, STREAM_UNIX, open_params, unix_open_params

log = logging.getLogger(__name__)

_UDP_MEMORY = 4096  # UDP sockets remembered for address translation


class TunnelRegistry:
    """Which of the program's sockets are tunnelled, and where they were meant to go."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tcp_fds: set[int] = set()
        self.udp_fds: set[int] = set()
        self._tcp_originals: dict[int, tuple[str, int]] = {}
        self._udp_originals: OrderedDict[int, tuple[str, int] | None] = OrderedDict()

    def add_tcp(self, fd: int, inode: int, original: tuple[str, int]) -> None:
        with self._lock:
            self.tcp_fds.add(fd)
            self._tcp_originals[inode] = original

    def forget_tcp(self, inode: int) -> None:
        with self._lock:
            self._tcp_originals.pop(inode, None)

    def add_udp(self, fd: int, inode: int, peer: tuple[str, int] | None) -> None:
        """`peer` is the connected destination, None for a socket that only used sendto."""
        with self._lock:
            self.udp_fds.add(fd)
            self._udp_originals[inode] = peer
            self._udp_originals.move_to_end(inode)
            while len(self._udp_originals) > _UDP_MEMORY:
                self._udp_originals.popitem(last=False)

    def is_udp(self, inode: int) -> bool:
        return inode in self._udp_originals

    def original_peer(self, inode: int) -> tuple[str, int] | None:
        with self._lock:
            return self._tcp_originals.get(inode) or self._udp_originals.get(inode)


def ensure_bound(fd: int, family: int, *, loopback: bool, v6only: bool) -> int:
    """The socket's local port, binding it first (to loopback or the wildcard) if it has none."""
    decoded = sockaddr.decode(seccomp.raw_getsockname(fd))
    if decoded is not None and decoded[2]:
        return decoded[2]
    address = sockaddr.loopback(family, v6only=v6only) if loopback else sockaddr.wildcard(family)
    seccomp.raw_bind(fd, address)
    decoded = sockaddr.decode(seccomp.raw_getsockname(fd))
    if decoded is None:
        raise OSError(errno.EAFNOSUPPORT, "not an inet socket")
    return decoded[2]


class TunnelWork:
    """Event-loop side of the supervisor's socket handling."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        peer: Peer,
        listener: seccomp.Listener,
        proxy: TcpProxy,
        registry: TunnelRegistry,
    ) -> None:
        self._loop = loop
        self._peer = peer
        self._listener = listener
        self._proxy = proxy
        self._registry = registry
        self._waits: dict[int, Callable[[], None]] = {}

    # --- TCP connect -------------------------------------------------------------------------

    def connect_tcp(
        self,
        notification_id: int,
        program_fd: int,
        dup: int,
        family: int,
        v6only: bool,
        original: tuple[str, int],
        remote: tuple[str, int],
    ) -> None:
        """Called through call_soon_threadsafe; owns `dup` from here on.

        The stream is opened at once and finished from inside the event that carries the
        agent's answer, with no task in between: the program is blocked in connect() meanwhile.
        """
        try:
            inode = os.fstat(dup).st_ino
        except OSError:
            os.close(dup)
            self._listener.respond(notification_id, error=errno.EBADF)
            return
        relay = SocketRelay(self._peer, on_closed=lambda: self._registry.forget_tcp(inode))
        self._open_relay(
            notification_id,
            dup,
            relay,
            (STREAM_TCP, open_params(remote)),
            lambda: self._finish_connect(
                relay, notification_id, program_fd, dup, inode, family, v6only, original
            ),
            errno.ENETUNREACH,
        )

    def _open_relay(
        self,
        notification_id: int,
        dup: int,
        relay: SocketRelay,
        stream: tuple[str, dict[str, Any]],
        finish: Callable[[], None],
        failed: int,
    ) -> None:
        """Open `stream` (kind, params) for `relay`, then, from inside the event that carries
        the agent's answer, `finish` connecting the program's socket; owns `dup`. A refusal,
        a lost agent or a failure answers the program's connect (errno `failed`) at once."""

        def answered(result: dict[str, object] | BaseException) -> None:
            # Runs inside the agent connection's data_received: nothing may escape from here.
            try:
                if isinstance(result, StreamRefusedError):
                    self._listener.respond(
                        notification_id, error=result.errno or errno.ECONNREFUSED
                    )
                elif isinstance(result, BaseException):
                    self._listener.respond(notification_id, error=failed)
                elif not self._listener.is_valid(notification_id):
                    self._peer.reset_stream(relay.stream_id, "the program gave up connecting")
                else:
                    finish()
            except Exception as error:
                log.warning("finishing a tunnelled connect failed: %r", error)
                with contextlib.suppress(Exception):
                    self._peer.reset_stream(relay.stream_id, "podside could not connect it")
                self._listener.respond(notification_id, error=failed)
            finally:
                os.close(dup)

        try:
            if self._peer.closed.done():
                raise ConnectionError("the agent is gone")  # it would never answer the stream
            kind, params = stream
            relay.stream_id = self._peer.open_stream_then(kind, params, relay.endpoint, answered)
        except Exception:
            os.close(dup)
            self._listener.respond(notification_id, error=failed)

    def _finish_connect(
        self,
        relay: SocketRelay,
        notification_id: int,
        program_fd: int,
        dup: int,
        inode: int,
        family: int,
        v6only: bool,
        original: tuple[str, int],
    ) -> None:
        listener = self._listener
        stream_id = relay.stream_id
        try:
            port = ensure_bound(dup, family, loopback=True, v6only=v6only)
        except OSError as error:
            self._peer.reset_stream(stream_id, "cannot bind the program's socket")
            listener.respond(notification_id, error=error.errno or errno.EINVAL)
            return
        self._proxy.expect(port, relay)
        proxy_port = self._proxy.ipv6_port if v6only else self._proxy.ipv4_port
        outcome = seccomp.raw_connect(dup, sockaddr.loopback(family, proxy_port, v6only=v6only))
        if outcome not in (0, errno.EINPROGRESS):
            self._proxy.forget(port)
            self._peer.reset_stream(stream_id, "local connect failed")
            listener.respond(notification_id, error=outcome)
            return
        self._registry.add_tcp(program_fd, inode, original)
        listener.respond(notification_id, error=outcome)

    # --- Unix stream connect to the pod --------------------------------------------------------

    def connect_unix(self, notification_id: int, dup: int, path: str) -> None:
        """Called through call_soon_threadsafe; owns `dup`. As `connect_tcp`: the socket at
        `path` in the pod is connected first, then the program's socket to the proxy."""
        relay = SocketRelay(self._peer)
        self._open_relay(
            notification_id,
            dup,
            relay,
            (STREAM_UNIX, unix_open_params(path)),
            lambda: self._finish_unix(relay, notification_id, dup),
            errno.ECONNREFUSED,
        )

    def _finish_unix(self, relay: SocketRelay, notification_id: int, dup: int) -> None:
        listener = self._listener
        name = unix_source_name(dup)
        self._proxy.expect(name, relay)
        outcome = seccomp.raw_connect(dup, sockaddr.unix(self._proxy.unix_name))
        if outcome not in (0, errno.EINPROGRESS):
            self._proxy.forget(name)
            self._peer.reset_stream(relay.stream_id, "local connect failed")
        listener.respond(notification_id, error=outcome)

    # --- waiting for a tunnelled UDP socket ----------------------------------------------------

    def wait_readable(
        self, notification_id: int, dup: int, attempt: Callable[[], bool], timeout: float | None
    ) -> None:
        """Retry `attempt` whenever `dup` is readable until it answers the notification.

        Stops (closing `dup`) once answered, when the notification is no longer valid (the
        thread was killed), or after `timeout` with EAGAIN, as SO_RCVTIMEO would.
        """
        deadline = self._loop.time() + timeout if timeout else None
        checker: asyncio.TimerHandle | None = None

        def finish() -> None:
            self._loop.remove_reader(dup)
            if checker is not None:
                checker.cancel()
            self._waits.pop(notification_id, None)
            os.close(dup)

        def on_readable() -> None:
            try:
                answered = attempt()
            except Exception as error:
                log.warning("receiving for the program failed: %r", error)
                self._listener.respond(notification_id, error=errno.EIO)
                answered = True
            if answered:
                finish()

        def check() -> None:
            nonlocal checker
            if not self._listener.is_valid(notification_id):
                finish()
                return
            if deadline is not None and self._loop.time() >= deadline:
                self._listener.respond(notification_id, error=errno.EAGAIN)
                finish()
                return
            checker = self._loop.call_later(0.2, check)

        self._waits[notification_id] = finish
        self._loop.add_reader(dup, on_readable)
        checker = self._loop.call_later(0.2, check)

    def close(self) -> None:
        for notification_id, finish in list(self._waits.items()):
            self._listener.respond(notification_id, error=errno.EINTR)
            finish()


def unix_source_name(fd: int) -> bytes:
    """The name the proxy will see this Unix socket connect from: its own if it is bound,
    else one the kernel picks (autobind, an abstract name) now."""
    name = seccomp.raw_getsockname(fd)[2:]
    if not name:
        seccomp.raw_bind(fd, sockaddr.unix_family())
        name = seccomp.raw_getsockname(fd)[2:]
    return name if name.startswith(b"\0") else name.split(b"\0", 1)[0]


def socket_type(fd: int) -> int:
    return seccomp.raw_getsockopt_int(fd, socket.SOL_SOCKET, socket.SO_TYPE)


def is_v6only(fd: int, family: int) -> bool:
    if family != socket.AF_INET6:
        return False
    return bool(seccomp.raw_getsockopt_int(fd, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY))
