"""The agent's server: accepts clients, checks their token against its verifiers (more come
through enrollment, see `enrollment.py`), and routes each request or stream to the feature
that owns it (outgoing, mirror, env, files).

Clients are independent: a client that breaks the protocol or goes silent is dropped with its
subscriptions and streams, and the others carry on. Before its HELLO a connection is anyone's:
at most `MAX_PENDING_HANDSHAKES` may wait at once (a new one closes the one that has waited
longest: a real client's HELLO follows its connect at once, so only idle ones are crowded
out), each for at most `HANDSHAKE_SECONDS`, with small frames only
(`podside_protocol.frames.MAX_HANDSHAKE_BODY`).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import gc
import logging
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from podside_agent import __version__, capabilities
from podside_agent import files as agent_files
from podside_agent.enrollment import EnrollmentListener
from podside_agent.mirror import Mirror
from podside_agent.outgoing import Outgoing
from podside_agent.peer import Peer, RequestFailed
from podside_agent.podnet import PodNetwork
from podside_agent.request_filter import RequestMatcher
from podside_agent.steal import Steal
from podside_agent.target import TargetProcess
from podside_agent.workers import Workers
from podside_protocol import (
    Connection,
    Hello,
    Rejected,
    Request,
    Role,
    StreamOpenRequested,
    environment,
    files,
    status,
)
from podside_protocol import capabilities as capabilities_messages
from podside_protocol import mirror as mirror_messages
from podside_protocol import steal as steal_messages
from podside_protocol.tokens import Verifiers

log = logging.getLogger(__name__)

# Connections that have not completed their handshake yet, and how long each may take.
MAX_PENDING_HANDSHAKES = 32
HANDSHAKE_SECONDS = 5.0


# How long after a client left its buffers are given back to the pod.
MEMORY_BACK_SECONDS = 0.5


def give_memory_back() -> None:
    """Return the heap a client's buffers used to the pod, whose memory limit the agent shares:
    glibc keeps freed memory for reuse (after one large free it also stops using mmap for
    blocks of that size), so an agent a greedy client left would stay large for good."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl has none): freed memory is reused, not returned


