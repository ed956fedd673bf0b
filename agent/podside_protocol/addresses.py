"""Addresses on the wire: `[host, port]` with a literal IPv4 or IPv6 host."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, TypeGuard

from podside_protocol.errors import RemoteProtocolError

Address = tuple[str, int]


def family_of(address: Address) -> int:
    """AF_INET6 for an IPv6 literal host, else AF_INET."""
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


def to_wire(address: Address) -> list[Any]:
    return [address[0], address[1]]


MAX_PORT = 65535


def is_port(value: object) -> TypeGuard[int]:
    """A port a connection can be made to: an int 1-65535 (a bool is not one)."""
    return type(value) is int and 0 < value <= MAX_PORT


def port_from_text(text: str) -> int | None:
    """`text` as a port (ASCII digits only: "²".isdigit() holds, but int() refuses it), or None."""
    if not (text.isascii() and text.isdigit()):
        return None
    port = int(text)
    return port if is_port(port) else None


def from_wire(value: Any) -> Address:
    """Validate a peer's address; a bad one is the peer's fault."""
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], str)
        or type(value[1]) is not int
        or not 0 <= value[1] <= MAX_PORT  # 0: an address with no port yet
    ):
        raise RemoteProtocolError(f"invalid address {value!r}")
    try:
        ipaddress.ip_address(value[0])
    except ValueError:
        raise RemoteProtocolError(f"invalid IP address {value[0]!r}") from None
    return value[0], value[1]
