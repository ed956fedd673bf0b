"""Cluster DNS: a small authoritative server for cluster.local, over UDP and TCP.

Answers A records for `SVC.NS.svc.cluster.local` (the ClusterIP, or the ready pod IPs of a
headless service) and `A-B-C-D.NS.pod.cluster.local`; NXDOMAIN for other names under
cluster.local; REFUSED for everything else, since the sandbox has no upstream to forward to.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from podside.sandbox.layout import CLUSTER_DOMAIN

log = logging.getLogger(__name__)

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_NOERROR = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3
RCODE_NOTIMP = 4
RCODE_REFUSED = 5
TTL_SECONDS = 5
HEADER = struct.Struct("!HHHHHH")

# name (lowercase, no trailing dot) -> addresses, or None if the name does not exist
Resolver = Callable[[str], list[str] | None]


class MalformedQuery(ValueError):
    pass


@dataclass(frozen=True)
class Question:
    name: str
    qtype: int
    qclass: int
    end: int  # offset just past the question in the query


def read_name(message: bytes, offset: int) -> tuple[str, int]:
    """A domain name at `offset` (following compression pointers); returns (name, next offset)."""
    labels: list[str] = []
    jumps = 0
    end = -1
    while True:
        if offset >= len(message):
            raise MalformedQuery("name runs past the message")
        length = message[offset]
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(message) or jumps > 16:
                raise MalformedQuery("bad compression pointer")
            if end < 0:
                end = offset + 2
            offset = ((length & 0x3F) << 8) | message[offset + 1]
            jumps += 1
            continue
        if length & 0xC0:
            raise MalformedQuery("unknown label type")
        offset += 1
        if length == 0:
            break
        label = message[offset : offset + length]
        if len(label) != length:
            raise MalformedQuery("label runs past the message")
        labels.append(label.decode("ascii", errors="replace"))
        offset += length
    return ".".join(labels), end if end >= 0 else offset


def parse_question(message: bytes) -> tuple[int, int, Question]:
    """(id, flags, first question) of a query."""
    if len(message) < HEADER.size:
        raise MalformedQuery("shorter than a header")
    query_id, flags, questions, _, _, _ = HEADER.unpack_from(message)
    if questions != 1:
        raise MalformedQuery("expected exactly one question")
    name, offset = read_name(message, HEADER.size)
    if offset + 4 > len(message):
        raise MalformedQuery("question runs past the message")
    qtype, qclass = struct.unpack_from("!HH", message, offset)
    return query_id, flags, Question(name, qtype, qclass, offset + 4)


def build_response(query: bytes, resolve: Resolver) -> bytes:
    """The response to one query; never raises for bad input (answers FORMERR instead)."""
    try:
        query_id, flags, question = parse_question(query)
    except MalformedQuery:
        query_id = struct.unpack_from("!H", query)[0] if len(query) >= 2 else 0
        return HEADER.pack(query_id, 0x8000 | RCODE_FORMERR, 0, 0, 0, 0)
    opcode = (flags >> 11) & 0xF
    recursion_desired = flags & 0x0100
    name = question.name.lower().rstrip(".")
    answers: list[str] = []
    authoritative = name == CLUSTER_DOMAIN or name.endswith("." + CLUSTER_DOMAIN)
    if opcode != 0:
        rcode = RCODE_NOTIMP
    elif not authoritative:
        rcode = RCODE_REFUSED
    else:
        addresses = resolve(name)
        if addresses is None:
            rcode = RCODE_NXDOMAIN
        else:
            rcode = RCODE_NOERROR
            if question.qtype == TYPE_A and question.qclass == CLASS_IN:
                answers = addresses
    response_flags = (
        0x8000 | (opcode << 11) | (0x0400 if authoritative else 0) | recursion_desired | rcode
    )
    parts = [
        HEADER.pack(query_id, response_flags, 1, len(answers), 0, 0),
        query[HEADER.size : question.end],
    ]
    for address in answers:
        # 0xC00C points back at the question's name.
        parts.append(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL_SECONDS, 4))
        parts.append(ipaddress.IPv4Address(address).packed)
    return b"".join(parts)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(build_response(data, self.resolve), addr)


async def _serve_tcp_client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, resolve: Resolver
) -> None:
    with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
        while True:
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            response = build_response(await reader.readexactly(length), resolve)
            writer.write(struct.pack("!H", len(response)) + response)
            await writer.drain()
    writer.close()


class DnsServer:
    """Serves on sockets already bound inside the node's namespace."""

    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self, udp_socket: socket.socket, tcp_socket: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self.resolve), sock=udp_socket
        )
        self._udp = transport
        self._tcp = await asyncio.start_server(
            lambda reader, writer: _serve_tcp_client(reader, writer, self.resolve), sock=tcp_socket
        )

    def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
