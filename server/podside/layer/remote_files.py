"""--fs read|write: the program's opens and stats of remote paths are answered with the pod's files.

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

With --fs write, an open for writing of a remote path (or a new file in a remote folder) is
done in the pod first and then served as a copy written back on close (`written_files`);
unlink, rmdir, mkdir and rename of remote paths are done by the agent, and a rename between
this machine and the pod is EXDEV, as between two file systems. With --fs read such opens are
EROFS.

The supervisor thread decides what it can at once (local: CONTINUE); anything that needs the
agent is finished on the event loop, which answers the notification itself.
"""

from __future__ import annotations

import asyncio
import errno
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

from podside.layer import seccomp
from podside.layer.local_copies import LocalCopies
from podside.layer.written_files import WrittenFiles, merged_stat
from podside_agent.peer import Peer, RequestFailed
from podside_agent.procfs import status_fields
from podside_protocol import files as messages

log = logging.getLogger(__name__)

ALWAYS_LOCAL = (
    r"^/(usr|lib|lib32|lib64|libx32|bin|sbin|boot|proc|sys|dev|run|tmp|var/tmp|var/cache|"
    r"var/lib|snap|nix|opt/hostedtoolcache)(/|$)"
)
_IN_FLIGHT = 4
_R_OK, _W_OK, _X_OK = 4, 2, 1
_WRITING = os.O_ACCMODE | os.O_CREAT | os.O_TRUNC


class Place(Enum):
    LOCAL = "local"
    REMOTE = "remote"
    PROBE = "probe"  # here if it exists here, else remote if the pod has it


class PathPolicy:
    def __init__(self, remote: list[str], local: list[str], local_roots: list[str]) -> None:
        self._local = _compile(local)
        self._remote = _compile(remote)
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


def _compile(patterns: list[str]) -> re.Pattern[str] | None:
    """One regex of `patterns` (each checked by `exec_values.path_regex` already)."""
    return re.compile("|".join(f"(?:{pattern})" for pattern in patterns)) if patterns else None


def is_writing(flags: int) -> bool:
    return bool(flags & _WRITING)


@dataclass(slots=True)
class OpenCall:
    """An open to answer: the program's flags, its mode (creating) and its umask's thread."""

    tid: int
    flags: int
    mode: int


@dataclass(slots=True)
class Change:
    """unlink, rmdir, mkdir, rename (`to`: its target) or chdir of a remote path."""

    kind: str
    tid: int
    mode: int = 0
    to: str = ""
    flags: int = 0


@dataclass(slots=True)
class StatCall:
    """A stat-like call to answer: `kind` is stat, statx, access, getxattr, listxattr or
    readlink; `argument` the program's buffer address (stat, statx, readlink) or the access
    mode; `size` readlink's buffer size."""

    kind: str
    follow: bool
    argument: int
    size: int = 0


