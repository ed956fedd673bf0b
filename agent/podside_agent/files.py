"""Files as the target process sees them: opened inside its root with openat2(RESOLVE_IN_ROOT),
so the pod's symlinks (a ConfigMap's `..data` links, for one) resolve within the pod.

Answers `file.read` (a whole small file, for the resolver) and, for `--fs`: `file.open` (the
stat and the first chunk, or a directory's names — one round trip for most files),
`file.chunk` (the rest of a large file, by offset), `file.stat`, `file.list` (the names in a
directory, which the layer caches to know what is remote) and `file.readlink`. For
`--fs write`: `file.check_write` (what the program's open for writing would do in the pod —
EACCES, EROFS, ENOENT, EEXIST, EISDIR — without changing anything, with the bytes its copy
starts from), the write-back of a copy as one replacement (`file.replace`, `file.write`,
`file.commit`, `file.abort`), `file.unlink`, `file.mkdir`, `file.rename` and `file.access`.

A write-back never touches the pod's file until the new content is whole: it goes into a
temporary file beside it (created as the target), which takes the old file's mode, owner and
extended attributes (its ACL included), is synced, and is renamed over the old one. The pod's
file is always the old content or the new. A temporary file whose client leaves, whose
write-back is abandoned, or that is made after its client stopped waiting, is removed; a
commit overtaken by a later commit of the same file (one answered ETIMEDOUT whose worker went
on) is dropped rather than renamed over the newer content.

Only regular files and folders are opened: a FIFO, socket or device is looked at through an
O_PATH descriptor (which never opens it) and refused with EOPNOTSUPP, so nothing waits for a
writer that never comes. Every call runs on a worker thread under a deadline (`workers.py`),
with the target's file-system credentials (its fsuid, fsgid and groups, switched on that
thread only around the call), so permissions are the ones the pod's process has and files it
creates belong to its user, not to the agent.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import itertools
import logging
import os
import secrets
import stat
import struct
import threading
import weakref
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from podside_agent.procfs import status_fields
from podside_agent.target import TargetProcess
from podside_agent.workers import Workers
from podside_protocol import files as messages

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_SYS_OPENAT2 = 437
_SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}.get(os.uname().machine)
_SYS_FACCESSAT2 = 439
_RESOLVE_IN_ROOT = 0x10
_AT_EMPTY_PATH, _AT_EACCESS = 0x1000, 0x200
_RENAME_NOREPLACE = 1
_R_OK, _W_OK, _X_OK = 4, 2, 1
_MAX_SYMLINKS = 40  # as the kernel's path walk
# The open flags of a program's write that matter in the pod; the rest (O_CLOEXEC,
# O_NONBLOCK, ...) is this machine's business.
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
    fields = status_fields(owner, ("Uid", "Gid", "Groups"))
    # The fourth of real, effective, saved and file-system ids: the one opens are checked with.
    uid = int(fields["Uid"][3]) if "Uid" in fields else -1
    gid = int(fields["Gid"][3]) if "Gid" in fields else -1
    groups = [int(group) for group in fields.get("Groups", [])]
    if os.geteuid() != 0 or (uid, gid, sorted(groups)) == (0, 0, sorted(os.getgroups())):
        return None
    return uid, gid, groups


@contextlib.contextmanager
def as_target(owner: int) -> Iterator[tuple[int, int]]:
    """Run the body with the target's file-system credentials on this thread only; gives
    the (fsuid, fsgid) the body runs with.

    setfsuid/setfsgid are per thread, and so is the raw setgroups system call (glibc's wrapper
    would change every thread of the agent), so this works on any worker thread. A non-zero
    fsuid also clears the file-system capabilities (CAP_DAC_OVERRIDE, CAP_CHOWN, ...), which
    come back with fsuid 0.
    """
    credentials = _credentials(owner)
    if credentials is None or _SYS_SETGROUPS is None:
        yield os.geteuid(), os.getegid()
        return
    uid, gid, groups = credentials
    own_groups = os.getgroups()
    _set_groups(groups)
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    try:
        yield uid, gid
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


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _refuse_special(path: str, mode: int) -> None:
    """A FIFO, socket or device cannot be served as a file (opening a FIFO would wait for a
    writer, a device's open has effects of its own): EOPNOTSUPP, said in the message."""
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise OSError(
            errno.EOPNOTSUPP, f"{path} is {kind} in the pod; --fs serves regular files and folders"
        )


def open_file(owner: int, path: str, flags: int = os.O_RDONLY) -> int:
    """Open a regular file or folder at `path` in the target's root for reading, never
    anything else: the path is first opened with O_PATH (which does not open the file
    itself), looked at, and only then reopened through /proc/self/fd, the same inode."""
    handle = open_in_root(owner, path, os.O_PATH | (flags & os.O_NOFOLLOW))
    try:
        mode = os.fstat(handle).st_mode
        _refuse_special(path, mode)
        if stat.S_ISLNK(mode):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
        return os.open(f"/proc/self/fd/{handle}", (flags & ~os.O_NOFOLLOW) | os.O_CLOEXEC)
    finally:
        os.close(handle)


def read_whole(owner: int, path: str, limit: int) -> bytes:
    """A whole small file of the target (the resolver's resolv.conf and hosts)."""
    fd = open_file(owner, path)
    with os.fdopen(fd, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"{path} is larger than {limit} bytes")
    return data


def _parent_in_root(owner: int, path: str) -> tuple[int, str]:
    """(an O_PATH descriptor of the folder holding `path`, the last name) for the *at calls."""
    parent, name = os.path.split(os.path.normpath(path))
    if not name or name in (".", ".."):
        raise OSError(errno.EINVAL, f"not a path to an entry: {path}")
    return open_in_root(owner, parent or "/", os.O_PATH | os.O_DIRECTORY), name


def _final_path(owner: int, path: str) -> str:
    """`path` with its last component's symlinks followed (within the target's root): what
    a write-back replaces is the file the program's open would have written through them."""
    for _ in range(_MAX_SYMLINKS):
        parent, name = _parent_in_root(owner, path)
        try:
            link = os.readlink(name, dir_fd=parent)
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.EINVAL):
                return path  # missing, or not a link
            raise
        finally:
            os.close(parent)
        path = link if link.startswith("/") else os.path.join(os.path.dirname(path), link)
        path = os.path.normpath(path)
    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)


