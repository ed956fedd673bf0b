"""--fs read|write: one local inode per version of a pod's regular file, so stat and open agree.

A program that stats a path and then opens it (cp, rsync, shutil, tar, ...) compares the two:
if st_dev/st_ino of the stat differ from the fstat of the descriptor it got, the file "was
replaced". fstat is the kernel's (podside does not stop it), so the stat podside emulates must
name the very inode the open hands out. Each version of a remote file — the pod's (dev, ino)
with its size, mtime, ctime and mode — therefore gets one local inode, made when it is first
stat'ed or opened: empty until an open fills it, a memfd for a small file (sealed once full) or
an unlinked O_TMPFILE file in the spool folder for a larger one. Its mode and times are set to
the pod's (uid and gid cannot be without privileges); every open of that version gets a new
open file description of it (its own offset) through /proc/self/fd. A version that changed in
the pod is a new inode, as a replaced file would be.

The copies are kept in a small LRU (count and filled bytes bounded). Dropping one only closes
podside's descriptor: the program's descriptors keep the inode, and a later stat makes a new one.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import stat
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from podside_protocol import files as messages

_F_ADD_SEALS = 1033
_SEALS = 0x0001 | 0x0002 | 0x0004 | 0x0008  # seal, shrink, grow, write
_O_TMPFILE = 0o20200000
_MAX_COPIES = 512
_MAX_BYTES = 64 * 1024 * 1024

Fill = Callable[[str, int, int], Awaitable[None]]  # (pod path, fd, offset): the rest of a file


@dataclass(slots=True, eq=False)
class LocalCopy:
    key: tuple[int, int]  # the pod's (dev, ino)
    fd: int  # podside's, read-write, open while the copy is cached or in use
    version: tuple[int, int, int, int]  # the pod's size, mtime_ns, ctime_ns, mode
    dev: int
    ino: int
    sealable: bool  # a memfd
    filled: asyncio.Task[None] | None = None
    ctime_ns: int = 0  # the copy's own ctime once full: any later change means tampering
    size: int = 0
    users: int = 0  # fills and opens between an await and their reopen
    dropped: bool = False


def _version(fields: dict[str, Any]) -> tuple[int, int, int, int]:
    return fields["size"], fields["mtime_ns"], fields["ctime_ns"], fields["mode"]


def _local_mode(mode: int) -> int:
    """The pod's permission bits, without set-uid/set-gid (never on a copy here); podside
    must still be able to reopen it for reading when it is not root."""
    bits = mode & 0o1777
    if os.geteuid() != 0:
        bits |= stat.S_IRUSR
    return bits


class LocalCopies:
    def __init__(self, spool: str, loop: asyncio.AbstractEventLoop) -> None:
        self._spool = spool
        self._loop = loop
        self._copies: OrderedDict[tuple[int, int], LocalCopy] = OrderedDict()
        self._bytes = 0

    def identity(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The pod's stat of a regular file, with the dev and ino its open will have here."""
        copy = self._get(fields)
        return {**fields, "dev": copy.dev, "ino": copy.ino}

    async def open(self, path: str, answer: dict[str, Any], fill: Fill) -> int:
        """A new read-only description of the copy of the file `file.open` answered."""
        copy = self._get(answer["stat"])
        copy.users += 1
        try:
            if copy.filled is None:
                copy.filled = self._loop.create_task(self._fill(copy, path, answer, fill))
            await asyncio.shield(copy.filled)
            return os.open(f"/proc/self/fd/{copy.fd}", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            self._release(copy)

    def close(self) -> None:
        for copy in list(self._copies.values()):
            self._drop(copy)

    # --- the cache ------------------------------------------------------------------------

    def _get(self, fields: dict[str, Any]) -> LocalCopy:
        key = (fields["dev"], fields["ino"])
        version = _version(fields)
        copy = self._copies.get(key)
        if copy is not None and copy.version == version and not self._tampered(copy):
            self._copies.move_to_end(key)
            return copy
        if copy is not None:
            self._drop(copy)
        copy = self._new(key, version)
        self._copies[key] = copy
        self._evict()
        return copy

    def _new(self, key: tuple[int, int], version: tuple[int, int, int, int]) -> LocalCopy:
        size, _mtime, _ctime, mode = version
        sealable = size < messages.CHUNK
        if sealable:
            fd = os.memfd_create("podside-fs", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        else:
            fd = os.open(self._spool, _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, _local_mode(mode))
            here = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        return LocalCopy(key, fd, version, here.st_dev, here.st_ino, sealable)

    def _tampered(self, copy: LocalCopy) -> bool:
        """A full copy whose inode changed since (the program reopened its descriptor for
        writing through /proc): not the pod's bytes any more."""
        if not copy.ctime_ns or copy.users:
            return False
        return os.fstat(copy.fd).st_ctime_ns != copy.ctime_ns

    def _evict(self) -> None:
        while len(self._copies) > 1 and (
            len(self._copies) > _MAX_COPIES or self._bytes > _MAX_BYTES
        ):
            self._drop(next(iter(self._copies.values())))

    def _drop(self, copy: LocalCopy) -> None:
        if self._copies.get(copy.key) is copy:
            del self._copies[copy.key]
            self._bytes -= copy.size
        copy.dropped = True
        if copy.users == 0:
            os.close(copy.fd)
            copy.fd = -1

    def _release(self, copy: LocalCopy) -> None:
        copy.users -= 1
        if copy.dropped and copy.users == 0 and copy.fd >= 0:
            os.close(copy.fd)
            copy.fd = -1

    async def _fill(self, copy: LocalCopy, path: str, answer: dict[str, Any], fill: Fill) -> None:
        copy.users += 1
        try:
            first: bytes = answer.get("data", b"")
            os.pwrite(copy.fd, first, 0)
            if len(first) == messages.CHUNK:
                await fill(path, copy.fd, len(first))
            if copy.sealable:
                fcntl.fcntl(copy.fd, _F_ADD_SEALS, _SEALS)
            fields = answer["stat"]
            os.utime(copy.fd, ns=(fields["atime_ns"], fields["mtime_ns"]))
            here = os.fstat(copy.fd)
            copy.ctime_ns = here.st_ctime_ns
            if not copy.dropped:
                copy.size = here.st_size
                self._bytes += copy.size
        except BaseException:
            copy.filled = None  # the next open tries again
            if not copy.dropped:
                self._drop(copy)
            raise
        finally:
            self._release(copy)
        self._evict()
