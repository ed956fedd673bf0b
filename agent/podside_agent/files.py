"""Files as the target process sees them: opened inside its root with openat2(RESOLVE_IN_ROOT),
so the pod's symlinks (a ConfigMap's `..data` links, for one) resolve within the pod.

Answers for `--fs`: `file.open` (the stat and the first chunk, or a directory's names — one
round trip for most files), `file.chunk` (the rest of a large file, by offset), `file.stat`
and `file.list` (the names in a directory, which the layer caches to know what is remote).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import stat
import struct
from typing import Any

from podside_protocol import files as messages

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_SYS_OPENAT2 = 437
_RESOLVE_IN_ROOT = 0x10


def open_in_root(owner: int, path: str, flags: int) -> int:
    """Open `path` inside the root of process `owner`, symlinks resolved within that root."""
    if not path.startswith("/"):
        raise OSError(errno.EINVAL, f"not an absolute path: {path}")
    root = os.open(f"/proc/{owner}/root", os.O_PATH | os.O_DIRECTORY)
    try:
        # struct open_how { u64 flags; u64 mode; u64 resolve; }
        how = struct.pack("QQQ", flags | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT)
        result = _libc.syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_int(root),
            ctypes.c_char_p(path.lstrip("/").encode() or b"."),
            ctypes.c_char_p(how),
            ctypes.c_size_t(len(how)),
        )
        if result >= 0:
            return int(result)
        code = ctypes.get_errno()
        if code != errno.ENOSYS:
            raise OSError(code, os.strerror(code), path)
        return os.open(f"/proc/{owner}/root{path}", flags | os.O_CLOEXEC)
    finally:
        os.close(root)


def stat_fields(result: os.stat_result) -> dict[str, int]:
    return {
        "mode": result.st_mode,
        "size": result.st_size,
        "ino": result.st_ino,
        "dev": result.st_dev,
        "nlink": result.st_nlink,
        "uid": result.st_uid,
        "gid": result.st_gid,
        "blocks": result.st_blocks,
        "blksize": result.st_blksize,
        "atime_ns": result.st_atime_ns,
        "mtime_ns": result.st_mtime_ns,
        "ctime_ns": result.st_ctime_ns,
    }


def handle(owner: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    path = params.get("path")
    if not isinstance(path, str):
        raise OSError(errno.EINVAL, f"{method} needs a path")
    if method == messages.STAT:
        flags = os.O_PATH | (0 if params.get("follow", True) else os.O_NOFOLLOW)
        fd = open_in_root(owner, path, flags)
        try:
            return {"stat": stat_fields(os.fstat(fd))}
        finally:
            os.close(fd)
    if method == messages.LIST:
        fd = open_in_root(owner, path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return {"names": os.listdir(fd)}
        finally:
            os.close(fd)
    if method == messages.OPEN:
        fd = open_in_root(owner, path, os.O_RDONLY)
        try:
            fields = stat_fields(os.fstat(fd))
            if stat.S_ISDIR(fields["mode"]):
                entries = []
                for entry in os.scandir(fd):
                    entries.append([entry.name, entry.is_dir(follow_symlinks=False)])
                return {"stat": fields, "entries": entries}
            return {"stat": fields, "data": os.pread(fd, messages.CHUNK, 0)}
        finally:
            os.close(fd)
    if method == messages.READ_CHUNK:
        offset, length = params.get("offset"), params.get("length")
        if not isinstance(offset, int) or not isinstance(length, int) or offset < 0:
            raise OSError(errno.EINVAL, "file.chunk needs offset and length")
        fd = open_in_root(owner, path, os.O_RDONLY)
        try:
            return {"data": os.pread(fd, min(length, messages.CHUNK), offset)}
        finally:
            os.close(fd)
    raise OSError(errno.ENOSYS, f"unknown request {method!r}")