def _check_access(fd: int, name: str, mode: int, path: str, flags: int = 0) -> None:
    """faccessat2(AT_EACCESS): the check with this thread's fsuid, as an open makes it."""
    result = _libc.syscall(
        ctypes.c_long(_SYS_FACCESSAT2),
        ctypes.c_int(fd),
        ctypes.c_char_p(name.encode()),
        ctypes.c_int(mode),
        ctypes.c_int(_AT_EACCESS | flags),
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)


def _refuse_read_only(fd: int, path: str) -> None:
    if os.fstatvfs(fd).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)


def check_write(owner: int, path: str, flags: int, owner_ids: tuple[int, int]) -> dict[str, Any]:
    """What the program's open of `path` for writing would do in the pod, without doing it:
    the pod's errno, or the stat of the file and the bytes the program's copy starts from
    (all of them but the first chunk come by `file.chunk`), or `created` for a new file."""
    flags &= _WRITE_FLAGS
    final = path
    if not flags & os.O_NOFOLLOW:
        final = _final_path(owner, path)
    try:
        handle = open_in_root(owner, final, os.O_PATH | os.O_NOFOLLOW)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
        parent, _name = _parent_in_root(owner, final)
        try:
            _refuse_read_only(parent, path)  # as open(2): EROFS before EACCES when creating
            _check_access(parent, "", _W_OK | _X_OK, path, _AT_EMPTY_PATH)
        finally:
            os.close(parent)
        return {"created": True, "uid": owner_ids[0], "gid": owner_ids[1]}
    try:
        fields = stat_fields(os.fstat(handle))
        if flags & os.O_CREAT and flags & os.O_EXCL:
            raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), path)
        if stat.S_ISLNK(fields["mode"]):
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)  # O_NOFOLLOW
        if stat.S_ISDIR(fields["mode"]):
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        _refuse_special(path, fields["mode"])
        if flags & os.O_TRUNC:
            _refuse_read_only(handle, path)  # as open(2): EROFS before EACCES when truncating
        reading = flags & os.O_ACCMODE == os.O_RDWR
        _check_access(handle, "", _W_OK | (_R_OK if reading else 0), path, _AT_EMPTY_PATH)
        parent, _name = _parent_in_root(owner, final)
        try:
            _check_access(parent, "", _W_OK | _X_OK, path, _AT_EMPTY_PATH)
        except PermissionError:
            raise OSError(
                errno.EACCES,
                f"{path}: the pod's process may write this file but not create files in its "
                "folder, and --fs write replaces a file whole (a new file beside it, renamed "
                "over it)",
            ) from None
        finally:
            os.close(parent)
        data = b""
        if not flags & os.O_TRUNC:
            # The copy holds the whole file, even for a write-only open: the write-back
            # replaces the file with all of it.
            try:
                reader = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)
            except PermissionError:
                raise OSError(
                    errno.EACCES,
                    f"{path}: the pod's process may write this file but not read it, and "
                    "--fs write keeps the bytes it does not overwrite (open it with O_TRUNC)",
                ) from None
            try:
                data = os.pread(reader, messages.CHUNK, 0)
            finally:
                os.close(reader)
        return {"stat": fields, "data": data, "created": False}
    finally:
        os.close(handle)


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


