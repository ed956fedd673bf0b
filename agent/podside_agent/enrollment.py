"""Enrollment: a pod-local way to make a running agent accept one more token.

A second developer who may add ephemeral containers to the pod, but holds no token for the
agent already there, adds a short-lived container (`--enroll`, same image; its client is in
`bootstrap`, so it runs in a plain python image too) whose spec carries the new verifier. It reaches the agent over an abstract Unix socket, which exists only in the
pod's network namespace, hands the verifier over and exits once the agent acknowledged it.

The pod's own processes share that namespace, so the socket alone proves nothing: the agent
takes a verifier only from a peer that already holds what using the agent would give, i.e.
its own user id, at least its own effective capabilities, and those in the agent's own user
namespace (SO_PEERCRED, then the peer's /proc status and ns/user): any process can make a
user namespace in which it holds every capability, and those count there only. A non-root
app, a root app without the agent's capabilities, or someone with `pods/exec` into one,
gains nothing. The pid is checked to still name the peer once its /proc entries are read
(its pidfd, SO_PEERPIDFD, can still be signalled; on kernels before 6.5 its start time is
the same), so a peer that exits and leaves its pid to another process is refused. An agent
that cannot read its own credentials takes no enrollment at all.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import struct
from dataclasses import dataclass

from podside_agent.bootstrap import OK, enrollment_socket
from podside_agent.podnet import PodNetwork
from podside_agent.procfs import status_fields
from podside_agent.target import start_time
from podside_protocol.tokens import Verifiers, parse_verifier

log = logging.getLogger(__name__)

_MAX_LINE = 128  # a verifier and its newline, with room to spare
_READ_TIMEOUT = 5.0
# Any process of the pod may connect, whatever its uid: connections waiting for their line
# are bounded, as the agent's handshakes are, so that idle ones cannot use up its descriptors.
# A new one closes the one that has waited longest (an enroller sends its line at once).
MAX_WAITING_ENROLLMENTS = 16
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)  # Linux 6.5; Python names it from 3.12


@dataclass(frozen=True, slots=True)
class Credentials:
    """What using the agent gives, as a process holds it."""

    uid: int
    capabilities: int  # the CapEff mask
    user_namespace: tuple[int, int]  # st_dev, st_ino of /proc/PID/ns/user: where they count


@dataclass(frozen=True, slots=True)
class PeerReading:
    """What the agent read of an enrolling peer, and whether the pid still named the peer
    once it was read: its pidfd could still be signalled (`alive_after`), or, without a
    pidfd (before Linux 6.5), its start time before and after reading (`started`)."""

    pid: int  # 0: the peer is in a PID namespace the agent cannot see into
    credentials: Credentials | None  # None: its /proc entries could not be read
    alive_after: bool | None = None
    started: tuple[int, int] | None = None


def refusal(peer: PeerReading, own: Credentials | None) -> str | None:
    """Why a peer may not enroll (None: it may)."""
    if own is None:
        return "the agent cannot read its own credentials, so it takes no enrollment"
    if peer.pid == 0:
        return "the peer is outside the agent's PID namespace"
    credentials = peer.credentials
    if credentials is None:
        return "the peer's capabilities cannot be read"
    if peer.alive_after is False:
        return "the peer exited while it was checked"
    if peer.alive_after is None and (peer.started is None or peer.started[0] != peer.started[1]):
        return "the peer's pid was taken by another process while it was checked"
    if credentials.uid != own.uid:
        return f"the peer runs as uid {credentials.uid}, the agent as uid {own.uid}"
    if credentials.user_namespace != own.user_namespace:
        return (
            "the peer runs in another user namespace than the agent "
            "(its capabilities count there only)"
        )
    missing = own.capabilities & ~credentials.capabilities
    if missing:
        return f"the peer lacks capabilities the agent has (mask {missing:#x})"
    return None


def process_credentials(pid: int | str, uid: int) -> Credentials:
    """The capabilities and user namespace of `pid` (whose uid SO_PEERCRED told);
    OSError or ValueError when it is gone or not visible from here."""
    effective = status_fields(pid, ("CapEff",)).get("CapEff")
    if not effective:
        raise ValueError(f"/proc/{pid}/status shows no CapEff")
    capabilities = int(effective[0], 16)
    namespace = os.stat(f"/proc/{pid}/ns/user")
    return Credentials(uid, capabilities, (namespace.st_dev, namespace.st_ino))


def own_credentials() -> Credentials | None:
    try:
        return process_credentials("self", os.geteuid())
    except (OSError, ValueError) as error:
        log.error("enrollment is off: the agent cannot read its own credentials (%s)", error)
        return None


def peer_pidfd(sock: socket.socket) -> int | None:
    """A pidfd of the process that connected `sock`; None on a kernel without SO_PEERPIDFD.
    OSError when the peer is gone already."""
    try:
        return sock.getsockopt(socket.SOL_SOCKET, _SO_PEERPIDFD)
    except OSError as error:
        if error.errno == errno.ENOPROTOOPT:
            return None
        raise


def _is_alive(pidfd: int) -> bool:
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, only signalling it is not ours
    return True


def read_peer(pid: int, uid: int, pidfd: int | None) -> PeerReading:
    """The peer's credentials, with what shows the pid still named it after they were read
    (a blocking call: /proc)."""
    if pid == 0:
        return PeerReading(0, None)
    try:
        if pidfd is not None:
            credentials = process_credentials(pid, uid)
            return PeerReading(pid, credentials, alive_after=_is_alive(pidfd))
        before = start_time(pid)
        credentials = process_credentials(pid, uid)
        return PeerReading(pid, credentials, started=(before, start_time(pid)))
    except (OSError, ValueError, IndexError):
        return PeerReading(pid, None)


def read_connected_peer(sock: socket.socket, pid: int, uid: int) -> PeerReading:
    """`read_peer` of the process that connected `sock`, its pidfd opened and closed here
    (a blocking call, on a worker thread): a connection that waits for a worker holds no
    descriptor but its own, and one closed meanwhile reads as unreadable."""
    try:
        pidfd = peer_pidfd(sock)
    except OSError:
        return PeerReading(pid, None)
    try:
        return read_peer(pid, uid, pidfd)
    finally:
        if pidfd is not None:
            os.close(pidfd)


class EnrollmentListener:
    """Adds the verifiers that entitled peers hand over to `verifiers`."""

    def __init__(self, verifiers: Verifiers, network: PodNetwork) -> None:
        self.verifiers = verifiers
        self.network = network
        self._server: asyncio.AbstractServer | None = None
        self._own = own_credentials()
        # In the order they came: a dict keeps insertion order.
        self._waiting: dict[asyncio.StreamWriter, None] = {}

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
        if len(self._waiting) >= MAX_WAITING_ENROLLMENTS:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.transport.abort()
        self._waiting[writer] = None
        try:
            answer = await self._answer(reader, writer)
            writer.write(f"{answer}\n".encode())
            await asyncio.wait_for(writer.drain(), _READ_TIMEOUT)
        except (OSError, TimeoutError):
            pass
        finally:
            self._waiting.pop(writer, None)
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        sock = writer.get_extra_info("socket")
        pid, uid, _ = _PEERCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        )
        # Read right after accept: the less time the peer has to leave its pid.
        peer = await asyncio.to_thread(read_connected_peer, sock, pid, uid)
        # The line is read before any refusal, so that a refused peer is not still writing
        # when the answer comes and the socket closes (it would see EPIPE, not the reason).
        try:
            line = await asyncio.wait_for(reader.readline(), _READ_TIMEOUT)
        except ValueError as error:  # longer than the reader's limit
            return f"refused: {error}"
        reason = refusal(peer, self._own)
        if reason is not None:
            log.warning("refused an enrollment from pid %d: %s", pid, reason)
            return f"refused: {reason}"
        try:
            verifier = parse_verifier(line.decode("ascii"))
        except ValueError as error:  # not ASCII, not a verifier
            return f"refused: {error}"
        if self.verifiers.add(verifier):
            log.warning(
                "the agent holds as many token verifiers as it takes: dropped the one unused longest"
            )
        log.info("enrolled a new session token (%d accepted)", len(self.verifiers))
        return OK
