"""Files feature: read files as the target process sees them (its root, its mounts).

`file.read` returns `{"data": bytes}`; a failure is an error response `{"errno", "message"}`.
The resolver configuration (resolv.conf, hosts) travels the same way.
"""

from __future__ import annotations

from typing import Any

READ = "file.read"
# A whole-file read answers in one frame; larger files are refused (streaming is for --fs).
MAX_READ = 4 * 1024 * 1024


def read_params(path: str) -> dict[str, Any]:
    return {"path": path}


# --fs: the program's own opens and stats of remote paths (see podside_agent.files).
OPEN = "file.open"  # {path} -> {stat, data: first CHUNK bytes} or {stat, entries: [[name, is_dir]]}
# A FIFO, socket or device is refused with EOPNOTSUPP by every method that would open it.
READ_CHUNK = "file.chunk"  # {path, offset, length} -> {data}
STAT = "file.stat"  # {path, follow} -> {stat: {mode, size, ino, ..., mtime_ns}}
LIST = "file.list"  # {path} -> {names}
# --fs write. The pod's file changes only when a write-back commits: until then it is the
# old file, after it the new one, never a mix (see podside_agent.files).
# {path, flags}: what the program's open for writing would do in the pod (its errno),
# changing nothing -> {stat, data: first CHUNK of the bytes kept, created: False}, or
# {created: True, uid, gid} for a file the open would create (uid, gid: its owner-to-be).
CHECK_WRITE = "file.check_write"
REPLACE = "file.replace"  # {path, mode, exclusive} -> {handle}: a temporary file beside it
WRITE = "file.write"  # {handle, offset, data} -> {}
COMMIT = "file.commit"  # {handle, size} -> {}: synced, the old mode and owner, renamed over
ABORT = "file.abort"  # {handle} -> {}: the temporary file removed (also when a client leaves)
UNLINK = "file.unlink"  # {path, directory} -> {} (unlink, or rmdir when directory)
MKDIR = "file.mkdir"  # {path, mode} -> {}
RENAME = "file.rename"  # {path, to, flags} -> {} (renameat2 flags: RENAME_NOREPLACE, ...)
ACCESS = "file.access"  # {path, mode} -> {} or the errno access(2) gives in the pod
READLINK = "file.readlink"  # {path} -> {target: bytes}: the symlink's own text, not resolved
CHUNK = 1024 * 1024
FILE_METHODS = frozenset(
    {
        OPEN,
        READ_CHUNK,
        STAT,
        LIST,
        CHECK_WRITE,
        REPLACE,
        WRITE,
        COMMIT,
        ABORT,
        UNLINK,
        MKDIR,
        RENAME,
        ACCESS,
        READLINK,
    }
)
