"""What the agent can do in the pod, tried for real: an AF_PACKET socket (NET_RAW, mirror) and
an nftables table added and removed again (NET_ADMIN and libnftables, steal); and who it runs
as, since the cluster, not the agent's spec, decides that in the end."""

from __future__ import annotations

import os
import socket
from typing import Any

from podside_agent.enrollment import effective_capabilities
from podside_agent.nftables import NftablesError, open_library
from podside_agent.podnet import PodNetwork

_ETH_P_ALL = 0x0003


def check(network: PodNetwork) -> dict[str, dict[str, Any]]:
    return {
        "net_raw": _net_raw(network),
        "nftables": _nftables(network),
        "identity": {"uid": os.geteuid(), "effective": effective_capabilities("self")},
    }


def _net_raw(network: PodNetwork) -> dict[str, Any]:
    try:
        with network.entered():
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        sock.close()
    except OSError as error:
        return {"ok": False, "detail": f"AF_PACKET socket: {error.strerror or error}"}
    return {"ok": True, "detail": "AF_PACKET socket opened"}


def _nftables(network: PodNetwork) -> dict[str, Any]:
    try:
        library = open_library()
    except NftablesError as error:
        return {"ok": False, "detail": str(error)}
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