@dataclass
class _FileCommits:
    lock: threading.Lock = field(default_factory=threading.Lock)  # one rename at a time
    write_backs: int = 0  # the write-backs of this file still alive, committed or not
    renamed: int = 0  # the number of the newest commit renamed over it


class CommitOrder:
    """Which commit of a file is the newest. Commits are numbered as they arrive, in the order
    the program closed its files; each renames under its file's lock, and one whose number is
    below the newest already renamed there (it was answered ETIMEDOUT, the program went on,
    and its worker finished later) is dropped: the file keeps the newer content. A file is
    known while a write-back of it lives, so the bookkeeping ends with the last one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._files: dict[Hashable, _FileCommits] = {}

    def hold(self, key: Hashable) -> None:
        """A write-back of the file `key` begins."""
        with self._lock:
            self._files.setdefault(key, _FileCommits()).write_backs += 1

    def release(self, key: Hashable) -> None:
        """A write-back of the file `key` ended (committed, dropped or abandoned)."""
        with self._lock:
            commits = self._files[key]
            commits.write_backs -= 1
            if commits.write_backs == 0:
                del self._files[key]

    def number(self) -> int:
        """The number of a commit that just arrived."""
        with self._lock:
            return next(self._numbers)

    @contextlib.contextmanager
    def turn(self, key: Hashable, number: int) -> Iterator[bool]:
        """The file's rename turn for commit `number`, held: yields whether it is still the
        newest (rename) or overtaken (drop it); a body that ends normally made the rename."""
        with self._lock:
            commits = self._files[key]
        with commits.lock:
            yield number > commits.renamed
            commits.renamed = max(commits.renamed, number)


@dataclass(eq=False)
class _Replacement:
    """A write-back in progress: the temporary file beside the one it will replace."""

    client: object
    folder: int  # O_PATH descriptor of the folder
    name: str  # the file to replace
    temporary: str  # the temporary file's name in the folder ("": unnamed, O_TMPFILE)
    fd: int
    mode: int  # for a new file: the program's, its umask applied
    exclusive: bool  # O_EXCL: never replace a file that appeared meanwhile
    order: CommitOrder
    key: Hashable  # the file, as (folder's device, folder's inode, name)
    number: int = 0  # its commit's place in the order of arrival (0: not committed)
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False

    def discard(self) -> None:
        """Remove the temporary file (a no-op once committed or discarded)."""
        with self.lock:
            if self.finished:
                return
            self.finished = True
            if self.temporary:
                with contextlib.suppress(OSError):
                    os.unlink(self.temporary, dir_fd=self.folder)
            os.close(self.fd)
            os.close(self.folder)
            self.order.release(self.key)


class PodFiles:
    """The files feature of the agent: every request on a worker thread, as the target."""

    def __init__(self, target: TargetProcess, workers: Workers) -> None:
        self._target = target
        self._workers = workers
        self._replacements: dict[int, _Replacement] = {}
        self._lock = threading.Lock()
        self._handles = itertools.count(1)
        self._order = CommitOrder()
        # Clients that left, for the write-backs they began that finish after: weak, so a
        # client is forgotten with its last request.
        self._gone: weakref.WeakSet[object] = weakref.WeakSet()

    async def handle(self, client: object, method: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            request = messages.parse_request(method, params)
        except messages.InvalidRequest as error:
            raise OSError(errno.EINVAL, str(error)) from None
        if isinstance(request, messages.Replace):
            # Made on a worker, kept here on the loop, where drop_client runs: one that comes
            # after its client left, or after its client stopped waiting, is removed.
            item = await self._workers.run(
                self._begin_replacement, client, request, late=_Replacement.discard
            )
            return {"handle": self._keep(item)}
        if isinstance(request, messages.Commit):
            self._number_commit(client, request.handle)
        return await self._workers.run(self._handle, client, request)

    async def read(self, path: str, limit: int) -> bytes:
        return await self._workers.run(self._read, path, limit)

    def drop_client(self, client: object) -> None:
        """The client left: its write-backs will never be committed; remove their files."""
        with self._lock:
            self._gone.add(client)
            abandoned = [
                handle for handle, item in self._replacements.items() if item.client is client
            ]
            replacements = [self._replacements.pop(handle) for handle in abandoned]
        for item in replacements:
            self._workers.submit(item.discard)

    def _read(self, path: str, limit: int) -> bytes:
        owner = self._target.files_owner()
        with as_target(owner):
            return read_whole(owner, path, limit)

    def _keep(self, item: _Replacement) -> int:
        with self._lock:
            if item.client not in self._gone:
                handle = next(self._handles)
                self._replacements[handle] = item
                return handle
        self._workers.submit(item.discard)
        raise OSError(errno.ECONNRESET, "the client left before its write-back began")

    def _number_commit(self, client: object, handle: int) -> None:
        """Number a commit as it arrives (on the loop, in the client's order): its worker may
        start after a later one's."""
        with self._lock:
            item = self._replacements.get(handle)
            if item is not None and item.client is client and not item.number:
                item.number = self._order.number()

    def _handle(self, client: object, request: messages.FileRequest) -> dict[str, Any]:
        if isinstance(request, messages.Write | messages.Commit | messages.Abort):
            return self._continue_replacement(client, request)
        owner = self._target.files_owner()
        with as_target(owner) as credentials:
            if isinstance(request, messages.CheckWrite):
                return check_write(owner, request.path, request.flags, credentials)
            return _OPERATIONS[type(request)](owner, request)

    def _begin_replacement(self, client: object, request: messages.Replace) -> _Replacement:
        """The temporary file of a write-back, made as the target; kept by `handle`."""
        owner = self._target.files_owner()
        with as_target(owner):
            return self._make_temporary(
                client, owner, request.path, request.mode, request.exclusive
            )

    def _make_temporary(
        self, client: object, owner: int, path: str, mode: int, exclusive: bool
    ) -> _Replacement:
        folder, name = _parent_in_root(owner, _final_path(owner, path))
        try:
            where = os.fstat(folder)
            # Unnamed (O_TMPFILE) where the file system can: whoever dies, the kernel frees
            # it; else a hidden name that the agent removes.
            temporary = ""
            try:
                fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600, dir_fd=folder)
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                temporary = _temporary_name()
                fd = os.open(
                    temporary,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                    dir_fd=folder,
                )
        except BaseException:
            os.close(folder)
            raise
        key = (where.st_dev, where.st_ino, name)
        self._order.hold(key)
        return _Replacement(
            client, folder, name, temporary, fd, mode & 0o7777, exclusive, self._order, key
        )

    def _continue_replacement(
        self, client: object, request: messages.Write | messages.Commit | messages.Abort
    ) -> dict[str, Any]:
        handle = request.handle
        with self._lock:
            item = self._replacements.get(handle)
            if item is None or item.client is not client:
                raise OSError(errno.EBADF, f"no write-back {handle!r} of this client")
            if not isinstance(request, messages.Write):
                del self._replacements[handle]
        if isinstance(request, messages.Abort):
            item.discard()
            return {}
        if isinstance(request, messages.Write):
            with item.lock:
                if item.finished:
                    raise OSError(errno.EBADF, "the write-back has ended")
                os.pwrite(item.fd, request.data, request.offset)
            return {}
        try:
            self._commit(item, request.size)
        finally:
            item.discard()  # after a rename, only the descriptors are left to close
        return {}

    def _commit(self, item: _Replacement, size: int) -> None:
        """The temporary file becomes the file: whole, with the old one's mode, owner and
        extended attributes, synced, then renamed over it in one step, unless a later commit
        of the file did so first."""
        owner = self._target.files_owner()
        number = item.number or self._order.number()
        with item.lock:
            if item.finished:
                raise OSError(errno.EBADF, "the write-back has ended")
            os.ftruncate(item.fd, size)
            with as_target(owner) as (fsuid, _fsgid):
                old = _to_replace(item)
                if not item.temporary and (old is not None or not item.exclusive):
                    # Named now, while the target still owns it: the kernel's
                    # protected_hardlinks would refuse the link after the chown.
                    item.temporary = _temporary_name()
                    _link_unnamed(item.fd, item.folder, item.temporary)
            mode = _take_owner(item, old, fsuid)
            if old is not None:
                _copy_attributes(item)  # after the chown, which would drop some of them
            os.fchmod(item.fd, mode)
            os.fsync(item.fd)
            with self._order.turn(item.key, number) as newest, as_target(owner):
                if not newest:
                    log.info("a write-back of %s was overtaken by a later one: dropped", item.name)
                    return  # as if renamed, then replaced by the later one
                if item.temporary:
                    flags = _RENAME_NOREPLACE if item.exclusive else 0
                    if _libc.renameat2(
                        item.folder, item.temporary.encode(), item.folder, item.name.encode(), flags
                    ):
                        code = ctypes.get_errno()
                        raise OSError(code, os.strerror(code), item.name)
                else:  # a new file for O_EXCL: the link fails if one appeared meanwhile
                    _link_unnamed(item.fd, item.folder, item.name)
            item.temporary = ""  # it is the file now: nothing left to remove
            with contextlib.suppress(OSError):  # the rename itself survives a power loss
                folder = os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=item.folder)
                try:
                    os.fsync(folder)
                finally:
                    os.close(folder)


