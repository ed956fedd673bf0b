"""Sockets inside other network namespaces, made without leaving the daemon's own.

setns(2) for CLONE_NEWNET switches only the calling thread, and a socket keeps the namespace
it was created in. So one helper thread enters the target namespace, creates the socket and
returns home; the event loop then uses the socket as any other. Nothing may await while the
thread is inside another namespace, which is why only socket creation happens there.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

T = TypeVar("T")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


class NamespaceSockets:
    def __init__(self) -> None:
        # /proc/self is the thread-group leader, which never leaves the host namespace.
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netns")

    def _inside(self, netns_path: str, make: Callable[[], T]) -> T:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
            try:
                return make()
            finally:
                _setns(self._home)
        finally:
            os.close(target)

    async def run(self, netns_path: str, make: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, self._inside, netns_path, make
        )

    async def new_socket(
        self, netns_path: str, kind: socket.SocketKind = socket.SOCK_STREAM
    ) -> socket.socket:
        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, kind)
            sock.setblocking(False)
            return sock

        return await self.run(netns_path, make)

    async def connect(self, netns_path: str, host: str, port: int, timeout: float) -> socket.socket:
        """A TCP connection from inside `netns_path`; raises OSError like connect(2)."""
        sock = await self.new_socket(netns_path)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout
            )
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        os.close(self._home)
