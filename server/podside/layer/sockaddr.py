"""struct sockaddr_in / sockaddr_in6 / sockaddr_un as they sit in the program's memory."""

from __future__ import annotations

import ipaddress
import socket
import struct

from podside.layer.routing import IPAddress

_IN = struct.Struct("!2xH4s8x")  # family is host-endian: read it separately
_IN6 = struct.Struct("!2xHI16sI")
_FAMILY = struct.Struct("=H")


def family_of(raw: bytes) -> int:
    return _FAMILY.unpack_from(raw)[0] if len(raw) >= 2 else -1


def decode(raw: bytes) -> tuple[int, IPAddress, int] | None:
    """(family, address, port) of an inet sockaddr; None for other families or short input."""
    family = family_of(raw)
    if family == socket.AF_INET and len(raw) >= 16:
        port, packed = _IN.unpack_from(raw)
        return family, ipaddress.IPv4Address(packed), port
    if family == socket.AF_INET6 and len(raw) >= 24:
        port, _flow, packed, _scope = _IN6.unpack_from(raw)
        return family, ipaddress.IPv6Address(packed), port
    return None


def encode(family: int, host: str, port: int) -> bytes:
    """A sockaddr of `family` for host:port; IPv4 hosts become v4-mapped for AF_INET6."""
    address = ipaddress.ip_address(host)
    if family == socket.AF_INET:
        if not isinstance(address, ipaddress.IPv4Address):
            raise ValueError(f"{host} is not IPv4")
        return _FAMILY.pack(family) + _IN.pack(port, address.packed)[2:]
    if isinstance(address, ipaddress.IPv4Address):
        address = ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed)
    return _FAMILY.pack(family) + _IN6.pack(port, 0, address.packed, 0)[2:]


def loopback(family: int, port: int = 0, *, v6only: bool = False) -> bytes:
    """127.0.0.1:port for IPv4 sockets; for IPv6 ones ::1, or v4-mapped when dual-stack."""
    if family == socket.AF_INET:
        return encode(family, "127.0.0.1", port)
    return encode(family, "::1" if v6only else "127.0.0.1", port)


def wildcard(family: int) -> bytes:
    return encode(family, "0.0.0.0" if family == socket.AF_INET else "::", 0)


def unix_path(raw: bytes) -> str | None:
    """The filesystem path of a sockaddr_un; None for other families, abstract or unnamed."""
    if family_of(raw) != socket.AF_UNIX or len(raw) <= 2 or raw[2] == 0:
        return None
    return raw[2:].split(b"\0", 1)[0].decode(errors="surrogateescape")


def unix(name: str) -> bytes:
    """A sockaddr_un for `name` (a leading NUL: abstract, given at its exact length)."""
    encoded = name.encode(errors="surrogateescape")
    if not encoded.startswith(b"\0"):
        encoded += b"\0"
    return _FAMILY.pack(socket.AF_UNIX) + encoded


def unix_family() -> bytes:
    """A sockaddr_un holding only its family: bind(2) with it autobinds an abstract name."""
    return _FAMILY.pack(socket.AF_UNIX)