def _to_replace(item: _Replacement) -> os.stat_result | None:
    """The file a commit replaces (None: there is none), checked as the target: it is still
    the program's to write, and O_EXCL finds none."""
    try:
        old = os.stat(item.name, dir_fd=item.folder, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if item.exclusive:
        raise OSError(errno.EEXIST, os.strerror(errno.EEXIST), item.name)
    _check_access(item.folder, item.name, _W_OK, item.name)
    return old


def _take_owner(item: _Replacement, old: os.stat_result | None, fsuid: int) -> int:
    """Give the new file the old one's owner; answers the mode it takes (the old one's, or
    for a new file the program's)."""
    if old is None:
        return item.mode
    mode = stat.S_IMODE(old.st_mode)
    here = os.fstat(item.fd)
    if (here.st_uid, here.st_gid) != (old.st_uid, old.st_gid):
        # With the agent's own privilege (chown is not the target's to make): the target
        # may write the file, and the new one keeps its owner as a write in place would;
        # set-uid and set-gid go, as the kernel drops them when another user writes.
        os.fchown(item.fd, old.st_uid, old.st_gid)
        if old.st_uid != fsuid:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
    return mode


_ACL = "system.posix_acl_access"
# File capabilities go with any write, as the kernel removes them when the file is written.
_DROPPED_ON_WRITE = "security.capability"


def _copy_attributes(item: _Replacement) -> None:
    """Give the new file the old one's extended attributes (user.*, security.*, its ACL), as
    `cp --preserve=all` does: what cannot be copied (a security.* attribute the pod's file
    system or LSM refuses, say) is said in one log line and the rest goes on, but an ACL that
    cannot be kept is refused, the old file left as it was: the replaced file would change who
    may read or write it."""
    old = os.open(item.name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=item.folder)
    try:
        source = f"/proc/self/fd/{old}"  # an O_PATH descriptor has no f*xattr calls
        try:
            names = os.listxattr(source)
        except OSError as error:
            if error.errno != errno.EOPNOTSUPP:
                raise
            return  # a file system without extended attributes: there are none to keep
        if _ACL not in names:
            # The folder's default ACL gave the new file one that the old file did not have.
            try:
                os.removexattr(item.fd, _ACL)
            except OSError as error:
                if error.errno not in (errno.ENODATA, errno.EOPNOTSUPP):
                    raise _acl_lost(item, error) from None
        skipped = []
        for name in names:
            if name == _DROPPED_ON_WRITE:
                continue
            try:
                os.setxattr(item.fd, name, os.getxattr(source, name))
            except OSError as error:
                if name == _ACL:
                    raise _acl_lost(item, error) from None
                skipped.append(f"{name} ({os.strerror(error.errno or 0)})")
        if skipped:
            log.warning("%s replaced without its %s", item.name, ", ".join(skipped))
    finally:
        os.close(old)


def _acl_lost(item: _Replacement, error: OSError) -> OSError:
    return OSError(
        error.errno,
        f"{item.name}: its ACL could not be kept on the new file "
        f"({os.strerror(error.errno or 0)}); the pod's file is left as it was",
    )


def _temporary_name() -> str:
    return f".podside-{secrets.token_hex(8)}.tmp"


def _link_unnamed(fd: int, folder: int, name: str) -> None:
    """Give the O_TMPFILE file `fd` a name (linkat through /proc, which needs no privilege)."""
    os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=folder, follow_symlinks=True)


