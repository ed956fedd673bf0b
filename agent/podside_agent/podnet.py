"""The pod's network as the agent sees it: sockets made inside the target's network namespace.

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
import os
import socket
import threading
from collections.abc import Iterator

from podside_agent.target import netns_inode

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_CLONE_NEWNET = 0x40000000


def setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


class PodNetwork:
    """Creates sockets in the pod's network namespace."""

    def __init__(self, target_pid: int | None) -> None:
        self._lock = threading.Lock()
        self._target_namespace: int | None = None
        if target_pid is not None and netns_inode(target_pid) != netns_inode("self"):
            self._target_namespace = os.open(f"/proc/{target_pid}/ns/net", os.O_RDONLY)

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the (synchronous) body inside the pod's network namespace."""
        if self._target_namespace is None:
            yield
            return
        with self._lock:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                setns(self._target_namespace, _CLONE_NEWNET)
                try:
                    yield
                finally:
                    setns(own, _CLONE_NEWNET)
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

    def close(self) -> None:
        if self._target_namespace is not None:
            os.close(self._target_namespace)
            self._target_namespace = None
