"""Files feature: read and write files as the target process sees them (its root, its mounts).

Every request is one typed message below (`Stat`, `Open`, `Replace`, ...): the client builds
it and sends `message()`; the agent rebuilds it with `parse_request`, which refuses missing
or mistyped parameters (`InvalidRequest`) before anything touches the pod. A failure is an
error response `{"errno", "message"}`.

`file.read` (`Read`) answers a whole small file (the resolver's resolv.conf and hosts). The
others serve `--fs`: the program's own opens, stats and listings of remote paths, and for
`--fs write` its changes. The pod's file changes only when a write-back commits: until then
it is the old file, after it the new one, never a mix (see podside_agent.files). A FIFO,
socket or device is refused with EOPNOTSUPP by every request that would open it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

READ = "file.read"
# A whole-file read answers in one frame; larger files are refused (streaming is for --fs).
MAX_READ = 4 * 1024 * 1024
OPEN = "file.open"
READ_CHUNK = "file.chunk"
STAT = "file.stat"
LIST = "file.list"
CHECK_WRITE = "file.check_write"
REPLACE = "file.replace"
WRITE = "file.write"
COMMIT = "file.commit"
ABORT = "file.abort"
UNLINK = "file.unlink"
MKDIR = "file.mkdir"
RENAME = "file.rename"
ACCESS = "file.access"
READLINK = "file.readlink"
# The most one answer carries: `Open`'s first bytes, one `ReadChunk`.
CHUNK = 1024 * 1024

# The parameters' types as the annotations name them (`from __future__ import annotations`).
_TYPES: dict[str, type] = {"str": str, "int": int, "bool": bool, "bytes": bytes}
# Parameters that are counts or positions: never negative.
_NOT_NEGATIVE = frozenset({"offset", "length", "size", "handle"})


_Request = TypeVar("_Request", bound="FileRequest")


class InvalidRequest(ValueError):
    """A file request whose parameters are missing or of the wrong type: says which."""


@dataclass(frozen=True)
class FileRequest:
    METHOD: ClassVar[str]

    def message(self) -> tuple[str, dict[str, Any]]:
        """(method, params), as a peer's `request` takes them."""
        return self.METHOD, dataclasses.asdict(self)

    @classmethod
    def parse(cls: type[_Request], params: dict[str, Any]) -> _Request:
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            value = params.get(field.name, field.default)
            if value is dataclasses.MISSING:
                raise InvalidRequest(f"{cls.METHOD} needs {field.name}")
            wanted = _TYPES[str(field.type)]
            # bool is an int to Python, never to this protocol.
            if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
                raise InvalidRequest(f"{cls.METHOD}: {field.name} must be {wanted.__name__}")
            if field.name in _NOT_NEGATIVE and isinstance(value, int) and value < 0:
                raise InvalidRequest(f"{cls.METHOD}: {field.name} must not be negative")
            values[field.name] = value
        return cls(**values)


@dataclass(frozen=True)
class Read(FileRequest):
    """-> {data}: the whole file, at most MAX_READ bytes."""

    METHOD = READ
    path: str


@dataclass(frozen=True)
class Open(FileRequest):
    """-> {stat, data: the first CHUNK bytes} or, for a folder, {stat, entries: [[name, is_dir]]}."""

    METHOD = OPEN
    path: str


@dataclass(frozen=True)
class ReadChunk(FileRequest):
    """-> {data}: at most min(length, CHUNK) bytes from offset."""

    METHOD = READ_CHUNK
    path: str
    offset: int
    length: int


@dataclass(frozen=True)
class Stat(FileRequest):
    """-> {stat: {mode, size, ino, ..., mtime_ns}}; follow: through a final symlink."""

    METHOD = STAT
    path: str
    follow: bool = True


@dataclass(frozen=True)
class List(FileRequest):
    """-> {names}: a folder's entries."""

    METHOD = LIST
    path: str


@dataclass(frozen=True)
class CheckWrite(FileRequest):
    """What the program's open for writing (flags) would do in the pod, changing nothing:
    its errno, or {stat, data: the first CHUNK of the bytes kept, created: False}, or
    {created: True, uid, gid} for a file the open would create (its owner-to-be)."""

    METHOD = CHECK_WRITE
    path: str
    flags: int


@dataclass(frozen=True)
class Replace(FileRequest):
    """-> {handle}: a write-back begins, a temporary file beside the path; exclusive: the
    commit fails if the path exists then (O_EXCL)."""

    METHOD = REPLACE
    path: str
    mode: int = 0o666
    exclusive: bool = False


@dataclass(frozen=True)
class Write(FileRequest):
    """-> {}: bytes of the write-back's new content at offset."""

    METHOD = WRITE
    handle: int
    offset: int
    data: bytes


@dataclass(frozen=True)
class Commit(FileRequest):
    """-> {}: the new content (size bytes) synced, given the old mode and owner, renamed over."""

    METHOD = COMMIT
    handle: int
    size: int


@dataclass(frozen=True)
class Abort(FileRequest):
    """-> {}: the temporary file removed (also done when a client leaves)."""

    METHOD = ABORT
    handle: int


@dataclass(frozen=True)
class Unlink(FileRequest):
    """-> {}: unlink, or rmdir when directory."""

    METHOD = UNLINK
    path: str
    directory: bool = False


@dataclass(frozen=True)
class Mkdir(FileRequest):
    METHOD = MKDIR
    path: str
    mode: int = 0o777


@dataclass(frozen=True)
class Rename(FileRequest):
    """-> {}: renameat2 with its flags (RENAME_NOREPLACE, ...)."""

    METHOD = RENAME
    path: str
    to: str
    flags: int = 0


@dataclass(frozen=True)
class Access(FileRequest):
    """-> {} or the errno access(2) gives in the pod for mode (R_OK, W_OK, X_OK bits)."""

    METHOD = ACCESS
    path: str
    mode: int


@dataclass(frozen=True)
class Readlink(FileRequest):
    """-> {target: bytes}: the symlink's own text, not resolved."""

    METHOD = READLINK
    path: str


REQUESTS: dict[str, type[FileRequest]] = {
    kind.METHOD: kind
    for kind in (
        Read,
        Open,
        ReadChunk,
        Stat,
        List,
        CheckWrite,
        Replace,
        Write,
        Commit,
        Abort,
        Unlink,
        Mkdir,
        Rename,
        Access,
        Readlink,
    )
}
# The requests of --fs (all but the resolver's whole-file read).
FILE_METHODS = frozenset(REQUESTS) - {READ}


def parse_request(method: str, params: dict[str, Any]) -> FileRequest:
    """The typed request `method` and `params` stand for; InvalidRequest if they do not."""
    kind = REQUESTS.get(method)
    if kind is None:
        raise InvalidRequest(f"unknown request {method!r}")
    return kind.parse(params)
