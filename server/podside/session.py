"""A session: one connection to one agent, the handshake, the heartbeat, and routing of the
streams the agent opens (mirrored connections) to whoever handles them.

The transport is whatever reaches the agent: a TCP connection for `--agent HOST:PORT`, or the
Kubernetes port-forward WebSocket, through an adapter with the same methods.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from podside import __version__
from podside.errors import PodsideError
from podside_agent.peer import Peer, RequestFailed
from podside_protocol import (
    PROTOCOL_VERSION,
    Connection,
    Rejected,
    Request,
    Role,
    StreamOpenRequested,
    Welcome,
)

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
# The agent drops a client after 3 s of silence; we give the agent a little longer.
SILENCE_LIMIT_SECONDS = 6.0
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# How long the agent keeps a silent client, unless its WELCOME says otherwise.
AGENT_HEARTBEAT_TIMEOUT_SECONDS = 3.0

StreamHandler = Callable[[StreamOpenRequested], bool]


class AgentUnreachable(PodsideError):
    """The transport closed before the handshake: the agent may not be listening yet."""


class AgentSession:
    def __init__(self, token: str, *, description: str) -> None:
        """`description` names the agent in messages, e.g. "the agent at 10.0.0.5:7000"."""
        self._token = token
        self.description = description
        self.peer: Peer | None = None
        self.welcome: Welcome | None = None
        self.stream_handlers: list[StreamHandler] = []
        # (port, path) of the target pod's HTTP probes, when the pod spec is known (Kubernetes).
        self.probes: tuple[tuple[int, str], ...] = ()
        # Kubernetes: the cluster (KubeContext) and the target (kube.targets.Target) of the
        # pod, kept for the replicas a workload target covers besides this pod.
        self.context: Any = None
        self.target: Any = None
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.lost_at = 0.0
        self._heartbeat: asyncio.Task[None] | None = None
        self._closing = False
        # When the heartbeat last ran, in wall and CPU time: a long gap means podside itself
        # did not run (suspended, or its loop blocked), and the agent may have given up on it.
        self._last_beat = (0.0, 0.0)
        self._stall: tuple[float, float, float] | None = None  # (noticed at, gap, CPU used)

    def new_peer(self) -> Peer:
        """The protocol side of the transport (asyncio protocol factory)."""
        connection = Connection(Role.CLIENT, self._token, name=f"podside/{__version__}")
        self.peer = Peer(connection, self, ping_interval=HEARTBEAT_SECONDS)
        return self.peer

    async def connect_tcp(self, host: str, port: int, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.create_connection(self.new_peer, host, port), timeout)
        except TimeoutError:
            raise AgentUnreachable(f"cannot reach {self.description}: timed out") from None
        except OSError as error:
            # asyncio's strerror describes the call; the errno's own text is what users know.
            reason = os.strerror(error.errno) if error.errno else str(error)
            raise AgentUnreachable(f"cannot reach {self.description}: {reason}") from None
        await self.handshake()

    async def attach(self, open_transport: Callable[[Callable[[], Peer]], Awaitable[Any]]) -> None:
        """Use a transport opened by `open_transport(protocol_factory)`, then shake hands."""
        await open_transport(self.new_peer)
        await self.handshake()

    async def handshake(self) -> None:
        assert self.peer is not None
        try:
            event = await asyncio.wait_for(self.peer.handshake, HANDSHAKE_TIMEOUT_SECONDS)
        except TimeoutError:
            self.peer.abort("handshake timeout")
            raise PodsideError(f"{self.description} did not answer the handshake") from None
        except ConnectionError as error:
            raise AgentUnreachable(f"{self.description} closed the connection: {error}") from None
        if isinstance(event, Rejected):
            self.peer.abort("rejected")
            if event.code == "version":
                raise PodsideError(
                    f"{self.description} speaks protocol version {event.peer_version}, this "
                    f"podside speaks version {PROTOCOL_VERSION}: use the same podside release "
                    "for both"
                )
            if event.code == "token":
                raise PodsideError(f"{self.description} rejected the session token")
            raise PodsideError(f"{self.description} refused the session: {event.message}")
        assert isinstance(event, Welcome)
        self.welcome = event
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def request(self, method: str, params: dict[str, Any] | None = None) -> Any:
        assert self.peer is not None
        return await self.peer.request(method, params)

    async def _beat(self) -> None:
        assert self.peer is not None
        loop = asyncio.get_running_loop()
        self._last_beat = (loop.time(), time.process_time())
        while not self._closing:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            self._note_stall()
            silence = loop.time() - self.peer.last_heard
            if silence > SILENCE_LIMIT_SECONDS:
                self.peer.abort(f"no answer for {silence:.0f} s")
                return
            self.peer.send_ping()

    def _agent_patience(self) -> float:
        """How long the agent keeps a client it does not hear from."""
        info = self.welcome.info if self.welcome is not None else {}
        limit = info.get("heartbeat_timeout")
        if isinstance(limit, int | float) and not isinstance(limit, bool) and limit > 0:
            return float(limit)
        return AGENT_HEARTBEAT_TIMEOUT_SECONDS

    def _note_stall(self) -> None:
        """Remember a gap since the last beat longer than the agent's patience."""
        if self._heartbeat is None:
            return
        now, cpu = asyncio.get_running_loop().time(), time.process_time()
        (last, last_cpu), self._last_beat = self._last_beat, (now, cpu)
        if now - last > self._agent_patience():
            self._stall = (now, now - last, cpu - last_cpu)

    def describe_loss(self) -> str:
        """One line on why the session ended, once `lost` is done."""
        reason = self.lost.result()
        stall = self._stall
        if stall is None or self.lost_at - stall[0] > SILENCE_LIMIT_SECONDS:
            return f"lost the connection to the agent ({reason})"
        _noticed, gap, cpu = stall
        # A suspended process uses no CPU; a blocked loop usually does.
        what = "was suspended (Ctrl-Z or SIGSTOP)" if cpu < gap / 2 else "did not run"
        return (
            f"{self.description} ended the session: podside {what} for {gap:.0f} s, longer "
            f"than the {self._agent_patience():g} s the agent waits for a silent client"
        )

    async def close(self) -> None:
        self._closing = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.peer is not None:
            self.peer.close("session ended")

    # --- PeerHandler ---------------------------------------------------------------------------

    def handle_request(self, peer: Peer, request: Request) -> Any:
        raise RequestFailed(f"podside answers no {request.method!r} requests", errno.ENOSYS)

    def handle_stream(self, peer: Peer, request: StreamOpenRequested) -> None:
        for handler in self.stream_handlers:
            if handler(request):
                return
        peer.refuse_stream(request.stream_id, errno.EPROTONOSUPPORT, f"no {request.kind} here")

    def connection_lost(self, peer: Peer, reason: str) -> None:
        if not self.lost.done():
            self._note_stall()
            self.lost_at = asyncio.get_running_loop().time()
            self.lost.set_result(reason)