class AgentServer:
    def __init__(
        self,
        *,
        verifiers: Verifiers,
        network: PodNetwork,
        target: TargetProcess,
        heartbeat_timeout: float = 3.0,
        idle_exit: float = 0.0,
    ) -> None:
        self.verifiers = verifiers
        self.network = network
        self.enrollment = EnrollmentListener(verifiers, network)
        self.target = target
        # Files and /proc can block (a FIFO, a hung volume): never on this loop.
        self.workers = Workers()
        self.files = agent_files.PodFiles(target, self.workers)
        self.heartbeat_timeout = heartbeat_timeout
        self.idle_exit = idle_exit
        self.peers: set[Peer] = set()
        self._handshaking: dict[Peer, None] = {}  # oldest first
        self._crowded_out = 0  # since the last log line about it
        self._crowded_logged = -HANDSHAKE_SECONDS
        self.outgoing = Outgoing(network, self.workers, target.current)
        self.mirror = Mirror(network)
        self.steal = Steal(network, self.mirror)
        self.stopped = asyncio.get_running_loop().create_future()
        self._idle_since = asyncio.get_running_loop().time()
        self._server: asyncio.Server | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            self._new_peer, host, port, reuse_address=True
        )
        await self._started()

    async def start_on(self, listener: socket.socket) -> None:
        """Serve on a socket already listening (the bootstrap's), keeping the connections
        already waiting in its backlog."""
        listener.setblocking(False)
        self._server = await asyncio.get_running_loop().create_server(self._new_peer, sock=listener)
        await self._started()

    async def _started(self) -> None:
        await self.enrollment.start(self.addresses()[0][1])
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    def addresses(self) -> list[tuple[str, int]]:
        assert self._server is not None
        return [sock.getsockname()[:2] for sock in self._server.sockets]

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.enrollment.close()
        for peer in list(self.peers):
            peer.close("agent shutting down")
        self.mirror.close()
        self.steal.close()
        self.workers.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if not self.stopped.done():
            self.stopped.set_result(None)

    def _new_peer(self) -> Peer:
        if len(self._handshaking) >= MAX_PENDING_HANDSHAKES:
            self._crowd_out()
        connection = Connection(
            Role.AGENT,
            self.verifiers,
            name=f"podside-agent/{__version__}",
            session_id=uuid.uuid4().hex[:12],
            info=self._info(),
        )
        peer = Peer(connection, self)
        self.peers.add(peer)
        self._handshaking[peer] = None
        asyncio.get_running_loop().create_task(self._greet(peer))
        return peer

    def _crowd_out(self) -> None:
        """Close the connection that has waited longest for its handshake (one log line per
        `HANDSHAKE_SECONDS` however many go)."""
        oldest = next(iter(self._handshaking))
        del self._handshaking[oldest]
        oldest.abort("crowded out before its handshake")
        self._crowded_out += 1
        now = asyncio.get_running_loop().time()
        if now - self._crowded_logged >= HANDSHAKE_SECONDS:
            log.warning(
                "%d connections wait for their handshake: closing the oldest (%d since the last such line)",
                MAX_PENDING_HANDSHAKES,
                self._crowded_out,
            )
            self._crowded_out, self._crowded_logged = 0, now

    def _info(self) -> dict[str, Any]:
        return {
            "target_pid": self.target.pid,
            "hostname": socket.gethostname(),
            "agent_pid": os.getpid(),
            # How long a silent client is kept: a suspended podside can say why it was dropped.
            "heartbeat_timeout": self.heartbeat_timeout,
        }

    async def _greet(self, peer: Peer) -> None:
        try:
            event = await asyncio.wait_for(peer.handshake, HANDSHAKE_SECONDS)
        except (TimeoutError, ConnectionError):
            peer.abort("no handshake")
            return
        finally:
            self._handshaking.pop(peer, None)
        if isinstance(event, Rejected):
            log.warning("rejected a client: %s", event.message)
            peer.close(event.message)  # the REJECT goes out first
        elif isinstance(event, Hello):
            log.info("client %r connected (%d clients)", event.client, len(self.peers))

    # --- PeerHandler -------------------------------------------------------------------------

    def handle_request(self, peer: Peer, request: Request) -> Any:
        method, params = request.method, request.params
        if method == environment.GET:
            return self._environment()
        if method == files.READ:
            try:
                read = files.Read.parse(params)
            except files.InvalidRequest as error:
                raise RequestFailed(str(error), errno.EINVAL) from None
            return self._read_file(read.path)
        if method == mirror_messages.SUBSCRIBE:
            try:
                port, http_filter = mirror_messages.parse_subscribe(params)
            except steal_messages.InvalidFilter as error:
                raise RequestFailed(f"mirror refused: {error}", errno.EINVAL) from None
            try:
                self.mirror.subscribe(peer, port, RequestMatcher(http_filter))
            except PermissionError as error:
                raise RequestFailed(
                    "the agent cannot sniff the pod's traffic (needs NET_RAW)", error.errno or 1
                ) from None
            return mirror_messages.subscribe_result(port)
        if method == mirror_messages.UNSUBSCRIBE:
            port = mirror_messages.port_of(params)
            self.mirror.unsubscribe(peer, port)
            return {"port": port}
        if method == mirror_messages.STATS:
            return self.mirror.statistics()
        if method in files.FILE_METHODS:
            return self.files.handle(peer, method, dict(params))
        if method == capabilities_messages.CAPABILITIES:
            return capabilities.check(self.network)
        if method == steal_messages.PREPARE:
            return self._steal_prepare()
        if method == steal_messages.SUBSCRIBE:
            try:
                subscription = steal_messages.parse_subscribe(params)
            except steal_messages.InvalidFilter as error:
                raise RequestFailed(f"steal refused: {error}", errno.EINVAL) from None
            return self._steal(peer, subscription)
        if method == steal_messages.UNSUBSCRIBE:
            port = steal_messages.port_of(params)
            self.steal.unsubscribe(peer, port)
            return {"port": port}
        if method == status.STATUS:
            return self._status()
        raise RequestFailed(f"unknown request {method!r}", errno.ENOSYS)

    async def _environment(self) -> dict[str, Any]:
        env, hostname = await asyncio.gather(
            self.workers.run(self.target.environment), self.workers.run(self.target.hostname)
        )
        return {"env": env, "pid": self.target.pid, "hostname": hostname}

    async def _status(self) -> dict[str, Any]:
        # The target as it is now: the app container may have restarted since the last look.
        target_pid = await self.workers.run(self.target.current_or_none)
        hostname = await self.workers.run(self.target.hostname) if target_pid else None
        return {
            "hostname": hostname,
            "clients": len(self.peers),
            "mirrored_ports": sorted(self.mirror.ports()),
            "stolen_ports": self.steal.ports(),
            "target_pid": target_pid,
        }

    async def _read_file(self, path: str) -> dict[str, Any]:
        return {"data": await self.files.read(path, files.MAX_READ)}

    async def _steal_prepare(self) -> dict[str, Any]:
        await self.steal.prepare()
        return {}

    async def _steal(self, peer: Peer, subscription: steal_messages.Subscription) -> dict[str, Any]:
        await self.steal.subscribe(peer, subscription)
        return {"port": subscription.port}

    def handle_stream(self, peer: Peer, request: StreamOpenRequested) -> None:
        if self.outgoing.handles(request.kind):
            self.outgoing.open(peer, request)
        else:
            peer.refuse_stream(
                request.stream_id, errno.EPROTONOSUPPORT, f"no {request.kind} streams"
            )

    def connection_lost(self, peer: Peer, reason: str) -> None:
        if peer not in self.peers:
            return
        self.peers.discard(peer)
        self.mirror.drop_peer(peer)
        self.steal.drop_peer(peer)
        self.files.drop_client(peer)
        if not self.peers:
            self._idle_since = asyncio.get_running_loop().time()
        log.info("client left (%s); %d clients", reason, len(self.peers))
        # After the transport's own buffers went (connection_lost comes a loop turn later).
        asyncio.get_running_loop().call_later(MEMORY_BACK_SECONDS, give_memory_back)

    # --- liveness ------------------------------------------------------------------------------

    async def _watch(self) -> None:
        """Drop silent clients (their program or port-forward died) and exit when idle."""
        loop = asyncio.get_running_loop()
        period = min(1.0, self.heartbeat_timeout / 3)
        previous = loop.time()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            late, previous = now - previous > 2 * period, now
            if late:
                # This loop itself was held up, so it may not have read what clients sent:
                # do not blame them for our own lag.
                for peer in self.peers:
                    peer.last_heard = max(peer.last_heard, now - period)
                continue
            for peer in list(self.peers):
                if peer.draining():
                    # We stopped reading it (it has much unread output), and it reads that.
                    peer.last_heard = now
                elif now - peer.last_heard > self.heartbeat_timeout:
                    log.warning("dropping a client silent for %.1f s", now - peer.last_heard)
                    peer.abort("heartbeat timeout")
            if self.idle_exit and not self.peers and now - self._idle_since > self.idle_exit:
                log.info("no clients for %.0f s: exiting", self.idle_exit)
                self.stop()
                return
