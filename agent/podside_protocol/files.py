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
