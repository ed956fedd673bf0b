"""The tokens of the agents this user may use, kept in the user's cache.

A pod's spec shows only an agent's verifier; the token itself is written here when this user
starts or enrolls with an agent, so a later session of the same user reuses that agent and no
one else can. One file per pod (`$XDG_CACHE_HOME/podside/agents/<pod uid>.json`: container
name -> token), mode 0600 in a 0700 folder; a pod's uid is never reused, nor is a container
name within a pod, so an entry can never name another agent. Updates hold a lock and replace
the file whole, so concurrent sessions lose nothing and no file is ever torn.

The XDG rule is three lines, so no dependency is taken for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def default_directory() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec: a relative value is to be ignored.
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "podside" / "agents"


class TokenCache:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_directory()

    def get(self, pod_uid: str, container: str) -> str | None:
        token = self._read(pod_uid).get(container)
        return token if isinstance(token, str) and token else None

    def put(self, pod_uid: str, container: str, token: str) -> None:
        with self._locked():
            tokens = self._read(pod_uid)
            tokens[container] = token
            descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tokens-")
            try:
                with os.fdopen(descriptor, "w") as file:  # mkstemp makes it 0600
                    json.dump(tokens, file)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, self._path(pod_uid))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise

    def _path(self, pod_uid: str) -> Path:
        # A uid is a UUID; anything else must not walk out of the folder.
        return self.directory / f"{Path(pod_uid).name}.json"

    def _read(self, pod_uid: str) -> dict[str, object]:
        try:
            data = json.loads(self._path(pod_uid).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        descriptor = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)
