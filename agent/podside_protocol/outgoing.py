"""Outgoing feature: the program's connections and datagrams leave from the pod.

The client opens a stream per TCP connection (`tcp`) or per UDP flow (`udp`, one datagram per
DATA frame) with the original destination; the agent answers OPENED with the addresses the pod
used, or REFUSED with the errno its own connect failed with. A connection to a Unix stream
socket of the pod (`unix`) names its absolute path in the target's filesystem; OPENED carries
nothing more.
"""

from __future__ import annotations

from typing import Any

from podside_protocol.addresses import Address, from_wire, to_wire
from podside_protocol.errors import RemoteProtocolError

STREAM_TCP = "tcp"
STREAM_UDP = "udp"
STREAM_UNIX = "unix"
MAX_UNIX_PATH = 4096  # PATH_MAX


def open_params(destination: Address) -> dict[str, Any]:
    return {"destination": to_wire(destination)}


def destination_of(params: dict[str, Any]) -> Address:
    return from_wire(params.get("destination"))


def opened_info(local: Address, peer: Address) -> dict[str, Any]:
    return {"local": to_wire(local), "peer": to_wire(peer)}


def unix_open_params(path: str) -> dict[str, Any]:
    return {"path": path}


def unix_path_of(params: dict[str, Any]) -> str:
    """The socket's path; a relative, empty or NUL-holding one is the peer's fault."""
    path = params.get("path")
    if (
        not isinstance(path, str)
        or not path.startswith("/")
        or "\0" in path
        or len(path.encode()) > MAX_UNIX_PATH
    ):
        raise RemoteProtocolError(f"invalid unix socket path {path!r}")
    return path
