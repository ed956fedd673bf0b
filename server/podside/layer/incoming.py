"""Incoming traffic for the program: subscribe the ports it listens on, deliver what arrives.

When the program listens on port P, the pod's port P (or the one `--port-map` names) is
subscribed on the agent. Each mirrored connection the agent then reports is delivered by
connecting to the program on this machine and writing the client's bytes; the program's answer
is read and dropped, because the pod's own app already answered the real client.

With steal (`steal` set: the whole port, or the requests its HTTP filter matches) the port is
stolen instead, and each `steal` stream the agent opens is relayed to the program both ways:
the program's answer goes back to the pod's client. A steal the agent refuses ends the session
(`failed`), since the user asked for the program to answer.

With a hold (`--hold-until-attached`) a connection that arrives while no debugger is attached
waits before it reaches the program: the agent keeps its bytes (the stream is not accepted
yet), the editor is told (`on_held`) and attaches, and when it says so the waiting connections
are delivered in their order of arrival, so the debugger sees the request that woke it. The
kubelet's health checks (`probes`) are not held: a mirrored connection to a probed port is
taken at once and its first line read; a probe's request goes on to the program with no
debugger asked for (the pod's app answered the kubelet), so a Disconnect lasts until a real
request comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from podside.layer import seccomp, sockaddr
from podside.layer.http_watch import Exchange, HttpWatch
from podside_agent.peer import Peer, RequestFailed, SocketRelay, StreamEndpoint
from podside_protocol import StreamOpenRequested, mirror
from podside_protocol import steal as steal_messages
from podside_protocol.http_filter import HttpFilter, scoped
from podside_protocol.probes import is_kubelet_probe

log = logging.getLogger(__name__)

_PORT_RETRIES = 20
# Mirrored connections open at once; past this the program is not keeping up and new ones are
# refused (the agent drops them for this session) so the session itself stays responsive.
MAX_DELIVERIES = 512


# How long a held connection to a probed port may take to send its request line.
PEEK_SECONDS = 2.0


class _FirstLine:
    """A stream endpoint that passes everything on to `inner` and keeps the stream's first line
    (up to 8 KiB; what came before EOF if it ends sooner)."""

    _LIMIT = 8192

    def __init__(self, inner: StreamEndpoint, loop: asyncio.AbstractEventLoop) -> None:
        self._inner = inner
        self._seen = b""
        self._line: asyncio.Future[bytes] = loop.create_future()

    async def first_line(self, timeout: float) -> bytes:
        """The line, or b"" when none came in `timeout` seconds."""
        try:
            return await asyncio.wait_for(asyncio.shield(self._line), timeout)
        except TimeoutError:
            return b""

    def _settle(self) -> None:
        if not self._line.done():
            self._line.set_result(self._seen.split(b"\n", 1)[0][: self._LIMIT])

    def data_received(self, data: bytes) -> None:
        if not self._line.done():
            self._seen += data
            if b"\n" in self._seen or len(self._seen) >= self._LIMIT:
                self._settle()
        self._inner.data_received(data)

    def eof_received(self) -> None:
        self._settle()
        self._inner.eof_received()

    def writable(self) -> None:
        self._inner.writable()

    def reset(self, reason: str) -> None:
        self._settle()
        self._inner.reset(reason)


@dataclass(frozen=True)
class MirroredConnection:
    """What the user is told about each delivered connection."""

    local_port: int
    remote_port: int
    source: tuple[str, int]


class Incoming:
    def __init__(
        self,
        peer: Peer,
        *,
        port_map: dict[int, int],
        enabled: bool,
        on_connection: Callable[[MirroredConnection], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        on_exchange: Callable[[Exchange, int], None] | None = None,
        steal: steal_messages.Subscription | None = None,
        ignored_ports: frozenset[int] = frozenset(),
        on_listening: Callable[[int], None] | None = None,
        on_held: Callable[[MirroredConnection], None] | None = None,
        hold_until_attached: bool = False,
        probes: frozenset[tuple[int, str]] = frozenset(),
        filter_ports: frozenset[int] = frozenset(),
        mirror_filter: HttpFilter | None = None,
    ) -> None:
        """`on_exchange(exchange, local_port)` reports each HTTP request delivered, when set.

        `steal`: steal instead of mirror, with this filter, owner and probes (its port is
        ignored: each port the program listens on is stolen). `ignored_ports`: ports of the
        program that stay local (a debugger's). `on_listening(port)`: the program listens on
        `port`. `hold_until_attached`: deliver only while `debugger_attached(True)` holds;
        `on_held` is told of each connection that waits. `probes`: (the pod's port, path) of
        the kubelet's HTTP probes, never held. `filter_ports`: the pod's ports `steal`'s filter
        (or `mirror_filter`) applies to (none: all); other ports are stolen or mirrored whole.
        `mirror_filter`: mirror only the HTTP/1 requests it matches (the agent filters)."""
        self._filter_ports = filter_ports
        self._mirror_filter = mirror_filter or HttpFilter()
        self._peer = peer
        self._port_map = port_map  # local -> remote
        self._enabled = enabled
        self._on_connection = on_connection
        self._on_error = on_error
        self._on_exchange = on_exchange
        self._targets: dict[int, tuple[str, int]] = {}  # remote port -> program's address
        self._loop = asyncio.get_running_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        self._open_deliveries = 0
        self._steal = steal
        self._ignored_ports = ignored_ports
        self._on_listening = on_listening
        self._on_held = on_held
        # Set while deliveries may go on; None: no hold at all.
        self._attached: asyncio.Event | None = asyncio.Event() if hold_until_attached else None
        self._probes = probes
        self.failed: asyncio.Future[str] = self._loop.create_future()
        # Told of each port followed: (the pod's port, the program's address).
        self.on_follow: list[Callable[[int, tuple[str, int]], None]] = []

    def debugger_attached(self, attached: bool) -> None:
        """The editor says whether a debugger is attached; releases or holds deliveries."""
        if self._attached is None:
            return
        if attached:
            self._attached.set()
        else:
            self._attached.clear()

    def program_listens(self, dup: int, attempt: int = 0) -> None:
        """Called on the loop (owning `dup`) after the program's listen() was let through."""
        try:
            decoded = sockaddr.decode(seccomp.raw_getsockname(dup))
        except OSError:
            decoded = None
        if decoded is not None and decoded[2] == 0 and attempt < _PORT_RETRIES:
            # listen() on an unbound socket picks its port as it runs: look again shortly.
            self._loop.call_later(0.005, self.program_listens, dup, attempt + 1)
            return
        os.close(dup)
        if decoded is None:
            return
        family, address, port = decoded
        if self._on_listening is not None:
            self._on_listening(port)
        if not self._enabled or port in self._ignored_ports:
            return
        host = str(address)
        if address.is_unspecified:
            host = "127.0.0.1" if family == socket.AF_INET else "::1"
        self.follow(self._port_map.get(port, port), (host, port))

    def follow(self, remote: int, program: tuple[str, int]) -> None:
        """Mirror or steal the pod's port `remote` to the program's address `program`; the
        replicas of a workload follow the ports the primary's Incoming found this way."""
        if remote in self._targets:
            return
        self._targets[remote] = program
        task = self._loop.create_task(self._subscribe(remote))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        for listener in self.on_follow:
            listener(remote, program)

    @property
    def followed(self) -> dict[int, tuple[str, int]]:
        """The pod's ports followed, and the program's address each goes to."""
        return dict(self._targets)

    async def _subscribe(self, remote: int) -> None:
        try:
            if self._steal is not None:
                subscription = steal_messages.for_port(self._steal, remote, self._filter_ports)
                params = steal_messages.subscribe_params(subscription)
                await self._peer.request(steal_messages.SUBSCRIBE, params)
            else:
                mirror_filter = scoped(self._mirror_filter, remote, self._filter_ports)
                params = mirror.subscribe_params(remote, mirror_filter)
                result = await self._peer.request(mirror.SUBSCRIBE, params)
                if not mirror_filter.empty and not mirror.filters(result):
                    await self._peer.request(mirror.UNSUBSCRIBE, mirror.subscribe_params(remote))
                    raise RequestFailed(
                        "the agent is older than mirror filters and would copy every request "
                        "(use --mode steal, or a newer agent)",
                        errno.ENOSYS,
                    )
        except (RequestFailed, ConnectionError) as error:
            self._targets.pop(remote, None)
            verb = "steal" if self._steal is not None else "mirror"
            message = f"cannot {verb} port {remote}: {error}"
            if self._steal is not None and not self.failed.done():
                self.failed.set_result(message)
            elif self._on_error is not None:
                self._on_error(message)

    def handle_stream(self, request: StreamOpenRequested) -> bool:
        """Take a stream the agent opened, if it is ours; returns whether it was."""
        if request.kind not in (mirror.STREAM, steal_messages.STREAM):
            return False
        stolen = request.kind == steal_messages.STREAM
        try:
            if stolen:
                remote, source, _destination, _filtered = steal_messages.parse_stream_params(
                    request.params
                )
            else:
                remote, source, _destination = mirror.parse_stream_params(request.params)
        except Exception:
            self._peer.refuse_stream(request.stream_id, errno.EINVAL, "bad mirror parameters")
            return True
        target = self._targets.get(remote)
        if target is None:
            self._peer.refuse_stream(request.stream_id, errno.ECONNREFUSED, "not listening")
            return True
        if self._open_deliveries >= MAX_DELIVERIES:
            self._peer.refuse_stream(request.stream_id, errno.EAGAIN, "the program is behind")
            return True
        self._open_deliveries += 1
        task = self._loop.create_task(
            self._deliver(request.stream_id, remote, source, target, stolen=stolen)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _deliver(
        self,
        stream_id: int,
        remote: int,
        source: tuple[str, int],
        target: tuple[str, int],
        *,
        stolen: bool = False,
    ) -> None:
        watch = None
        if self._on_exchange is not None:
            report, port = self._on_exchange, target[1]
            http = HttpWatch(lambda exchange: report(exchange, port))
            watch = (http.to_program, http.from_program)
        relay = SocketRelay(
            self._peer,
            stream_id,
            discard_output=not stolen,
            on_closed=self._delivery_ended,  # run once, however the relay ends
            watch=watch,
        )
        accepted = False
        if self._attached is not None and not self._attached.is_set():
            hold = True
            if not stolen and any(port == remote for port, _path in self._probes):
                # Taken now to read its first line; its bytes wait in the relay, unacknowledged.
                peek = _FirstLine(relay.endpoint, self._loop)
                self._peer.accept_stream(stream_id, peek)
                accepted = True
                words = (await peek.first_line(PEEK_SECONDS)).decode("latin-1").split()
                hold = not (len(words) == 3 and self.is_probe(remote, words[0], words[1]))
            if hold and not self._attached.is_set():
                if self._on_held is not None:
                    self._on_held(MirroredConnection(target[1], remote, source))
                await self._attached.wait()
            if relay.finished:
                return  # the client's side ended (a reset) while it waited: nothing to deliver
        try:
            transport, _ = await self._loop.create_connection(lambda: relay, target[0], target[1])
        except OSError as error:
            relay.stream_reset(str(error))  # ends the relay, so the delivery is counted out
            if accepted:
                self._peer.reset_stream(stream_id, str(error))
            else:
                self._peer.refuse_stream(stream_id, error.errno or errno.ECONNREFUSED, str(error))
            return
        if relay.finished and accepted:
            transport.close()  # the stream was reset while we connected
            return
        if not accepted:
            self._peer.accept_stream(stream_id, relay.endpoint)
        if not stolen:
            self._peer.send_eof(stream_id)  # nothing ever goes back on a mirrored connection
        if self._on_connection is not None:
            self._on_connection(MirroredConnection(target[1], remote, source))

    def is_probe(self, remote: int, method: str, path: str) -> bool:
        """A request to the pod's port `remote` is one of the kubelet's HTTP probes."""
        paths = [probe_path for port, probe_path in self._probes if port == remote]
        return is_kubelet_probe(method, path, paths)

    def _delivery_ended(self) -> None:
        self._open_deliveries -= 1

    async def unsubscribe_all(self) -> None:
        for remote in list(self._targets):
            method, params = (
                (steal_messages.UNSUBSCRIBE, steal_messages.unsubscribe_params(remote))
                if self._steal is not None
                else (mirror.UNSUBSCRIBE, mirror.subscribe_params(remote))
            )
            with contextlib.suppress(RequestFailed, ConnectionError, TimeoutError):
                await asyncio.wait_for(self._peer.request(method, params), 2)
        self._targets.clear()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
