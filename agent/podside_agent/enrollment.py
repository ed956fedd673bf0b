"""Enrollment: a pod-local way to make a running agent accept one more token.

A second developer who may add ephemeral containers to the pod, but holds no token for the
agent already there, adds a short-lived container (`--enroll`, same image; its client is in
`bootstrap`, so it runs in a plain python image too) whose spec carries the new verifier. It reaches the agent over an abstract Unix socket, which exists only in the
pod's network namespace, hands the verifier over and exits once the agent acknowledged it.

The pod's own processes share that namespace, so the socket alone proves nothing: the agent
takes a verifier only from a peer that already holds what using the agent would give, i.e.
its own user id and at least its own effective capabilities (SO_PEERCRED, then the peer's
/proc status). A non-root app, or someone with `pods/exec` into one, gains nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import struct

from podside_agent.bootstrap import OK, enrollment_socket
from podside_agent.podnet import PodNetwork
from podside_protocol.tokens import Verifiers, parse_verifier

log = logging.getLogger(__name__)

_MAX_LINE = 128  # a verifier and its newline, with room to spare
_READ_TIMEOUT = 5.0
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def refusal(peer_uid: int, peer_caps: int | None, own_uid: int, own_caps: int) -> str | None:
    """Why a peer may not enroll (None: it may); `*_caps` are effective capability masks."""
    if peer_uid != own_uid:
        return f"the peer runs as uid {peer_uid}, the agent as uid {own_uid}"
    if peer_caps is None:
        return "the peer's capabilities cannot be read (is it in the agent's PID namespace?)"
    missing = own_caps & ~peer_caps
    if missing:
        return f"the peer lacks capabilities the agent has (mask {missing:#x})"
    return None


def effective_capabilities(pid: int | str) -> int | None:
    """The CapEff mask of a process, None if it is gone or not visible from here."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        return None
    return None


class EnrollmentListener:
    """Adds the verifiers that entitled peers hand over to `verifiers`."""

    def __init__(self, verifiers: Verifiers, network: PodNetwork) -> None:
        self.verifiers = verifiers
        self.network = network
        self._server: asyncio.AbstractServer | None = None
        self._own_caps = effective_capabilities("self") or 0

    async def start(self, port: int) -> None:
        with self.network.entered():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(enrollment_socket(port))
            sock.listen(16)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._server = await asyncio.start_unix_server(self._enroll, sock=sock, limit=_MAX_LINE)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _enroll(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            answer = await self._answer(reader, writer)
            writer.write(f"{answer}\n".encode())
            await asyncio.wait_for(writer.drain(), _READ_TIMEOUT)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        sock = writer.get_extra_info("socket")
        pid, uid, _ = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        # The line is read before any refusal, so that a refused peer is not still writing
        # when the answer comes and the socket closes (it would see EPIPE, not the reason).
        try:
            line = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT)
        except ValueError as error:  # longer than the reader's limit
            return f"refused: {error}"
        # pid 0: the peer is in a PID namespace this agent cannot see into.
        peer_caps = await asyncio.to_thread(effective_capabilities, pid) if pid else None
        reason = refusal(uid, peer_caps, os.geteuid(), self._own_caps)
        if reason is not None:
            log.warning("refused an enrollment from pid %d: %s", pid, reason)
            return f"refused: {reason}"
        try:
            verifier = parse_verifier(line.decode("ascii"))
        except ValueError as error:  # not ASCII, not a verifier
            return f"refused: {error}"
        if not self.verifiers.add(verifier):
            return "refused: the agent holds as many verifiers as it takes"
        log.info("enrolled a new session token (%d accepted)", len(self.verifiers))
        return OK
