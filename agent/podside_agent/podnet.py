"""The pod as the agent sees it: the target process, its network namespace and its files.

In Kubernetes the agent is an ephemeral container, so it already shares the pod's network
namespace and (with targetContainerName) the target container's processes. It can also run
outside the pod (`--target-pid` of a process elsewhere): sockets are then created inside the
target's namespace by switching the calling thread there for the duration of one synchronous
call and straight back. Nothing may await inside `entered()`: the event loop would run other
work in the wrong namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import socket
import threading
from collections.abc import Iterator

from podside_agent import files

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_CLONE_NEWNET = 0x40000000


def _setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def _netns_inode(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The command name may contain spaces and parentheses: parse after the last ')'.
        fields = stat.read().rsplit(b")", 1)[1].split()
    return int(fields[1])


def find_target_process() -> int | None:
    """The pod's main process: the oldest one sharing our network namespace.

    The agent itself, its ancestors (a shell or `ip netns exec` that started it) and the
    pod's `pause` process are not candidates.
    """
    own_pid = os.getpid()
    own_namespace = _netns_inode("self")
    ancestors = {own_pid}
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = own_pid
        while pid > 1:
            pid = _parent_of(pid)
            ancestors.add(pid)
    candidates = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in ancestors:
            continue
        try:
            if _netns_inode(pid) != own_namespace:
                continue
            with open(f"/proc/{pid}/comm", "rb") as comm:
                name = comm.read().strip()
            if name == b"pause" or _parent_of(pid) == own_pid:
                continue
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to look at
        candidates.append(pid)
    return min(candidates) if candidates else None


class PodNetwork:
    """Creates sockets and reads files as the target process would."""

    def __init__(self, target_pid: int | None) -> None:
        self.target_pid = target_pid
        self._lock = threading.Lock()
        self._target_namespace: int | None = None
        if target_pid is not None and _netns_inode(target_pid) != _netns_inode("self"):
            self._target_namespace = os.open(f"/proc/{target_pid}/ns/net", os.O_RDONLY)

    @property
    def shares_namespace(self) -> bool:
        return self._target_namespace is None

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the (synchronous) body inside the pod's network namespace."""
        if self._target_namespace is None:
            yield
            return
        with self._lock:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                _setns(self._target_namespace, _CLONE_NEWNET)
                try:
                    yield
                finally:
                    _setns(own, _CLONE_NEWNET)
            finally:
                os.close(own)

    def socket(self, family: int, kind: int) -> socket.socket:
        # Name the protocol: asyncio turns Nagle off (TCP_NODELAY) only for sockets whose
        # proto says TCP, and accepted sockets inherit it; with proto 0 a reply written in two
        # pieces waits ~40 ms for a delayed ACK.
        protocol = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else socket.IPPROTO_UDP
        with self.entered():
            sock = socket.socket(family, kind, protocol)
        sock.setblocking(False)
        return sock

    def read_file(self, path: str, limit: int) -> bytes:
        """Read `path` inside the target's root, symlinks resolved within that root.

        Without a target (a targetless agent pod) the agent's own root is the pod's.
        """
        if not path.startswith("/"):
            raise OSError(errno.EINVAL, f"not an absolute path: {path}")
        fd = self._open_in_root(path)
        with os.fdopen(fd, "rb") as file:
            data = file.read(limit + 1)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"{path} is larger than {limit} bytes")
        return data

    def _open_in_root(self, path: str) -> int:
        return files.open_in_root(self.target_pid or os.getpid(), path, os.O_RDONLY)

    def environment(self) -> dict[str, str]:
        if self.target_pid is None:
            raise OSError(errno.ESRCH, "no target process (start the agent with --target-pid)")
        with open(f"/proc/{self.target_pid}/environ", "rb") as file:
            raw = file.read()
        result: dict[str, str] = {}
        for entry in raw.split(b"\0"):
            name, separator, value = entry.partition(b"=")
            if separator and name:
                # Invalid UTF-8 cannot travel as msgpack text; replace rather than fail.
                result[name.decode(errors="replace")] = value.decode(errors="replace")
        return result

    def close(self) -> None:
        if self._target_namespace is not None:
            os.close(self._target_namespace)
            self._target_namespace = None
