"""Files as the target process sees them: opened inside its root with openat2(RESOLVE_IN_ROOT),
so the pod's symlinks (a ConfigMap's `..data` links, for one) resolve within the pod.

Answers for `--fs`: `file.open` (the stat and the first chunk, or a directory's names — one
round trip for most files), `file.chunk` (the rest of a large file, by offset), `file.stat`
and `file.list` (the names in a directory, which the layer caches to know what is remote).
For `--fs write`: `file.open` with the program's flags (so creating, truncating and the pod's
errors — EACCES, EROFS, ENOENT — happen at the program's open), `file.write` and
`file.truncate` (the program's copy written back when it closes it), `file.unlink`,
`file.mkdir`, `file.rename` and `file.access`.

Every path is resolved, and every check made, with the target's file-system credentials (its
fsuid, fsgid and groups, switched on this thread only around the call), so permissions are the
ones the pod's process has and files it creates belong to its user, not to the agent.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import stat
import struct
from collections.abc import Iterator
from typing import Any

from podside_protocol import files as messages

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_SYS_OPENAT2 = 437
_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}.get(os.uname().machine)
_SYS_FACCESSAT2 = 439
_RESOLVE_IN_ROOT = 0x10
_AT_EMPTY_PATH, _AT_EACCESS = 0x1000, 0x200
# The open flags a program's write may carry to the pod; anything else is this machine's
# business (O_CLOEXEC, O_NONBLOCK, ...) or not emulated.
_WRITE_FLAGS = (
    os.O_ACCMODE
    | os.O_CREAT
    | os.O_EXCL
    | os.O_TRUNC
    | os.O_APPEND
    | os.O_NOFOLLOW
    | os.O_DIRECTORY
)


def _credentials(owner: int) -> tuple[int, int, list[int]] | None:
    """The target's (fsuid, fsgid, groups), or None when they are the agent's own."""
    uid = gid = -1
    groups: list[int] = []
    with open(f"/proc/{owner}/status") as status:
        for line in status:
            if line.startswith("Uid:"):
                uid = int(line.split()[4])
            elif line.startswith("Gid:"):
                gid = int(line.split()[4])
            elif line.startswith("Groups:"):
                groups = [int(group) for group in line.split()[1:]]
    if os.geteuid() != 0 or (uid, gid, sorted(groups)) == (0, 0, sorted(os.getgroups())):
        return None
    return uid, gid, groups


@contextlib.contextmanager
def as_target(owner: int) -> Iterator[None]:
    """Run the body with the target's file-system credentials on this thread only.

    setfsuid/setfsgid are per thread, and so is the raw setgroups system call (glibc's wrapper
    would change every thread of the agent). A non-zero fsuid also clears the file-system
    capabilities (CAP_DAC_OVERRIDE, ...), which come back with fsuid 0.
    """
    credentials = _credentials(owner)
    if credentials is None or _SYS_SETGROUPS is None:
        yield
        return
    uid, gid, groups = credentials
    own_groups = os.getgroups()
    _set_groups(groups)
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    try:
        yield
    finally:
        _libc.setfsuid(0)
        _libc.setfsgid(os.getegid())
        _set_groups(own_groups)


def _set_groups(groups: list[int]) -> None:
    assert _SYS_SETGROUPS is not None
    array = (ctypes.c_uint * max(len(groups), 1))(*groups)
    if _libc.syscall(ctypes.c_long(_SYS_SETGROUPS), ctypes.c_size_t(len(groups)), array) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setgroups: {os.strerror(code)}")


def open_in_root(owner: int, path: str, flags: int, mode: int = 0) -> int:
    """Open `path` inside the root of process `owner`, symlinks resolved within that root."""
    if not path.startswith("/"):
        raise OSError(errno.EINVAL, f"not an absolute path: {path}")
    root = os.open(f"/proc/{owner}/root", os.O_PATH | os.O_DIRECTORY)
    try:
        # struct open_how { u64 flags; u64 mode; u64 resolve; }
        how = struct.pack("QQQ", flags | os.O_CLOEXEC, mode, _RESOLVE_IN_ROOT)
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
        return os.open(f"/proc/{owner}/root{path}", flags | os.O_CLOEXEC, mode)
    finally:
        os.close(root)


def _parent_in_root(owner: int, path: str) -> tuple[int, str]:
    """(an O_PATH descriptor of the folder holding `path`, the last name) for the *at calls."""
    parent, name = os.path.split(os.path.normpath(path))
    if not name or name in (".", ".."):
        raise OSError(errno.EINVAL, f"not a path to an entry: {path}")
    return open_in_root(owner, parent or "/", os.O_PATH | os.O_DIRECTORY), name


def _open_for_writing(owner: int, path: str, params: dict[str, Any]) -> dict[str, Any]:
    """The program's open of a pod path for writing, done in the pod with its flags, so the
    file is created or truncated now and the pod's errno is the program's. Answers the stat,
    whether it was created, and the first chunk of what the program may need to keep."""
    flags, mode = params.get("flags"), params.get("mode", 0o666)
    if not isinstance(flags, int) or not isinstance(mode, int):
        raise OSError(errno.EINVAL, "file.open needs integer flags and mode")
    flags &= _WRITE_FLAGS
    created = False
    if flags & os.O_CREAT and not flags & os.O_EXCL:
        try:
            fd = open_in_root(owner, path, flags & ~os.O_CREAT)
        except FileNotFoundError:
            fd, created = open_in_root(owner, path, flags | os.O_EXCL, mode), True
    else:
        fd = open_in_root(owner, path, flags, mode)
        created = bool(flags & os.O_CREAT)
    try:
        if created:
            os.fchmod(fd, mode & 0o7777)  # the program's umask is applied; the agent's is not
        fields = stat_fields(os.fstat(fd))
        data = b""
        if not flags & os.O_TRUNC and not created and stat.S_ISREG(fields["mode"]):
            if flags & os.O_ACCMODE == os.O_RDWR:
                data = os.pread(fd, messages.CHUNK, 0)
            else:  # write-only: the program's copy still has to start from the pod's bytes
                reader = open_in_root(owner, path, os.O_RDONLY)
                try:
                    data = os.pread(reader, messages.CHUNK, 0)
                finally:
                    os.close(reader)
        return {"stat": fields, "data": data, "created": created}
    finally:
        os.close(fd)


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
    with as_target(owner):
        return _handle(owner, method, path, params)


def _handle(owner: int, method: str, path: str, params: dict[str, Any]) -> dict[str, Any]:
    if method == messages.STAT:
        flags = os.O_PATH | (0 if params.get("follow", True) else os.O_NOFOLLOW)
        fd = open_in_root(owner, path, flags)
        try:
            return {"stat": stat_fields(os.fstat(fd))}
        finally:
            os.close(fd)
    if method == messages.READLINK:
        parent, name = _parent_in_root(owner, path)
        try:
            return {"target": os.readlink(os.fsencode(name), dir_fd=parent)}
        finally:
            os.close(parent)
    if method == messages.LIST:
        fd = open_in_root(owner, path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            return {"names": os.listdir(fd)}
        finally:
            os.close(fd)
    if method == messages.OPEN and params.get("flags", os.O_RDONLY) != os.O_RDONLY:
        return _open_for_writing(owner, path, params)
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
    if method == messages.WRITE:
        offset, data = params.get("offset"), params.get("data")
        if not isinstance(offset, int) or not isinstance(data, bytes) or offset < 0:
            raise OSError(errno.EINVAL, "file.write needs offset and data")
        fd = open_in_root(owner, path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
            return {}
        finally:
            os.close(fd)
    if method == messages.TRUNCATE:
        size = params.get("size")
        if not isinstance(size, int) or size < 0:
            raise OSError(errno.EINVAL, "file.truncate needs a size")
        fd = open_in_root(owner, path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            return {}
        finally:
            os.close(fd)
    if method == messages.ACCESS:
        mode = params.get("mode")
        if not isinstance(mode, int):
            raise OSError(errno.EINVAL, "file.access needs a mode")
        fd = open_in_root(owner, path, os.O_PATH)
        try:
            # faccessat2(AT_EACCESS) checks with the fsuid this thread has now.
            result = _libc.syscall(
                ctypes.c_long(_SYS_FACCESSAT2),
                ctypes.c_int(fd),
                ctypes.c_char_p(b""),
                ctypes.c_int(mode & 7),
                ctypes.c_int(_AT_EMPTY_PATH | _AT_EACCESS),
            )
            if result != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code), path)
            return {}
        finally:
            os.close(fd)
    if method in (messages.UNLINK, messages.MKDIR):
        parent, name = _parent_in_root(owner, path)
        try:
            if method == messages.MKDIR:
                os.mkdir(name, params.get("mode", 0o777) & 0o7777, dir_fd=parent)
            elif params.get("directory"):
                os.rmdir(name, dir_fd=parent)
            else:
                os.unlink(name, dir_fd=parent)
            return {}
        finally:
            os.close(parent)
    if method == messages.RENAME:
        target, flags = params.get("to"), params.get("flags", 0)
        if not isinstance(target, str) or not isinstance(flags, int):
            raise OSError(errno.EINVAL, "file.rename needs to and flags")
        source_parent, source_name = _parent_in_root(owner, path)
        try:
            target_parent, target_name = _parent_in_root(owner, target)
            try:
                result = _libc.renameat2(
                    source_parent, source_name.encode(), target_parent, target_name.encode(), flags
                )
                if result != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, os.strerror(code), path)
                return {}
            finally:
                os.close(target_parent)
        finally:
            os.close(source_parent)
    raise OSError(errno.ENOSYS, f"unknown request {method!r}")
