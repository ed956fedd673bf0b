"""Which sandboxes run on this machine: one owner file per running sandbox in /run.

The only thing the sandboxes share on the host is the `unreachable` route for the sandbox
range: the first sandbox to join adds it and the last to leave removes it. Owner files are
written and counted under one lock, so a sandbox starting while another stops keeps its route.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from podside.sandbox.layout import OWNERS_DIR, StateDir
from podside.sandbox.node import network


@dataclass(frozen=True)
class Owner:
    state_dir: Path
    pid: int


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its parent has not collected it yet.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    return True


LOCK_FILE = OWNERS_DIR / ".lock"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    while True:
        OWNERS_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        try:
            lock = LOCK_FILE.open("a")
        except FileNotFoundError:
            continue
        fcntl.flock(lock, fcntl.LOCK_EX)
        # The last sandbox to leave removes the lock file: a lock taken on the removed file
        # guards nothing, so take it again on the current one.
        try:
            current = os.stat(LOCK_FILE).st_ino == os.fstat(lock.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        lock.close()
    try:
        yield
    finally:
        lock.close()


def _read(path: Path) -> Owner | None:
    try:
        data = json.loads(path.read_text())
        return Owner(Path(data["state_dir"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running(excluding: StateDir | None = None) -> list[Owner]:
    """The sandboxes whose daemon lives, other than `excluding`'s."""
    if not OWNERS_DIR.exists():
        return []
    skipped = excluding.owner_file if excluding is not None else None
    owners = (_read(path) for path in sorted(OWNERS_DIR.glob("*.json")) if path != skipped)
    return [owner for owner in owners if owner is not None and alive(owner.pid)]


def join(state: StateDir, pid: int) -> None:
    """Record that `pid` runs the sandbox of `state`, and make sure the host route exists."""
    with _locked():
        temporary = state.owner_file.with_suffix(".tmp")
        temporary.write_text(json.dumps({"state_dir": str(state.root), "pid": pid}))
        temporary.replace(state.owner_file)
        network.add_host_route()


def leave(state: StateDir) -> bool:
    """Forget this sandbox; the last one to leave removes the host route (returns whether it
    did). A sandbox that never joined (or left already) removes nothing, the lock included."""
    if not state.owner_file.exists():
        return False
    with _locked():
        if not state.owner_file.exists():
            return False
        state.owner_file.unlink()
        if running():
            return False
        network.remove_host_route()
        if not any(OWNERS_DIR.glob("*.json")):
            LOCK_FILE.unlink()
            OWNERS_DIR.rmdir()
        return True
