"""What the agent can do in the pod, tried for real: an AF_PACKET socket (NET_RAW, mirror) and
an nftables table with the steal rule added and removed again (NET_ADMIN, the kernel's fib and
tproxy expressions: steal); and who it runs as, since the cluster, not the agent's spec, decides
that in the end."""

from __future__ import annotations

import os
import socket
from typing import Any

from podside_agent import nftables
from podside_agent.enrollment import process_credentials
from podside_agent.nftables import NftablesError
from podside_agent.podnet import PodNetwork

_ETH_P_ALL = 0x0003


def check(network: PodNetwork) -> dict[str, dict[str, Any]]:
    return {
        "net_raw": _net_raw(network),
        "nftables": _nftables(network),
        "identity": {"uid": os.geteuid(), "effective": _effective_capabilities()},
    }


def _effective_capabilities() -> int | None:
    try:
        return process_credentials("self", os.geteuid()).capabilities
    except (OSError, ValueError):
        return None


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
        nftables.probe(network)
    except NftablesError as error:
        return {"ok": False, "detail": str(error)}
    return {"ok": True, "detail": "a table with the steal rule was added and removed"}
