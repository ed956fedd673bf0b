"""What the agent can do in the pod, tried for real: an AF_PACKET socket (NET_RAW, mirror) and
an nftables table added and removed again (NET_ADMIN and libnftables, steal)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
from typing import Any

from podside_agent.podnet import PodNetwork

_ETH_P_ALL = 0x0003


def check(network: PodNetwork) -> dict[str, dict[str, Any]]:
    return {"net_raw": _net_raw(network), "nftables": _nftables(network)}


def _net_raw(network: PodNetwork) -> dict[str, Any]:
    try:
        with network.entered():
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        sock.close()
    except OSError as error:
        return {"ok": False, "detail": f"AF_PACKET socket: {error.strerror or error}"}
    return {"ok": True, "detail": "AF_PACKET socket opened"}


def _nftables(network: PodNetwork) -> dict[str, Any]:
    name = ctypes.util.find_library("nftables")
    if name is None:
        return {"ok": False, "detail": "libnftables is not installed in the agent's image"}
    try:
        library = ctypes.CDLL(name)
    except OSError as error:
        return {"ok": False, "detail": f"cannot load {name}: {error}"}
    library.nft_ctx_new.restype = ctypes.c_void_p
    library.nft_ctx_new.argtypes = [ctypes.c_uint32]
    library.nft_ctx_free.argtypes = [ctypes.c_void_p]
    library.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
    library.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
    library.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
    library.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    table = f"podside_probe_{os.getpid()}"
    context = library.nft_ctx_new(0)
    try:
        library.nft_ctx_buffer_error(context)
        with network.entered():
            failed = library.nft_run_cmd_from_buffer(
                context, f"add table inet {table}\ndelete table inet {table}\n".encode()
            )
        if failed:
            message = (library.nft_ctx_get_error_buffer(context) or b"").decode(errors="replace")
            first = message.strip().splitlines()[0] if message.strip() else "failed"
            return {"ok": False, "detail": f"adding an nftables table: {first}"}
    finally:
        library.nft_ctx_free(context)
    return {"ok": True, "detail": "an nftables table was added and removed"}
