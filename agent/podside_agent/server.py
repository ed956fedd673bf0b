"""The agent's server: accepts clients, checks their token, and routes each request or stream
to the feature that owns it (outgoing, mirror, env, files).

Clients are independent: a client that breaks the protocol or goes silent is dropped with its
subscriptions and streams, and the others carry on.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import uuid
from typing import Any

from podside_agent import __version__, capabilities
from podside_agent import files as agent_files
from podside_agent.mirror import Mirror
from podside_agent.outgoing import Outgoing
from podside_agent.peer import Peer, RequestFailed
from podside_agent.podnet import PodNetwork
from podside_agent.steal import Steal
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

log = logging.getLogger(__name__)


class AgentServer:
    def __init__(
        self,
        *,
        token: str,
        network: PodNetwork,
        heartbeat_timeout: float = 3.0,
        idle_exit: float = 0.0,
    ) -> None:
        self.token = token
        self.network = network
        self.heartbeat_timeout = heartbeat_timeout
        self.idle_exit = idle_exit
        self.peers: set[Peer] = set()
        self.outgoing = Outgoing(network)
        self.mirror: Mirror | None = None
        self.steal = Steal(network)
        self.stopped = asyncio.get_running_loop().create_future()
        self._idle_since = asyncio.get_running_loop().time()
        self._server: asyncio.Server | None = None
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.get_running_loop().create_server(
            self._new_peer, host, port, reuse_address=True
        )
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    def addresses(self) -> list[tuple[str, int]]:
        assert self._server is not None
        return [sock.getsockname()[:2] for sock in self._server.sockets]

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers):
            peer.close("agent shutting down")
        if self.mirror is not None:
            self.mirror.close()
        self.steal.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if not self.stopped.done():
            self.stopped.set_result(None)

    def _new_peer(self) -> Peer:
        connection = Connection(
            Role.AGENT,
            self.token,
            name=f"podside-agent/{__version__}",
            session_id=uuid.uuid4().hex[:12],
            info=self._info(),
        )
        peer = Peer(connection, self)
        self.peers.add(peer)
        asyncio.get_running_loop().create_task(self._greet(peer))
        return peer

    def _info(self) -> dict[str, Any]:
        return {
            "target_pid": self.network.target_pid,
            "hostname": socket.gethostname(),
            "agent_pid": os.getpid(),
        }

    async def _greet(self, peer: Peer) -> None:
        try:
            event = await asyncio.wait_for(peer.handshake, self.heartbeat_timeout * 3)
        except (TimeoutError, ConnectionError):
            peer.abort("no handshake")
            return
        if isinstance(event, Rejected):
            log.warning("rejected a client: %s", event.message)
            peer.flush()
            peer.abort(event.message)
        elif isinstance(event, Hello):
            log.info("client %r connected (%d clients)", event.client, len(self.peers))

    # --- PeerHandler -------------------------------------------------------------------------

    def handle_request(self, peer: Peer, request: Request) -> Any:
        method, params = request.method, request.params
        if method == environment.GET:
            return {"env": self.network.environment(), "pid": self.network.target_pid}
        if method == files.READ:
            path = params.get("path")
            if not isinstance(path, str):
                raise RequestFailed("file.read needs a path", errno.EINVAL)
            return {"data": self.network.read_file(path, files.MAX_READ)}
        if method == mirror_messages.SUBSCRIBE:
            port = mirror_messages.port_of(params)
            if self.mirror is None:
                self.mirror = Mirror(self.network)
            try:
                self.mirror.subscribe(peer, port)
            except PermissionError as error:
                raise RequestFailed(
                    "the agent cannot sniff the pod's traffic (needs NET_RAW)", error.errno or 1
                ) from None
            return {"port": port}
        if method == mirror_messages.UNSUBSCRIBE:
            port = mirror_messages.port_of(params)
            if self.mirror is not None:
                self.mirror.unsubscribe(peer, port)
            return {"port": port}
        if method == mirror_messages.STATS:
            return self.mirror.statistics() if self.mirror else {}
        if method in files.FILE_METHODS:
            return agent_files.handle(self.network.target_pid or os.getpid(), method, dict(params))
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
            return {
                "clients": len(self.peers),
                "mirrored_ports": sorted(self.mirror.ports()) if self.mirror else [],
                "stolen_ports": self.steal.ports(),
                "target_pid": self.network.target_pid,
            }
        raise RequestFailed(f"unknown request {method!r}", errno.ENOSYS)

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
        if self.mirror is not None:
            self.mirror.drop_peer(peer)
        self.steal.drop_peer(peer)
        if not self.peers:
            self._idle_since = asyncio.get_running_loop().time()
        log.info("client left (%s); %d clients", reason, len(self.peers))

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
                if now - peer.last_heard > self.heartbeat_timeout:
                    log.warning("dropping a client silent for %.1f s", now - peer.last_heard)
                    peer.abort("heartbeat timeout")
            if self.idle_exit and not self.peers and now - self._idle_since > self.idle_exit:
                log.info("no clients for %.0f s: exiting", self.idle_exit)
                self.stop()
                return