class RemoteFiles:
    def __init__(
        self,
        peer: Peer,
        loop: asyncio.AbstractEventLoop,
        listener: seccomp.Listener,
        policy: PathPolicy,
        *,
        writable: bool = False,
    ) -> None:
        self._peer = peer
        self._loop = loop
        self._listener = listener
        self._policy = policy
        self.writable = writable
        self._listings: dict[str, frozenset[str]] = {}
        self._spool = tempfile.mkdtemp(prefix="podside-fs-")
        self._served_dirs: dict[str, str] = {}  # spool directory -> remote path
        self._tasks: set[asyncio.Task[None]] = set()
        self._written = WrittenFiles(peer, loop, self._spool) if writable else None
        self._chdir_refused: set[str] = set()
        self._explained: set[str] = set()
        self._copies = LocalCopies(self._spool, loop)

    # --- in the supervisor thread ----------------------------------------------------------

    def is_remote(self, path: str, creating: bool = False) -> bool | None:
        """True or False when known now; None when the pod's listing must be asked first.
        `creating`: a path that exists nowhere yet is where its folder is."""
        place = self._place(path, creating)
        return None if isinstance(place, str) else place

    def _place(self, path: str, creating: bool) -> bool | str:
        """Remote or not, or the folder whose listing in the pod decides it."""
        path = os.path.normpath(path)  # "folder/" names the folder
        place = self._policy.place(path)
        if place is not Place.PROBE:
            return place is Place.REMOTE
        if os.path.lexists(path):
            return False
        parent, name = os.path.split(path)
        names = self._listings.get(parent)
        if names is None:
            return parent
        if name in names:
            return True
        if not creating or parent == path:
            return False
        return self._place(parent, False)

    def remote_path(self, path: str) -> str:
        """A path inside a directory we served stands for the same path in the pod."""
        for spool, remote in self._served_dirs.items():
            if path == spool or path.startswith(spool + "/"):
                return remote + path[len(spool) :]
        return path

    def open_later(self, note_id: int, path: str, call: OpenCall) -> None:
        self._loop.call_soon_threadsafe(self._start, note_id, self._open(note_id, path, call))

    def change_later(self, note_id: int, path: str, change: Change) -> None:
        self._loop.call_soon_threadsafe(self._start, note_id, self._change(note_id, path, change))

    def stat_later(self, note_id: int, tid: int, path: str, call: StatCall) -> None:
        self._loop.call_soon_threadsafe(self._start, note_id, self._stat(note_id, tid, path, call))

    # --- on the event loop -----------------------------------------------------------------

    def _start(self, note_id: int, coroutine: Any) -> None:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)

        def ended(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            # Each coroutine answers on every way it returns; one that ended otherwise
            # (cancelled, a BaseException) has not, and its program thread must not wait on.
            if task.cancelled():
                self._listener.respond(note_id, error=errno.EINTR)
            elif task.exception() is not None:
                log.warning("a remote file call failed: %r", task.exception())
                self._listener.respond(note_id, error=errno.EIO)

        task.add_done_callback(ended)

    async def _decide(self, path: str, creating: bool = False) -> bool:
        if self._written is not None:
            await self._written.settled()  # the program's earlier closes are in the pod first
        while True:
            place = self._place(path, creating)
            if not isinstance(place, str):
                return place
            try:
                answer = await self._peer.request(*messages.List(place).message())
                names = frozenset(str(entry) for entry in answer.get("names", []))
            except RequestFailed:
                names = frozenset()  # not a directory in the pod: nothing under it is remote
            self._listings[place] = names

    def _listed(self, path: str, present: bool) -> None:
        """Keep the cached listing of `path`'s folder true after the program changed it."""
        parent, name = os.path.split(path)
        names = self._listings.get(parent)
        if names is not None:
            self._listings[parent] = names | {name} if present else names - {name}
        if not present:
            for folder in [
                key for key in self._listings if key == path or key.startswith(path + "/")
            ]:
                del self._listings[folder]

    async def _open(self, note_id: int, path: str, call: OpenCall) -> None:
        listener = self._listener
        writing = is_writing(call.flags)
        try:
            if not await self._decide(path, creating=bool(call.flags & os.O_CREAT)):
                listener.allow(note_id)
                return
            cloexec = bool(call.flags & os.O_CLOEXEC)
            if writing and self._written is None:
                listener.respond(note_id, error=errno.EROFS)  # --fs read
                return
            if self._written is not None and (writing or self._written.get(path)):
                fd = await self._open_copy(path, call)
            else:
                answer = await self._peer.request(*messages.Open(path).message())
                fd = await self._materialize(path, answer)
            try:
                if listener.is_valid(note_id):
                    listener.respond_with_fd(note_id, fd, cloexec=cloexec)
            finally:
                os.close(fd)
        except RequestFailed as failure:
            self._explain(path, failure)
            listener.respond(note_id, error=failure.errno or errno.EIO)
        except OSError as error:
            listener.respond(note_id, error=error.errno or errno.EIO)
        except Exception as error:
            log.warning("serving %s from the pod failed: %r", path, error)
            listener.respond(note_id, error=errno.EIO)

    async def _open_copy(self, path: str, call: OpenCall) -> int:
        """--fs write: a descriptor of the program's copy of `path`, opened in the pod first."""
        written = self._written
        assert written is not None
        copy = written.get(path)
        if copy is not None:
            if call.flags & os.O_CREAT and call.flags & os.O_EXCL:
                raise OSError(errno.EEXIST, path)
            return written.open(copy, call.flags)
        mode = call.mode & ~_umask(call.tid) & 0o7777
        flags = call.flags & ~os.O_CLOEXEC
        answer = await self._peer.request(*messages.CheckWrite(path, flags).message())
        created = bool(answer.get("created"))
        pod_stat: dict[str, Any] = answer.get("stat") or _new_file_stat(answer, mode)
        if not stat.S_ISREG(pod_stat["mode"]):
            raise OSError(errno.EOPNOTSUPP, f"{path}: only regular files are written in the pod")
        fd, spool = written.new_copy()
        try:
            first: bytes = answer.get("data", b"")
            os.pwrite(fd, first, 0)
            if len(first) == messages.CHUNK:
                await self._fill(path, fd, len(first))
        except BaseException:
            os.close(fd)
            os.unlink(spool)
            raise
        if created:
            self._listed(path, True)
        # Another open of the same path may have made a copy while this one was filling.
        copy = written.get(path)
        if copy is not None:
            os.close(fd)
            os.unlink(spool)
        else:
            copy = written.track(
                path,
                fd,
                spool,
                pod_stat,
                mode=mode,
                exclusive=bool(flags & os.O_CREAT and flags & os.O_EXCL),
                in_pod=not created and not flags & os.O_TRUNC,
            )
        return written.open(copy, call.flags & ~os.O_TRUNC)

    def _explain(self, path: str, failure: RequestFailed) -> None:
        """One line when the agent's refusal says more than its errno (a FIFO, or a file that
        --fs write cannot replace), once per path: the program only sees the errno."""
        plain = os.strerror(failure.errno) if failure.errno else ""
        if str(failure) != plain and path not in self._explained:
            self._explained.add(path)
            log.warning("%s", failure)

    async def _change(self, note_id: int, path: str, change: Change) -> None:
        """unlink, rmdir, mkdir or rename of a remote path: by the agent, or EROFS (--fs read)."""
        listener = self._listener
        try:
            remote = await self._decide(path, creating=change.kind == "mkdir")
            if change.kind == "rename" and remote != await self._decide(change.to, creating=True):
                listener.respond(note_id, error=errno.EXDEV)  # between here and the pod
                return
            if not remote:
                listener.allow(note_id)
                return
            if change.kind == "chdir":
                listener.respond(note_id, error=await self._chdir_error(path))
                return
            if self._written is None:
                listener.respond(note_id, error=errno.EROFS)  # --fs read
                return
            if change.kind == "rename":
                rename = messages.Rename(path, change.to, change.flags)
                await self._peer.request(*rename.message())
                self._listed(path, False)
                self._listed(change.to, True)
                self._written.renamed(path, change.to)
            elif change.kind == "mkdir":
                mode = change.mode & ~_umask(change.tid) & 0o7777
                await self._peer.request(*messages.Mkdir(path, mode).message())
                self._listed(path, True)
                self._listings[path] = frozenset()
            else:
                directory = change.kind == "rmdir"
                await self._peer.request(*messages.Unlink(path, directory).message())
                self._listed(path, False)
                self._written.unlinked(path)
            listener.respond(note_id, value=0)
        except RequestFailed as failure:
            listener.respond(note_id, error=failure.errno or errno.EIO)
        except Exception as error:
            log.warning("%s of %s in the pod failed: %r", change.kind, path, error)
            listener.respond(note_id, error=errno.EIO)

    async def _materialize(self, path: str, answer: dict[str, Any]) -> int:
        fields = answer["stat"]
        if stat.S_ISDIR(fields["mode"]):
            folder = tempfile.mkdtemp(dir=self._spool)
            entries = answer.get("entries", [])
            if self._written is not None:  # and files created here, not yet in the pod
                listed = {name for name, _is_dir in entries}
                entries += [[name, False] for name in self._written.names_in(path) - listed]
            for name, is_dir in entries:
                if is_dir:
                    os.mkdir(os.path.join(folder, name))
                else:
                    os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_WRONLY, 0o644))
            # Copied, not changed in place: the supervisor thread iterates it (remote_path).
            self._served_dirs = {**self._served_dirs, folder: path}
            return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return await self._copies.open(path, answer, self._fill)

    async def _fill(self, path: str, fd: int, offset: int) -> None:
        """The rest of a large file, a few chunks in flight, each written where it belongs."""
        chunk = messages.CHUNK
        while True:
            offsets = [offset + index * chunk for index in range(_IN_FLIGHT)]
            answers = await asyncio.gather(
                *(
                    self._peer.request(*messages.ReadChunk(path, at, chunk).message())
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

    async def _chdir_error(self, path: str) -> int:
        """A process's working folder is the kernel's, and only a folder on this machine can
        be it: chdir into a remote folder fails with EOPNOTSUPP (said once per folder); a
        remote path that is no folder fails as chdir would."""
        try:
            answer = await self._peer.request(*messages.Stat(path).message())
        except RequestFailed as failure:
            return failure.errno or errno.EIO
        if not stat.S_ISDIR(answer["stat"]["mode"]):
            return errno.ENOTDIR
        if path not in self._chdir_refused:
            self._chdir_refused.add(path)
            log.warning(
                "the program's chdir into %s, a folder of the pod, fails (EOPNOTSUPP): "
                "--fs cannot move a working folder into the pod; use absolute paths",
                path,
            )
        return errno.EOPNOTSUPP

    async def _stat(self, note_id: int, tid: int, path: str, call: StatCall) -> None:
        listener = self._listener
        try:
            if not await self._decide(path):
                listener.allow(note_id)
                return
            copy = self._written.get(path) if self._written is not None else None
            try:
                if call.kind == "access" and self._written is not None:
                    # --fs write: the pod answers, with the target's permissions and mounts.
                    await self._peer.request(*messages.Access(path, call.argument).message())
                    listener.respond(note_id, value=0)
                    return
                if call.kind == "readlink":
                    await self._readlink(note_id, tid, path, call)
                    return
                answer = await self._peer.request(*messages.Stat(path, call.follow).message())
            except RequestFailed as failure:
                if copy is None or failure.errno != errno.ENOENT:
                    listener.respond(note_id, error=failure.errno or errno.EIO)
                    return
                # A file the program created: in the pod once it is first closed.
                if call.kind == "access":
                    listener.respond(note_id, value=0)
                    return
                answer = {"stat": copy.pod_stat}
            fields = answer["stat"]
            if copy is not None and stat.S_ISREG(fields["mode"]):
                fields = merged_stat(fields, copy)
            elif stat.S_ISREG(fields["mode"]) and call.kind in ("stat", "statx"):
                fields = self._copies.identity(fields)  # what its open will hand out
            if not listener.is_valid(note_id):
                return
            if call.kind == "access":
                listener.respond(note_id, error=_access_error(fields, call.argument))
                return
            if call.kind in ("getxattr", "listxattr"):
                # The pod's extended attributes are not carried: the file has none here.
                listener.respond(note_id, error=errno.ENODATA if call.kind == "getxattr" else 0)
                return
            packed = pack_statx(fields) if call.kind == "statx" else pack_stat(fields)
            seccomp.write_memory(tid, call.argument, packed)
            listener.respond(note_id, value=0)
        except OSError as error:
            listener.respond(note_id, error=error.errno or errno.EFAULT)
        except Exception as error:
            log.warning("stat of %s in the pod failed: %r", path, error)
            listener.respond(note_id, error=errno.EIO)

    async def _readlink(self, note_id: int, tid: int, path: str, call: StatCall) -> None:
        """The pod's symlink text, cut to the program's buffer as readlink(2) cuts it."""
        if call.size <= 0:
            self._listener.respond(note_id, error=errno.EINVAL)
            return
        try:
            answer = await self._peer.request(*messages.Readlink(path).message())
        except RequestFailed as failure:
            # An agent older than file.readlink: "not a link", as readlink(2) says of a file,
            # so realpath goes on and the pod resolves the link at open.
            code = errno.EINVAL if failure.errno == errno.ENOSYS else failure.errno or errno.EIO
            self._listener.respond(note_id, error=code)
            return
        target = bytes(answer["target"])[: call.size]
        if not self._listener.is_valid(note_id):
            return
        seccomp.write_memory(tid, call.argument, target)
        self._listener.respond(note_id, value=len(target))

    async def finish(self) -> None:
        """The program has exited: what it wrote and left open still reaches the pod."""
        if self._written is not None:
            await self._written.finish()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._written is not None:
            self._written.close()
        self._copies.close()
        shutil.rmtree(self._spool, ignore_errors=True)


def _new_file_stat(answer: dict[str, Any], mode: int) -> dict[str, Any]:
    """The stat a file the program creates will have in the pod, until it is there."""
    return {
        "mode": stat.S_IFREG | mode,
        "size": 0,
        "ino": 0,
        "dev": 0,
        "nlink": 1,
        "uid": answer.get("uid", 0),
        "gid": answer.get("gid", 0),
        "blocks": 0,
        "blksize": 4096,
        "atime_ns": 0,
        "mtime_ns": 0,
        "ctime_ns": 0,
    }


def _umask(tid: int) -> int:
    """The umask of the program's thread `tid` (creating in the pod applies it as here)."""
    try:
        umask = status_fields(tid, ("Umask",)).get("Umask")
    except OSError:
        umask = None
    return int(umask[0], 8) if umask else 0o022


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
