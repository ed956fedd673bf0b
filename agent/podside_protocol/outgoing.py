"""Outgoing feature: the program's connections and datagrams leave from the pod.

The client opens a stream per TCP connection (`tcp`) or per UDP flow (`udp`, one datagram per
DATA frame) with the original destination; the agent answers OPENED with the addresses the pod
used, or REFUSED with the errno its own connect failed with.
"""

from __future__ import annotations

from typing import Any

from podside_protocol.addresses import Address, from_wire, to_wire

STREAM_TCP = "tcp"
STREAM_UDP = "udp"


def open_params(destination: Address) -> dict[str, Any]:
    return {"destination": to_wire(destination)}


def destination_of(params: dict[str, Any]) -> Address:
    return from_wire(params.get("destination"))


def opened_info(local: Address, peer: Address) -> dict[str, Any]:
    return {"local": to_wire(local), "peer": to_wire(peer)}
