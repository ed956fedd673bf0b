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
READ_CHUNK = "file.chunk"  # {path, offset, length} -> {data}
STAT = "file.stat"  # {path, follow} -> {stat: {mode, size, ino, ..., mtime_ns}}
LIST = "file.list"  # {path} -> {names}
# --fs write. file.open with {flags, mode} (Linux open flags, the mode with the program's umask
# applied) opens in the pod as the program asked -> {stat, data: first CHUNK kept, created}.
WRITE = "file.write"  # {path, offset, data} -> {}
TRUNCATE = "file.truncate"  # {path, size} -> {}
UNLINK = "file.unlink"  # {path, directory} -> {} (unlink, or rmdir when directory)
MKDIR = "file.mkdir"  # {path, mode} -> {}
RENAME = "file.rename"  # {path, to, flags} -> {} (renameat2 flags: RENAME_NOREPLACE, ...)
ACCESS = "file.access"  # {path, mode} -> {} or the errno access(2) gives in the pod
READLINK = "file.readlink"  # {path} -> {target: bytes}: the symlink's own text, not resolved
CHUNK = 1024 * 1024
FILE_METHODS = frozenset(
    {OPEN, READ_CHUNK, STAT, LIST, WRITE, TRUNCATE, UNLINK, MKDIR, RENAME, ACCESS, READLINK}
)