# --- one function per request, run as the target (`as_target`) ---------------------------------


def _stat(owner: int, request: messages.Stat) -> dict[str, Any]:
    fd = open_in_root(owner, request.path, os.O_PATH | (0 if request.follow else os.O_NOFOLLOW))
    try:
        return {"stat": stat_fields(os.fstat(fd))}
    finally:
        os.close(fd)


def _readlink(owner: int, request: messages.Readlink) -> dict[str, Any]:
    parent, name = _parent_in_root(owner, request.path)
    try:
        return {"target": os.readlink(os.fsencode(name), dir_fd=parent)}
    finally:
        os.close(parent)


def _list(owner: int, request: messages.List) -> dict[str, Any]:
    fd = open_in_root(owner, request.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return {"names": os.listdir(fd)}
    finally:
        os.close(fd)


def _open(owner: int, request: messages.Open) -> dict[str, Any]:
    fd = open_file(owner, request.path)
    try:
        fields = stat_fields(os.fstat(fd))
        if stat.S_ISDIR(fields["mode"]):
            entries = [
                [entry.name, entry.is_dir(follow_symlinks=False)] for entry in os.scandir(fd)
            ]
            return {"stat": fields, "entries": entries}
        return {"stat": fields, "data": os.pread(fd, messages.CHUNK, 0)}
    finally:
        os.close(fd)


def _read_chunk(owner: int, request: messages.ReadChunk) -> dict[str, Any]:
    fd = open_file(owner, request.path)
    try:
        return {"data": os.pread(fd, min(request.length, messages.CHUNK), request.offset)}
    finally:
        os.close(fd)


def _access(owner: int, request: messages.Access) -> dict[str, Any]:
    fd = open_in_root(owner, request.path, os.O_PATH)
    try:
        _check_access(fd, "", request.mode & 7, request.path, _AT_EMPTY_PATH)
        return {}
    finally:
        os.close(fd)


def _unlink(owner: int, request: messages.Unlink) -> dict[str, Any]:
    parent, name = _parent_in_root(owner, request.path)
    try:
        if request.directory:
            os.rmdir(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)
        return {}
    finally:
        os.close(parent)


def _mkdir(owner: int, request: messages.Mkdir) -> dict[str, Any]:
    parent, name = _parent_in_root(owner, request.path)
    try:
        os.mkdir(name, request.mode & 0o7777, dir_fd=parent)
        return {}
    finally:
        os.close(parent)


def _rename(owner: int, request: messages.Rename) -> dict[str, Any]:
    source_parent, source_name = _parent_in_root(owner, request.path)
    try:
        target_parent, target_name = _parent_in_root(owner, request.to)
        try:
            result = _libc.renameat2(
                source_parent,
                source_name.encode(),
                target_parent,
                target_name.encode(),
                request.flags,
            )
            if result != 0:
                code = ctypes.get_errno()
                raise OSError(code, os.strerror(code), request.path)
            return {}
        finally:
            os.close(target_parent)
    finally:
        os.close(source_parent)


def _not_here(owner: int, request: messages.FileRequest) -> dict[str, Any]:
    # Read is the server's (a whole file, for the resolver), not a --fs request.
    raise OSError(errno.ENOSYS, f"{request.METHOD} is not a --fs request")


# Each --fs request but CheckWrite and the write-back's own (handled by PodFiles).
_OPERATIONS: dict[type[messages.FileRequest], Callable[[int, Any], dict[str, Any]]] = {
    messages.Stat: _stat,
    messages.Readlink: _readlink,
    messages.List: _list,
    messages.Open: _open,
    messages.ReadChunk: _read_chunk,
    messages.Access: _access,
    messages.Unlink: _unlink,
    messages.Mkdir: _mkdir,
    messages.Rename: _rename,
    messages.Read: _not_here,
}
