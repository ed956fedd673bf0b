"""The steal redirect: a TPROXY rule in an nftables table the kernel removes when the agent dies.

The table is created with `flags owner` through libnftables (ctypes). A libnftables context
opens one netlink socket when it is made and keeps it until it is freed, so the table is owned
by that socket: the kernel deletes it as soon as the socket closes, which happens when the
agent exits for any reason, SIGKILL included. The context is made inside the pod's network
namespace (a netlink socket belongs to the namespace it was created in), once, and lives as
long as the agent.

That socket is not opened close-on-exec by libnftables. We mark it so ourselves, and the agent
never forks: a child holding it would keep the table, and the redirect, alive.

The table's name is fixed, so a leftover of an earlier run that was not owned (made by hand
with `nft`) is replaced at start. Every change flushes and refills the chain in one
transaction, so there is never a moment without the rule for a port that stays stolen.

Measured on Linux 6.x: packets to the pod's own addresses need no policy routing (no
`ip rule fwmark`/`local` route): their route is already local, and the tproxy expression
assigns the agent's transparent listener as their socket. The rule is limited to local
destinations (`fib daddr type local`), so nothing the pod forwards is touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import stat
from collections.abc import Iterable

from podside_agent.podnet import PodNetwork

TABLE = "podside_steal"


class NftablesError(Exception):
    """nftables refused; the message is one line for the user."""


def _socket_fds() -> set[int]:
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(f"/proc/self/fd/{name}").st_mode):
                found.add(int(name))
    return found


def open_library() -> ctypes.CDLL:
    """libnftables with the prototypes podside uses; NftablesError if it cannot be had."""
    name = ctypes.util.find_library("nftables")
    if name is None:
        raise NftablesError("libnftables is not installed in the agent's image")
    try:
        library = ctypes.CDLL(name)
    except OSError as error:
        raise NftablesError(f"cannot load {name}: {error}") from None
    library.nft_ctx_new.restype = ctypes.c_void_p
    library.nft_ctx_new.argtypes = [ctypes.c_uint32]
    library.nft_ctx_free.argtypes = [ctypes.c_void_p]
    library.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    library.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
    library.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    library.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    library.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    return library


class StealTable:
    """The agent's one nftables context and the table it owns."""

    def __init__(self, network: PodNetwork) -> None:
        library = open_library()
        self._library = library
        before = _socket_fds()
        with network.entered():
            context = library.nft_ctx_new(0)
        if not context:
            raise NftablesError("libnftables could not make a context")
        self._context: int | None = context
        for fd in _socket_fds() - before:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        library.nft_ctx_buffer_error(context)
        library.nft_ctx_buffer_output(context)

    def _run(self, commands: str) -> None:
        if self._context is None:
            raise NftablesError("the steal table is closed")
        failed = self._library.nft_run_cmd_from_buffer(self._context, commands.encode())
        if failed:
            message = self._library.nft_ctx_get_error_buffer(self._context) or b""
            lines = [line for line in message.decode(errors="replace").splitlines() if line]
            first = lines[0] if lines else "failed"
            if "Operation not permitted" in first:
                raise NftablesError(
                    f"nftables refused ({first.removeprefix('Error: ')}): the agent needs "
                    f"NET_ADMIN, and no other process may own table inet {TABLE}"
                )
            raise NftablesError(f"nftables: {first.removeprefix('Error: ')}")

    def create(self) -> None:
        """Replace a leftover of an earlier run with our own table, redirecting nothing yet."""
        # `add` first makes `delete` valid whether or not the table exists.
        self._run(
            f"add table inet {TABLE}\n"
            f"delete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n"
            "  flags owner\n"
            "  chain prerouting {\n"
            "    type filter hook prerouting priority mangle; policy accept;\n"
            "  }\n"
            "}\n"
        )

    def apply(
        self, ports: Iterable[int], listener_port: int, listener_port6: int | None = None
    ) -> None:
        """Redirect new connections to `ports` to the listeners (IPv4, and IPv6 when the pod
        has it), in one transaction."""
        commands = f"flush chain inet {TABLE} prerouting\n"
        port_list = ", ".join(str(port) for port in sorted(set(ports)))
        families = [("ipv4", "ip", listener_port)]
        if listener_port6 is not None:
            families.append(("ipv6", "ip6", listener_port6))
        if port_list:
            for family, tproxy, port in families:
                commands += (
                    f"add rule inet {TABLE} prerouting "
                    f'iifname != "lo" fib daddr type local meta nfproto {family} '
                    f"tcp dport {{ {port_list} }} tproxy {tproxy} to :{port} accept\n"
                )
        self._run(commands)

    def close(self) -> None:
        """Remove the table and close the socket (either alone would remove it)."""
        if self._context is None:
            return
        with contextlib.suppress(NftablesError):
            self._run(f"add table inet {TABLE}\ndelete table inet {TABLE}\n")
        self._library.nft_ctx_free(self._context)
        self._context = None
