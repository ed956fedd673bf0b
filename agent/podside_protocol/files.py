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
CHUNK = 1024 * 1024
FILE_METHODS = frozenset({OPEN, READ_CHUNK, STAT, LIST})
