"""The seccomp supervisor: answers every syscall the filter stops, from its own thread.

Each notification is read, decoded (arguments, strings and socket addresses from the program's
memory) and answered here when the answer is immediate — by far the common case: "continue"
for loopback connects and ordinary opens, a served file for the resolver's configuration, a
relayed datagram. Work that needs the agent or must wait goes to the event loop (`TunnelWork`)
with a duplicate of the socket, and is answered from there. The thread never touches the data
relays, so a busy relay never stalls the program's syscalls.

Rules kept throughout: a notification is checked still valid after reading the program's
memory and before acting on it; every notification is answered exactly once, even when handling
it fails — here, or by the event loop once handed over, never both, never neither (a thread
whose notification is never answered waits in its syscall for ever, unkillable but by SIGKILL).

What this thread shares with the event loop: the `seccomp.Listener` (each call has its own
ioctl argument; see there), the `TunnelRegistry` (locked), the UDP relays' addresses (written
under their lock, read by single dict look-ups), the remote files' listings and served folders
(only the loop changes them: a listing is replaced whole, the served folders copied on write),
and descriptors duplicated here, which the loop owns from the hand-over on. The pidfd cache is
this thread's alone, closed by it when it ends.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import os
import re
import select
import socket
import struct
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from podside.layer import seccomp, sockaddr
from podside.layer.proxy import UdpRelays
from podside.layer.remote_files import Change, OpenCall, RemoteFiles, StatCall, is_writing
from podside.layer.routing import Router
from podside.layer.served_files import ServedFiles
from podside.layer.tunnels import TunnelRegistry, TunnelWork, ensure_bound, is_v6only, socket_type
from podside_agent.procfs import status_fields

log = logging.getLogger(__name__)

_MSG_DONTWAIT = 0x40
_MSG_FASTOPEN = 0x20000000
_O_ACCMODE = 0o3
_O_CLOEXEC = 0o2000000
_O_PATH = 0o10000000
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_EMPTY_PATH = 0x1000
_STAT_CALLS = ("stat", "lstat", "newfstatat", "statx", "access", "faccessat", "faccessat2")
_XATTR_CALLS = ("getxattr", "lgetxattr", "listxattr", "llistxattr")
_LINK_CALLS = ("readlink", "readlinkat")
_CHANGE_CALLS = (
    "unlink",
    "unlinkat",
    "rmdir",
    "mkdir",
    "mkdirat",
    "rename",
    "renameat",
    "renameat2",
    "chdir",
)
_AT_REMOVEDIR = 0x200
_O_CREAT = 0o100
_MAX_DATAGRAM = 65535
_PIDFD_CACHE = 256
_UINT32 = struct.Struct("=I")
# struct msghdr: name, namelen, iov, iovlen, control, controllen, flags
_MSGHDR = struct.Struct("=QI4xQQQQi4x")
_MSG_TRUNC = 0x20
# Calls that would send from this machine if let through: failing to handle them must fail them.
_SENDING_CALLS = frozenset({"connect", "sendto", "sendmsg"})


@dataclass(slots=True)
class Notification:
    id: int
    tid: int
    syscall: str
    args: tuple[int, ...]


def filter_rules(
    *, network: bool, udp: bool, files: bool, stats: bool = False, hostname: bool = False
) -> seccomp.FilterRules:
    """The syscalls to stop for the features that are on (`stats`: --fs read|write;
    `hostname`: uname answers the pod's nodename)."""
    always: set[str] = {"uname"} if hostname else set()
    when_arg_set: list[tuple[str, int]] = []
    unless_flag: list[tuple[str, int, int]] = []
    if network:
        always |= {"connect", "getpeername", "listen"}
    if udp:
        when_arg_set += [("sendto", 4), ("recvfrom", 4)]
        # libuv (Node's dgram) sends and receives datagrams with sendmsg/recvmsg; their address
        # sits inside struct msghdr, out of the filter's sight, so these stop every time.
        always |= {"sendmsg", "recvmsg"}
    if files or stats:
        always |= {"open", "openat", "openat2"}
    if stats:
        # fstat is newfstatat/statx with AT_EMPTY_PATH and "": about half of a program's stat
        # calls, and always of a descriptor, so the kernel answers them without a stop.
        always |= (set(_STAT_CALLS) - {"newfstatat", "statx"}) | set(_CHANGE_CALLS)
        always |= set(_XATTR_CALLS)  # rare (shutil.copy2, cp -a): they cost no start-up
        # A ConfigMap's keys are symlinks through ..data: realpath, cp -r and ls -l read them.
        always |= set(_LINK_CALLS)
        unless_flag += [("newfstatat", 3, _AT_EMPTY_PATH), ("statx", 2, _AT_EMPTY_PATH)]
    return seccomp.FilterRules(
        always=frozenset(always),
        when_arg_set=tuple(when_arg_set),
        unless_flag=tuple(unless_flag),
    )


_UTS_FIELD = 65  # each field of struct utsname: 64 characters and a NUL


def utsname_with(nodename: str) -> bytes:
    """struct utsname as uname(2) fills it here, with `nodename` (cut to 64 bytes) instead of
    this machine's: sysname, nodename, release, version, machine, domainname."""
    local = os.uname()
    try:
        with open("/proc/sys/kernel/domainname", "rb") as file:
            domainname = file.read().rstrip(b"\n")
    except OSError:
        domainname = b"(none)"
    fields = [
        local.sysname.encode(),
        nodename.encode()[: _UTS_FIELD - 1],
        local.release.encode(),
        local.version.encode(),
        local.machine.encode(),
        domainname,
    ]
    return b"".join(field[: _UTS_FIELD - 1].ljust(_UTS_FIELD, b"\0") for field in fields)


class Supervisor:
    def __init__(
        self,
        listener: seccomp.Listener,
        loop: asyncio.AbstractEventLoop,
        *,
        router: Router,
        served: ServedFiles | None,
        work: TunnelWork,
        registry: TunnelRegistry,
        udp_relays: UdpRelays,
        on_listen: object,
        remote: RemoteFiles | None = None,
        hostname: str | None = None,
        unix_remote: tuple[re.Pattern[str], ...] = (),
    ) -> None:
        """`unix_remote`: Unix stream sockets whose paths match connect to the pod's."""
        self.listener = listener
        # uname's answer with the pod's nodename, made once: nothing else in it changes.
        self._utsname = None if hostname is None else utsname_with(hostname)
        self._loop = loop
        self._router = router
        self._served = served
        self._work = work
        self._registry = registry
        self._udp = udp_relays
        self._on_listen = on_listen
        self._remote = remote
        self._unix_remote = unix_remote
        self._pidfds: OrderedDict[int, int] = OrderedDict()
        self._stop_read, self._stop_write = os.pipe()
        self._thread = threading.Thread(target=self._run, name="podside-supervisor", daemon=True)
        self.failure: BaseException | None = None
        self._handlers = {
            "connect": self._on_connect,
            "sendto": self._on_sendto,
            "recvfrom": self._on_recvfrom,
            "sendmsg": self._on_sendmsg,
            "recvmsg": self._on_recvmsg,
            "getpeername": self._on_getpeername,
            "listen": self._on_listen_call,
            "uname": self._on_uname,
            "open": self._on_open,
            "openat": self._on_open,
            "openat2": self._on_open,
            **dict.fromkeys(_STAT_CALLS, self._on_stat),
            **dict.fromkeys(_XATTR_CALLS, self._on_stat),
            **dict.fromkeys(_LINK_CALLS, self._on_stat),
            **dict.fromkeys(_CHANGE_CALLS, self._on_change),
        }

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        os.write(self._stop_write, b"x")
        self._thread.join(timeout=5)
        os.close(self._stop_read)
        os.close(self._stop_write)
        # From here on the event loop's late answers are refused (the program has ended).
        self.listener.close()

    # --- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.listener.fd, select.POLLIN)
        poller.register(self._stop_read, select.POLLIN)
        listener = self.listener
        names = seccomp.SYSCALL_NAMES
        handlers = self._handlers
        try:
            while True:
                ready = poller.poll()
                for fd, mask in ready:
                    if fd == self._stop_read or mask & select.POLLNVAL:
                        return
                    if mask & select.POLLHUP and not mask & select.POLLIN:
                        return  # no process is left under the filter
                request = listener.receive()
                if request is None:
                    continue
                note = Notification(
                    request.id,
                    request.pid,
                    names.get(request.data.nr, "?"),
                    tuple(request.data.args),
                )
                handler = handlers.get(note.syscall)
                try:
                    if handler is None:
                        listener.allow(note.id)
                    else:
                        handler(note)
                except Exception as error:
                    self._answer_after_failure(note, error)
        except BaseException as error:
            # The program's intercepted calls would fail from now on: say so, loudly.
            self.failure = error
            print(f"podside: the layer's supervisor failed: {error!r}", file=sys.stderr)
            raise
        finally:
            for pidfd in self._pidfds.values():
                os.close(pidfd)
            self._pidfds.clear()

    def _answer_after_failure(self, note: Notification, error: Exception) -> None:
        """A handler failed before answering (or handing over) its notification: answer now.

        Also when the program's thread seemed gone (ESRCH): the kernel then refuses the answer,
        and if the thread is still there after all, it must not wait for ever."""
        if not isinstance(error, ProcessLookupError):
            log.warning("handling %s failed: %r", note.syscall, error)
        if note.syscall in _SENDING_CALLS:
            # Never let a connection we failed to handle escape to this machine's network.
            self.listener.respond(note.id, error=errno.ENETUNREACH)
        else:
            self.listener.allow(note.id)

    # --- helpers -------------------------------------------------------------------------------

    def _pidfd(self, tid: int) -> int:
        pidfd = self._pidfds.get(tid)
        if pidfd is not None:
            self._pidfds.move_to_end(tid)
            return pidfd
        try:
            pidfd = seccomp.pidfd_open(tid, seccomp.PIDFD_THREAD)
        except OSError as error:
            if error.errno == errno.ESRCH:
                raise ProcessLookupError(tid) from None
            pidfd = seccomp.pidfd_open(_thread_group(tid))  # kernels before 6.9
        self._pidfds[tid] = pidfd
        if len(self._pidfds) > _PIDFD_CACHE:
            _, oldest = self._pidfds.popitem(last=False)
            os.close(oldest)
        return pidfd

    def _take_fd(self, tid: int, fd: int) -> int:
        """A duplicate of the program's descriptor, owned by the caller."""
        try:
            return seccomp.pidfd_getfd(self._pidfd(tid), fd)
        except OSError as error:
            if error.errno not in (errno.ESRCH, errno.EBADF) or tid not in self._pidfds:
                raise
            # A cached pidfd may belong to an exited thread whose id was reused.
            os.close(self._pidfds.pop(tid))
            return seccomp.pidfd_getfd(self._pidfd(tid), fd)

    def _read(self, tid: int, address: int, length: int) -> bytes:
        try:
            return seccomp.read_memory(tid, address, length)
        except OSError as error:
            if error.errno == errno.ESRCH:
                raise ProcessLookupError(tid) from None
            raise

    # --- network -------------------------------------------------------------------------------

    def _tunnelled_destination(
        self, note: Notification, address_pointer: int, length: int, protocol: str | None
    ) -> tuple[int, tuple[str, int], tuple[str, int]] | None:
        """(family, original, remote) when the address leaves from the pod; otherwise the
        call is let through here and None is returned."""
        decoded = None
        if 2 <= length <= 128:
            decoded = sockaddr.decode(self._read(note.tid, address_pointer, length))
        if decoded is not None:
            family, address, port = decoded
            route = self._router.route(address, port, protocol)
            if route.remote is not None:
                return family, (str(address), port), route.remote
        self.listener.allow(note.id)  # Unix and other local families, local routes
        return None

    def _on_connect(self, note: Notification) -> None:
        listener = self.listener
        fd, address_pointer, length = note.args[0], note.args[1], note.args[2]
        if self._unix_remote and self._connect_unix(note, fd, address_pointer, length):
            return
        protocol = self._protocol_of(note.tid, fd) if self._router.needs_protocol else None
        destination = self._tunnelled_destination(note, address_pointer, length, protocol)
        if destination is None:
            return
        family, original, remote = destination
        dup = self._take_fd(note.tid, fd)
        handed_over = False
        try:
            kind = socket_type(dup)
            v6only = is_v6only(dup, family)
            if not listener.is_valid(note.id):
                return
            if kind == socket.SOCK_STREAM:
                self._loop.call_soon_threadsafe(
                    self._work.connect_tcp, note.id, fd, dup, family, v6only, original, remote
                )
                handed_over = True
            elif kind == socket.SOCK_DGRAM:
                relay = self._udp_relay(family, v6only, original, remote)
                ensure_bound(dup, family, loopback=False, v6only=v6only)
                result = seccomp.raw_connect(dup, relay)
                if result == 0:
                    self._registry.add_udp(fd, os.fstat(dup).st_ino, original)
                listener.respond(note.id, error=result)
            else:
                listener.allow(note.id)
        finally:
            if not handed_over:
                os.close(dup)

    def _connect_unix(self, note: Notification, fd: int, address_pointer: int, length: int) -> bool:
        """Hand a connect to a Unix stream socket path that `--outgoing-unix` names to the
        loop (True), which connects it to the pod's; anything else is not ours (False)."""
        if not 3 <= length <= 110:
            return False
        path = sockaddr.unix_path(self._read(note.tid, address_pointer, length))
        if path is None or not path.startswith("/"):
            return False
        if not any(pattern.search(path) for pattern in self._unix_remote):
            return False
        dup = self._take_fd(note.tid, fd)
        try:
            if socket_type(dup) != socket.SOCK_STREAM or not self.listener.is_valid(note.id):
                os.close(dup)
                self.listener.allow(note.id)  # datagram and seqpacket sockets stay here
                return True
        except OSError:
            os.close(dup)
            raise
        self._loop.call_soon_threadsafe(self._work.connect_unix, note.id, dup, path)
        return True

    def _protocol_of(self, tid: int, fd: int) -> str | None:
        """ "tcp" or "udp" for the program's socket `fd`, None for others or when it is gone
        (the connect itself then fails as it would have)."""
        try:
            dup = self._take_fd(tid, fd)
        except OSError:
            return None
        try:
            kind = socket_type(dup)
        except OSError:
            return None
        finally:
            os.close(dup)
        if kind == socket.SOCK_STREAM:
            return "tcp"
        return "udp" if kind == socket.SOCK_DGRAM else None

    def _udp_relay(
        self, family: int, v6only: bool, original: tuple[str, int], remote: tuple[str, int]
    ) -> bytes:
        relay_family = socket.AF_INET6 if v6only else socket.AF_INET
        host, port = self._udp.relay_address(original, remote, relay_family)
        return sockaddr.encode(family, host, port)

    def _on_sendto(self, note: Notification) -> None:
        fd, buffer, size, flags, address_pointer, length = note.args
        self._send_datagram(
            note,
            fd,
            flags,
            address_pointer,
            length,
            lambda: self._read(note.tid, buffer, min(size, _MAX_DATAGRAM)) if size else b"",
        )

    def _on_sendmsg(self, note: Notification) -> None:
        fd, header_pointer, flags = note.args[0], note.args[1], note.args[2]
        name, name_length, iov, iov_count, _control, _control_length, _flags = _MSGHDR.unpack(
            self._read(note.tid, header_pointer, _MSGHDR.size)
        )
        if not name:
            self.listener.allow(note.id)  # a connected socket: nothing to redirect
            return
        self._send_datagram(
            note, fd, flags, name, name_length, lambda: self._gather(note.tid, iov, iov_count)
        )

    def _send_datagram(
        self,
        note: Notification,
        fd: int,
        flags: int,
        address_pointer: int,
        length: int,
        payload: Callable[[], bytes],
    ) -> None:
        """sendto/sendmsg with an address: to a relay when the address is tunnelled."""
        listener = self.listener
        destination = self._tunnelled_destination(note, address_pointer, length, "udp")
        if destination is None:
            return
        family, original, remote = destination
        dup = self._take_fd(note.tid, fd)
        try:
            if socket_type(dup) != socket.SOCK_DGRAM:
                # TCP Fast Open would send the SYN from here: make the program connect instead.
                if flags & _MSG_FASTOPEN:
                    listener.respond(note.id, error=errno.EOPNOTSUPP)
                else:
                    listener.allow(note.id)
                return
            data = payload()
            v6only = is_v6only(dup, family)
            if not listener.is_valid(note.id):
                return
            relay = self._udp_relay(family, v6only, original, remote)
            ensure_bound(dup, family, loopback=False, v6only=v6only)
            self._registry.add_udp(fd, os.fstat(dup).st_ino, None)
            result = seccomp.raw_sendto(dup, data, flags, relay)
            if result < 0:
                listener.respond(note.id, error=-result)
            else:
                listener.respond(note.id, value=result)
        finally:
            os.close(dup)

    def _gather(self, tid: int, iov: int, count: int) -> bytes:
        pieces = []
        total = 0
        vectors = self._read(tid, iov, 16 * min(count, 1024))
        for index in range(len(vectors) // 16):
            base, length = struct.unpack_from("=QQ", vectors, 16 * index)
            length = min(length, _MAX_DATAGRAM - total)
            if length:
                pieces.append(self._read(tid, base, length))
                total += length
        return b"".join(pieces)

    def _on_recvfrom(self, note: Notification) -> None:
        """Replies to tunnelled UDP sockets come from a relay: show the original sender."""
        fd, buffer, size, flags, address_pointer, length_pointer = note.args
        tid = note.tid

        def deliver(result: int, data: bytes, source: bytes) -> int:
            if data:
                seccomp.write_memory(tid, buffer, data)
            if address_pointer and length_pointer:
                room = _UINT32.unpack(self._read(tid, length_pointer, 4))[0]
                raw = self._original_source(source)
                if room:
                    seccomp.write_memory(tid, address_pointer, raw[:room])
                seccomp.write_memory(tid, length_pointer, _UINT32.pack(len(raw)))
            return result

        self._receive_datagram(note, fd, size, flags, deliver)

    def _on_recvmsg(self, note: Notification) -> None:
        fd, header_pointer, flags = note.args[0], note.args[1], note.args[2]
        if fd not in self._registry.udp_fds:
            self.listener.allow(note.id)  # the common case, decided before reading anything
            return
        tid = note.tid
        name, name_length, iov, iov_count, _control, _control_length, _flags = _MSGHDR.unpack(
            self._read(tid, header_pointer, _MSGHDR.size)
        )
        vectors = self._read(tid, iov, 16 * min(iov_count, 1024))
        buffers = [struct.unpack_from("=QQ", vectors, 16 * i) for i in range(len(vectors) // 16)]
        capacity = sum(length for _, length in buffers)

        def deliver(result: int, data: bytes, source: bytes) -> int:
            offset = 0
            for base, length in buffers:
                piece = data[offset : offset + length]
                if piece:
                    seccomp.write_memory(tid, base, piece)
                offset += len(piece)
            raw = self._original_source(source)
            if name:
                seccomp.write_memory(tid, name, raw[:name_length])
            truncated = result > capacity
            # msg_namelen, then msg_controllen (no ancillary data) and msg_flags
            seccomp.write_memory(tid, header_pointer + 8, _UINT32.pack(len(raw) if name else 0))
            seccomp.write_memory(
                tid, header_pointer + 40, struct.pack("=Qi", 0, _MSG_TRUNC if truncated else 0)
            )
            return result if flags & _MSG_TRUNC else min(result, capacity)

        self._receive_datagram(note, fd, capacity, flags | _MSG_TRUNC, deliver)

    def _receive_datagram(
        self,
        note: Notification,
        fd: int,
        size: int,
        flags: int,
        deliver: Callable[[int, bytes, bytes], int],
    ) -> None:
        """Receive on a tunnelled UDP socket for the program, or let the call through.

        `deliver(result, data, source)` writes into the program and returns the syscall's
        value. A blocking socket with nothing to read waits in the event loop.
        """
        listener = self.listener
        if fd not in self._registry.udp_fds:
            listener.allow(note.id)
            return
        dup = self._take_fd(note.tid, fd)

        def attempt() -> bool:
            result, data, source = seccomp.raw_recvfrom(dup, size, flags | _MSG_DONTWAIT)
            if result == -errno.EAGAIN and not blocking:
                listener.respond(note.id, error=errno.EAGAIN)
                return True
            if result == -errno.EAGAIN:
                return False
            if result < 0:
                listener.respond(note.id, error=-result)
                return True
            try:
                value = deliver(result, data, source)
            except OSError as error:
                listener.respond(note.id, error=error.errno or errno.EFAULT)
                return True
            listener.respond(note.id, value=value)
            return True

        handed_over = False
        try:
            if not self._registry.is_udp(os.fstat(dup).st_ino):
                listener.allow(note.id)
                return
            blocking = not (flags & _MSG_DONTWAIT) and not (_file_flags(dup) & os.O_NONBLOCK)
            if attempt():
                return
            timeout = _receive_timeout(dup)
            self._loop.call_soon_threadsafe(
                self._work.wait_readable, note.id, dup, attempt, timeout
            )
            handed_over = True  # the event loop owns `dup` and answers from here on
        finally:
            if not handed_over:
                os.close(dup)

    def _original_source(self, raw: bytes) -> bytes:
        """The address a relay's datagram stands for: the destination the program wrote to."""
        decoded = sockaddr.decode(raw)
        if decoded is not None:
            family, address, port = decoded
            original = self._udp.original_by_relay.get((str(_unmapped(address)), port))
            if original is not None:
                return sockaddr.encode(family, original[0], original[1])
        return raw

    def _on_getpeername(self, note: Notification) -> None:
        listener = self.listener
        fd, address_pointer, length_pointer = note.args[0], note.args[1], note.args[2]
        if fd not in self._registry.tcp_fds and fd not in self._registry.udp_fds:
            listener.allow(note.id)
            return
        dup = self._take_fd(note.tid, fd)
        try:
            original = self._registry.original_peer(os.fstat(dup).st_ino)
            if original is None:
                listener.allow(note.id)
                return
            family = sockaddr.family_of(seccomp.raw_getsockname(dup))
            raw = sockaddr.encode(family, original[0], original[1])
            (room,) = _UINT32.unpack(self._read(note.tid, length_pointer, 4))
            if not listener.is_valid(note.id):
                return
            seccomp.write_memory(note.tid, address_pointer, raw[:room])
            seccomp.write_memory(note.tid, length_pointer, _UINT32.pack(len(raw)))
            listener.respond(note.id, value=0)
        finally:
            os.close(dup)

    def _on_listen_call(self, note: Notification) -> None:
        """Let the listen happen, then subscribe its port on the agent."""
        dup = self._take_fd(note.tid, note.args[0])
        try:
            kind = socket_type(dup)
        except OSError:
            kind = -1
        self.listener.allow(note.id)
        if kind != socket.SOCK_STREAM:
            os.close(dup)
            return
        try:
            self._loop.call_soon_threadsafe(self._on_listen, dup)  # type: ignore[arg-type]
        except RuntimeError:
            os.close(dup)  # the event loop has closed: the session is ending

    # --- identity ------------------------------------------------------------------------------

    def _on_uname(self, note: Notification) -> None:
        """uname(2) (what gethostname, `uname -n` and `hostname` ask): this machine's answer
        with the pod's nodename, written into the program's struct utsname."""
        if self._utsname is None:
            self.listener.allow(note.id)
            return
        if not self.listener.is_valid(note.id):
            return
        try:
            seccomp.write_memory(note.tid, note.args[0], self._utsname)
        except OSError as error:
            if error.errno == errno.ESRCH:
                raise ProcessLookupError(note.tid) from None
            self.listener.respond(note.id, error=errno.EFAULT)  # as the kernel answers
            return
        self.listener.respond(note.id, value=0)

    # --- files ---------------------------------------------------------------------------------

    def _on_open(self, note: Notification) -> None:
        listener = self.listener
        served, remote = self._served, self._remote
        if served is None and remote is None:
            listener.allow(note.id)
            return
        if note.syscall == "open":
            directory, path_pointer, flags, mode = (
                _AT_FDCWD,
                note.args[0],
                note.args[1],
                note.args[2],
            )
        else:
            directory, path_pointer = _directory_fd(note.args[0]), note.args[1]
            if note.syscall == "openat2":
                flags, mode = struct.unpack("=QQ", self._read(note.tid, note.args[2], 16))
            else:
                flags, mode = note.args[2], note.args[3]
        path = seccomp.read_c_string(note.tid, path_pointer)
        if not path.startswith(b"/"):
            if remote is None and os.path.basename(path) not in served.basenames:  # type: ignore[union-attr]
                listener.allow(note.id)
                return
            path = self._absolute(note.tid, directory, path)
        if served is None or path not in served or flags & _O_ACCMODE or flags & _O_PATH:
            self._open_remote(note, path, flags, mode)
            return
        if not listener.is_valid(note.id):
            return
        fd = served.open(path)
        try:
            listener.respond_with_fd(note.id, fd, cloexec=bool(flags & _O_CLOEXEC))
        except OSError as error:
            # Not "continue": the program would read this machine's resolver files instead.
            listener.respond(note.id, error=error.errno or errno.EIO)
        finally:
            os.close(fd)

    def _open_remote(self, note: Notification, raw_path: bytes, flags: int, mode: int) -> None:
        """--fs read|write: opens of remote paths (for writing: EROFS under --fs read)."""
        remote = self._remote
        if remote is None or not raw_path.startswith(b"/"):
            self.listener.allow(note.id)
            return
        path = remote.remote_path(os.fsdecode(raw_path))
        if remote.is_remote(path, creating=bool(flags & _O_CREAT)) is False:
            self.listener.allow(note.id)
            return
        if is_writing(flags) and not remote.writable and remote.is_remote(path) is True:
            self.listener.respond(note.id, error=errno.EROFS)  # the pod's files are read-only
            return
        remote.open_later(note.id, path, OpenCall(note.tid, flags, mode))

    def _on_stat(self, note: Notification) -> None:
        """--fs read: stat and access of remote paths answer what the pod's open would see."""
        remote = self._remote
        if remote is None:
            self.listener.allow(note.id)
            return
        args, name = note.args, note.syscall
        directory, follow, size = _AT_FDCWD, True, 0
        if name in ("stat", "lstat", "access"):
            kind = "access" if name == "access" else "stat"
            path_pointer, argument = args[0], args[1]
            follow = name != "lstat"
        elif name in _XATTR_CALLS:
            kind = "getxattr" if "get" in name else "listxattr"
            path_pointer, argument = args[0], 0
            follow = name in ("getxattr", "listxattr")
        elif name in _LINK_CALLS:
            kind = "readlink"
            if name == "readlinkat":
                directory, args = _directory_fd(args[0]), args[1:]
            path_pointer, argument, follow = args[0], args[1], False
            size = ctypes.c_int(args[2] & 0xFFFFFFFF).value  # the kernel takes it as an int
        elif name == "newfstatat":
            kind = "stat"
            directory, path_pointer, argument = _directory_fd(args[0]), args[1], args[2]
            follow = not args[3] & _AT_SYMLINK_NOFOLLOW
        elif name == "statx":
            kind = "statx"
            directory, path_pointer, argument = _directory_fd(args[0]), args[1], args[4]
            follow = not args[2] & _AT_SYMLINK_NOFOLLOW
        else:  # faccessat, faccessat2
            kind = "access"
            directory, path_pointer, argument = _directory_fd(args[0]), args[1], args[2]
            if name == "faccessat2":
                follow = not args[3] & _AT_SYMLINK_NOFOLLOW
        path = seccomp.read_c_string(note.tid, path_pointer) if path_pointer else b""
        if not path:
            self.listener.allow(note.id)  # fstat of a descriptor (AT_EMPTY_PATH)
            return
        if not path.startswith(b"/"):
            path = self._absolute(note.tid, directory, path)
        text = remote.remote_path(os.fsdecode(path))
        if remote.is_remote(text) is False:
            self.listener.allow(note.id)
            return
        remote.stat_later(note.id, note.tid, text, StatCall(kind, follow, argument, size))

    def _on_change(self, note: Notification) -> None:
        """unlink, rmdir, mkdir and rename of remote paths: done in the pod (--fs write) or
        EROFS (--fs read); chdir into a remote folder: refused (see RemoteFiles._change)."""
        remote = self._remote
        if remote is None:
            self.listener.allow(note.id)
            return
        args, name = note.args, note.syscall
        change = Change(name.removesuffix("at").removesuffix("at2"), note.tid)
        target = None
        if name in ("unlink", "rmdir", "mkdir", "rename", "chdir"):
            directory, pointer = _AT_FDCWD, args[0]
            change.mode = args[1]
            if name == "rename":
                target = (_AT_FDCWD, args[1])
        else:
            directory, pointer = _directory_fd(args[0]), args[1]
            if name == "unlinkat" and args[2] & _AT_REMOVEDIR:
                change.kind = "rmdir"
            elif name == "mkdirat":
                change.mode = args[2]
            elif name != "unlinkat":  # renameat, renameat2
                target = (_directory_fd(args[2]), args[3])
                change.flags = args[4] if name == "renameat2" else 0
        path = self._remote_path(note.tid, directory, pointer)
        if target is not None:
            change.to = self._remote_path(note.tid, *target)
            if remote.is_remote(path) is False and remote.is_remote(change.to, True) is False:
                self.listener.allow(note.id)
                return
        elif remote.is_remote(path, creating=change.kind == "mkdir") is False:
            self.listener.allow(note.id)
            return
        remote.change_later(note.id, path, change)

    def _remote_path(self, tid: int, directory: int, pointer: int) -> str:
        """The absolute path a path argument names, as the pod would see it."""
        assert self._remote is not None
        path = seccomp.read_c_string(tid, pointer)
        if not path.startswith(b"/"):
            path = self._absolute(tid, directory, path)
        return self._remote.remote_path(os.fsdecode(path))

    def _absolute(self, tid: int, directory: int, path: bytes) -> bytes:
        base = f"/proc/{tid}/cwd" if directory == _AT_FDCWD else f"/proc/{tid}/fd/{directory}"
        try:
            return os.path.normpath(os.path.join(os.readlink(base.encode()), path))
        except OSError:
            return path


def _directory_fd(value: int) -> int:
    """A directory descriptor argument: a C int, so only the register's low 32 bits count
    (AT_FDCWD arrives as 0xffffff9c from some callers, sign-extended from others)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _unmapped(address: object) -> object:
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


def _thread_group(tid: int) -> int:
    tgid = status_fields(tid, ("Tgid",)).get("Tgid")
    if not tgid:
        raise ProcessLookupError(tid)
    return int(tgid[0])


def _file_flags(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_GETFL)


def _receive_timeout(fd: int) -> float | None:
    raw = seccomp.raw_getsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    seconds, microseconds = struct.unpack("=qq", raw)
    total = seconds + microseconds / 1e6
    return total or None
