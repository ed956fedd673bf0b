"""Environment feature: the target process's environment variables."""

from __future__ import annotations

GET = "env.get"
