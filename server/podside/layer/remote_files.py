"""--fs read: the program's opens and stats of remote paths are answered with the pod's files.

Which paths are remote (`PathPolicy`, pure): `--fs-local` first, then `--fs-remote`, then the
paths that are always this machine's (system and runtime directories, /proc, /dev, /tmp, the
current folder, $HOME, the program's install prefix), and for the rest: a path that exists
here stays here; one that does not is remote when the pod's directory listing has it. Each
directory's listing is asked once and cached, so a miss costs no round trip after the first.

How a remote file reaches the program: `file.open` returns its stat and the first MiB in one
round trip. A file that fits is a sealed memfd; a larger one is written chunk by chunk (a few
chunks in flight) into an unlinked O_TMPFILE file in the temporary directory, so it never sits
whole in memory and the program still gets a seekable, mmap-able, fstat-able regular file.
The program's open returns once the file is complete: a pipe would start sooner but breaks
seek, mmap and fstat's size, which runtimes rely on. A remote directory becomes a directory of
empty entries under the spool folder (listing works; opening an entry is asked again by path).
Stats are emulated: the agent's stat is written into the program's `struct stat`/`statx`.

The supervisor thread decides what it can at once (local: CONTINUE); anything that needs the
agent is finished on the event loop, which answers the notification itself.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import os
import re
import shutil
import stat
import struct
import tempfile
from dataclasses import dataclass
from enum import Enum
from typing import Any

from podside.errors import PodsideError
from podside.layer import seccomp
from podside_agent.peer import Peer, RequestFailed
from podside_protocol import files as messages

log = logging.getLogger(__name__)

ALWAYS_LOCAL = (
    r"^/(usr|lib|lib32|lib64|libx32|bin|sbin|boot|proc|sys|dev|run|tmp|var/tmp|var/cache|"
    r"var/lib|snap|nix|opt/hostedtoolcache)(/|$)"
)
_IN_FLIGHT = 4
_F_ADD_SEALS = 1033
_SEALS = 0x0001 | 0x0002 | 0x0004 | 0x0008
_O_TMPFILE = 0o20200000
_R_OK, _W_OK, _X_OK = 4, 2, 1


class Place(Enum):
    LOCAL = "local"
    REMOTE = "remote"
    PROBE = "probe"  # here if it exists here, else remote if the pod has it


class PathPolicy:
    def __init__(self, remote: list[str], local: list[str], local_roots: list[str]) -> None:
        self._local = _compile(local, "--fs-local")
        self._remote = _compile(remote, "--fs-remote")
        roots = [re.escape(root.rstrip("/")) for root in local_roots if root and root != "/"]
        always = ALWAYS_LOCAL + "".join(f"|^{root}(/|$)" for root in roots)
        self._always_local = re.compile(always)

    def place(self, path: str) -> Place:
        if self._local is not None and self._local.search(path):
            return Place.LOCAL
        if self._remote is not None and self._remote.search(path):
            return Place.REMOTE
        if self._always_local.search(path):
            return Place.LOCAL
        return Place.PROBE


def _compile(patterns: list[str], flag: str) -> re.Pattern[str] | None:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as error:
            raise PodsideError(
                f"{flag} {pattern!r}: not a regular expression ({error})", 2
            ) from None
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)) if patterns else None


@dataclass(slots=True)
class StatCall:
    """A stat-like call to answer: `kind` is stat, statx or access; `argument` the program's
    buffer address (stat, statx) or the access mode."""

    kind: str
    follow: bool
    argument: int


class RemoteFiles:
    def __init__(
        self,
        peer: Peer,
        loop: asyncio.AbstractEventLoop,
        listener: seccomp.Listener,
        policy: PathPolicy,
    ) -> None:
        self._peer = peer
        self._loop = loop
        self._listener = listener
        self._policy = policy
        self._listings: dict[str, frozenset[str]] = {}
        self._spool = tempfile.mkdtemp(prefix="podside-fs-")
        self._served_dirs: dict[str, str] = {}  # spool directory -> remote path
        self._tasks: set[asyncio.Task[None]] = set()

    # --- in the supervisor thread ----------------------------------------------------------

    def is_remote(self, path: str) -> bool | None:
        """True or False when known now; None when the pod's listing must be asked first."""
        place = self._policy.place(path)
        if place is not Place.PROBE:
            return place is Place.REMOTE
        if os.path.lexists(path):
            return False
        parent, name = os.path.split(path)
        names = self._listings.get(parent)
        if names is None:
            return None
        return name in names

    def remote_path(self, path: str) -> str:
        """A path inside a directory we served stands for the same path in the pod."""
        for spool, remote in self._served_dirs.items():
            if path == spool or path.startswith(spool + "/"):
                return remote + path[len(spool) :]
        return path

    def open_later(self, note_id: int, path: str, cloexec: bool) -> None:
        self._loop.call_soon_threadsafe(self._start, self._open(note_id, path, cloexec))

    def stat_later(self, note_id: int, tid: int, path: str, call: StatCall) -> None:
        self._loop.call_soon_threadsafe(self._start, self._stat(note_id, tid, path, call))

    # --- on the event loop -----------------------------------------------------------------

    def _start(self, coroutine: Any) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _decide(self, path: str) -> bool:
        known = self.is_remote(path)
        if known is not None:
            return known
        parent, name = os.path.split(path)
        try:
            answer = await self._peer.request(messages.LIST, {"path": parent})
            names = frozenset(str(entry) for entry in answer.get("names", []))
        except RequestFailed:
            names = frozenset()  # not a directory in the pod: nothing under it is remote
        self._listings[parent] = names
        return name in names

    async def _open(self, note_id: int, path: str, cloexec: bool) -> None:
        listener = self._listener
        try:
            if not await self._decide(path):
                listener.allow(note_id)
                return
            try:
                answer = await self._peer.request(messages.OPEN, {"path": path})
            except RequestFailed as failure:
                listener.respond(note_id, error=failure.errno or errno.EIO)
                return
            fd = await self._materialize(path, answer)
            try:
                if listener.is_valid(note_id):
                    listener.respond_with_fd(note_id, fd, cloexec=cloexec)
            finally:
                os.close(fd)
        except Exception as error:
            log.warning("serving %s from the pod failed: %r", path, error)
            listener.respond(note_id, error=errno.EIO)

    async def _materialize(self, path: str, answer: dict[str, Any]) -> int:
        fields = answer["stat"]
        if stat.S_ISDIR(fields["mode"]):
            folder = tempfile.mkdtemp(dir=self._spool)
            for name, is_dir in answer.get("entries", []):
                if is_dir:
                    os.mkdir(os.path.join(folder, name))
                else:
                    os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_WRONLY, 0o644))
            self._served_dirs[folder] = path
            return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        first: bytes = answer.get("data", b"")
        if len(first) < messages.CHUNK:
            fd = os.memfd_create(
                "podside-fs" + path.replace("/", "-")[:200], os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
            )
            try:
                os.write(fd, first)
                fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
                return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
            finally:
                os.close(fd)
        spool = os.open(self._spool, _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o400)
        try:
            os.pwrite(spool, first, 0)
            await self._fill(path, spool, len(first))
            return os.open(f"/proc/self/fd/{spool}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(spool)

    async def _fill(self, path: str, fd: int, offset: int) -> None:
        """The rest of a large file, a few chunks in flight, each written where it belongs."""
        chunk = messages.CHUNK
        while True:
            offsets = [offset + index * chunk for index in range(_IN_FLIGHT)]
            answers = await asyncio.gather(
                *(
                    self._peer.request(
                        messages.READ_CHUNK, {"path": path, "offset": at, "length": chunk}
                    )
                    for at in offsets
                )
            )
            for at, answer in zip(offsets, answers, strict=True):
                data: bytes = answer["data"]
                if data:
                    os.pwrite(fd, data, at)
                if len(data) < chunk:
                    os.ftruncate(fd, at + len(data))
                    return
            offset = offsets[-1] + chunk

    async def _stat(self, note_id: int, tid: int, path: str, call: StatCall) -> None:
        listener = self._listener
        try:
            if not await self._decide(path):
                listener.allow(note_id)
                return
            try:
                answer = await self._peer.request(
                    messages.STAT, {"path": path, "follow": call.follow}
                )
            except RequestFailed as failure:
                listener.respond(note_id, error=failure.errno or errno.EIO)
                return
            fields = answer["stat"]
            if not listener.is_valid(note_id):
                return
            if call.kind == "access":
                listener.respond(note_id, error=_access_error(fields, call.argument))
                return
            packed = pack_statx(fields) if call.kind == "statx" else pack_stat(fields)
            seccomp.write_memory(tid, call.argument, packed)
            listener.respond(note_id, value=0)
        except OSError as error:
            listener.respond(note_id, error=error.errno or errno.EFAULT)
        except Exception as error:
            log.warning("stat of %s in the pod failed: %r", path, error)
            listener.respond(note_id, error=errno.EIO)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        shutil.rmtree(self._spool, ignore_errors=True)


def _access_error(fields: dict[str, int], mode: int) -> int:
    if mode & _W_OK:
        return errno.EROFS  # --fs read: the pod's files are read-only for the program
    if mode & _X_OK and not fields["mode"] & 0o111 and not stat.S_ISDIR(fields["mode"]):
        return errno.EACCES
    return 0


def _split_ns(value: int) -> tuple[int, int]:
    return value // 1_000_000_000, value % 1_000_000_000


def pack_stat(fields: dict[str, int]) -> bytes:
    """`struct stat` as the kernel writes it for this architecture."""
    atime, atime_ns = _split_ns(fields["atime_ns"])
    mtime, mtime_ns = _split_ns(fields["mtime_ns"])
    ctime, ctime_ns = _split_ns(fields["ctime_ns"])
    if seccomp.MACHINE == "x86_64":
        return struct.pack(
            "=QQQIIIiQqqqqqqqqq24x",
            fields["dev"],
            fields["ino"],
            fields["nlink"],
            fields["mode"],
            fields["uid"],
            fields["gid"],
            0,
            0,
            fields["size"],
            fields["blksize"],
            fields["blocks"],
            atime,
            atime_ns,
            mtime,
            mtime_ns,
            ctime,
            ctime_ns,
        )
    return struct.pack(  # the generic layout (aarch64)
        "=QQIIIIQQqiiqqQqQqQ8x",
        fields["dev"],
        fields["ino"],
        fields["mode"],
        fields["nlink"],
        fields["uid"],
        fields["gid"],
        0,
        0,
        fields["size"],
        fields["blksize"],
        0,
        fields["blocks"],
        atime,
        atime_ns,
        mtime,
        mtime_ns,
        ctime,
        ctime_ns,
    )


_STATX_BASIC_STATS = 0x7FF


def pack_statx(fields: dict[str, int]) -> bytes:
    """`struct statx` (256 bytes, the same on every architecture)."""

    def timestamp(total_ns: int) -> bytes:
        seconds, nanoseconds = _split_ns(total_ns)
        return struct.pack("=qIi", seconds, nanoseconds, 0)

    dev = fields["dev"]
    head = struct.pack(
        "=IIQIIIHHQQQQ",
        _STATX_BASIC_STATS,
        fields["blksize"],
        0,
        fields["nlink"],
        fields["uid"],
        fields["gid"],
        fields["mode"],
        0,
        fields["ino"],
        fields["size"],
        fields["blocks"],
        0,
    )
    times = b"".join(
        timestamp(fields[key]) for key in ("atime_ns", "ctime_ns", "ctime_ns", "mtime_ns")
    )
    devices = struct.pack("=IIII", 0, 0, os.major(dev), os.minor(dev))
    packed = head + times + devices
    return packed + bytes(256 - len(packed))
