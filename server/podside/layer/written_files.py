"""--fs write: the program's copy of a pod file it opened for writing, written back when closed.

At the program's open the agent checks what the open would do in the pod (the pod's errno:
EACCES, EROFS, ENOENT, EEXIST, EISDIR) and changes nothing. The program then gets a
descriptor of a copy here, a regular file in the spool folder holding the pod's bytes (none
after O_TRUNC, or for a new file): reads, writes, seeks, appends, mmap and fstat behave as on
any file. When the last descriptor of one of those opens is released (close, exit, munmap),
the kernel's inotify reports IN_CLOSE_WRITE for the copy and the whole copy is written back
(skipped when it did not change): into a temporary file beside the pod's file, which the
agent then renames over it with the old file's mode and owner. The pod's file is the old
content until that rename and the new content after it, whatever dies in between — podside,
the program, the connection (the agent removes the temporary file of a client that left).
Every later remote call of the program first waits for the write-backs of its earlier
closes, so what it reads back, stats or renames is what it wrote.

While the program holds a copy open, other opens of the same path share the copy, so two
descriptors see each other's writes as on a real file system. The copy is dropped once its
last open is closed and written back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any

from podside_agent.peer import Peer, RequestFailed
from podside_protocol import files as messages

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_IN_CLOSE_WRITE, _IN_CLOSE_NOWRITE, _IN_IGNORED = 0x8, 0x10, 0x8000
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_EVENT = struct.Struct("=iIII")  # struct inotify_event without its name
_IN_FLIGHT = 4


@dataclass(slots=True, eq=False)
class Copy:
    path: str  # in the pod; follows the program's renames
    spool: str  # the copy's name here
    fd: int  # ours, to read the copy back; open until the copy is dropped
    watch: int
    pod_stat: dict[str, Any]  # the pod's stat at open (for a new file, what it will be)
    mode: int  # for a new file: the program's mode, its umask applied
    exclusive: bool  # O_EXCL: the first write-back must not replace a file made meanwhile
    opens: int = 0  # open file descriptions the program may still hold
    # (size, mtime, ctime) of the copy the pod has; None: the pod has yet to get it (a new
    # file, or one the program's open truncated)
    synced: tuple[int, int, int] | None = None
    unlinked: bool = False
    task: asyncio.Task[None] | None = None


class WrittenFiles:
    def __init__(self, peer: Peer, loop: asyncio.AbstractEventLoop, spool: str) -> None:
        self._peer = peer
        self._loop = loop
        self._spool = spool
        self._count = 0
        self._by_path: dict[str, Copy] = {}
        self._by_watch: dict[int, Copy] = {}
        self._running: set[asyncio.Task[None]] = set()
        self._inotify = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if self._inotify < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        loop.add_reader(self._inotify, self.collect)

    def get(self, path: str) -> Copy | None:
        return self._by_path.get(path)

    def names_in(self, folder: str) -> set[str]:
        """The names of the copies in `folder` (a pod path)."""
        return {name for parent, name in map(os.path.split, self._by_path) if parent == folder}

    def new_copy(self) -> tuple[int, str]:
        """A new empty copy file (fd, name) to fill before `track`."""
        self._count += 1
        name = os.path.join(self._spool, f"written-{self._count}")
        return os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), name

    def track(
        self,
        path: str,
        fd: int,
        spool: str,
        pod_stat: dict[str, Any],
        *,
        mode: int,
        exclusive: bool,
        in_pod: bool,
    ) -> Copy:
        """Watch a filled copy: from now on its closes are written back to `path`. `in_pod`:
        the pod's file already holds what the copy holds."""
        watch = _libc.inotify_add_watch(
            self._inotify, os.fsencode(spool), _IN_CLOSE_WRITE | _IN_CLOSE_NOWRITE
        )
        if watch < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_add_watch: {os.strerror(code)}")
        copy = Copy(path, spool, fd, watch, pod_stat, mode, exclusive)
        if in_pod:
            copy.synced = _state(fd)
        self._by_path[path] = copy
        self._by_watch[watch] = copy
        return copy

    def open(self, copy: Copy, flags: int) -> int:
        """A new descriptor of the copy for the program, with its access mode and O_APPEND."""
        access = flags & os.O_ACCMODE
        if flags & os.O_TRUNC and access != os.O_RDONLY:
            os.ftruncate(copy.fd, 0)
        fd = os.open(copy.spool, access | (flags & os.O_APPEND) | os.O_CLOEXEC)
        copy.opens += 1  # counted now: if the program never gets it, our close is its close
        return fd

    def renamed(self, old: str, new: str) -> None:
        for path, copy in list(self._by_path.items()):
            if path == old or path.startswith(old + "/"):
                del self._by_path[path]
                copy.path = new + path[len(old) :]
                self._by_path[copy.path] = copy

    def unlinked(self, path: str) -> None:
        copy = self._by_path.pop(path, None)
        if copy is not None:
            copy.unlinked = True  # the program keeps writing to a file the pod no longer has

    # --- closes and write-backs -----------------------------------------------------------

    def collect(self) -> None:
        """Read the closes the kernel reported and start their write-backs."""
        while True:
            try:
                raw = os.read(self._inotify, 64 * _EVENT.size)
            except BlockingIOError:
                return
            for offset in range(0, len(raw), _EVENT.size):
                watch, mask, _cookie, _length = _EVENT.unpack_from(raw, offset)
                copy = self._by_watch.get(watch)
                if copy is None or mask & _IN_IGNORED:
                    continue
                copy.opens -= 1
                if mask & _IN_CLOSE_WRITE or copy.opens <= 0:
                    task = self._loop.create_task(self._write_back(copy, copy.task))
                    copy.task = task
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)

    async def settled(self) -> None:
        """Return once every close the program made so far is in the pod."""
        self.collect()
        while self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _write_back(self, copy: Copy, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            state = _state(copy.fd)
            if state != copy.synced and not copy.unlinked:
                await self._send(copy, state[0])
                copy.synced = state
        except RequestFailed as failure:
            log.warning(
                "%s: writing the program's changes to the pod failed: %s", copy.path, failure
            )
        except Exception as error:
            log.warning("%s: writing the program's changes to the pod failed: %r", copy.path, error)
        if copy.opens <= 0 and copy.task is asyncio.current_task():
            self._drop(copy)

    async def _send(self, copy: Copy, size: int) -> None:
        """The whole copy into a temporary file beside the pod's, renamed over it at the end;
        abandoned (the temporary file removed) when any part fails."""
        replace = messages.Replace(copy.path, copy.mode, copy.exclusive)
        handle = (await self._peer.request(*replace.message()))["handle"]
        try:
            chunk = messages.CHUNK
            for start in range(0, size, chunk * _IN_FLIGHT):
                requests = [
                    self._peer.request(
                        *messages.Write(handle, at, os.pread(copy.fd, chunk, at)).message()
                    )
                    for at in range(start, min(size, start + chunk * _IN_FLIGHT), chunk)
                ]
                await asyncio.gather(*requests)
        except BaseException:
            with contextlib.suppress(RequestFailed, ConnectionError):
                await self._peer.request(*messages.Abort(handle).message())
            raise
        await self._peer.request(*messages.Commit(handle, size).message())
        copy.exclusive = False  # the file in the pod is now this copy's own

    def _drop(self, copy: Copy) -> None:
        self._by_watch.pop(copy.watch, None)
        if self._by_path.get(copy.path) is copy:
            del self._by_path[copy.path]
        _libc.inotify_rm_watch(self._inotify, copy.watch)
        os.close(copy.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(copy.spool)

    async def finish(self) -> None:
        """At the end of the session: the program is gone, so write back what it left open."""
        await self.settled()
        for copy in list(self._by_watch.values()):
            copy.opens = 0
            await self._write_back(copy, None)
            self._drop(copy)

    def close(self) -> None:
        self._loop.remove_reader(self._inotify)
        os.close(self._inotify)


def _state(fd: int) -> tuple[int, int, int]:
    result = os.fstat(fd)
    return result.st_size, result.st_mtime_ns, result.st_ctime_ns


def merged_stat(pod: dict[str, Any] | None, copy: Copy) -> dict[str, Any]:
    """The pod's stat of a file the program has open for writing (or, while the pod has yet
    to get it, the one taken at open), with the copy's identity, size and times (what it
    wrote is not in the pod until it closes the file; its descriptors are of the copy, so
    fstat of them names the copy's dev and ino)."""
    here = os.fstat(copy.fd)
    return {
        **(pod or copy.pod_stat),
        "dev": here.st_dev,
        "ino": here.st_ino,
        "size": here.st_size,
        "blocks": here.st_blocks,
        "mtime_ns": here.st_mtime_ns,
        "ctime_ns": here.st_ctime_ns,
    }
