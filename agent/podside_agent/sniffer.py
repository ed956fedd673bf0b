"""Sees every TCP segment that reaches the pod on the mirrored ports, without touching them.

An AF_PACKET socket (opened inside the pod's network namespace) with a classic BPF filter
that keeps only inbound TCP segments to the subscribed ports that carry data or a SYN, FIN or
RST flag, so pure ACKs never wake us. The receive buffer is forced to 64 MiB because a burst
larger than the default buffer is silently dropped; drops are read from PACKET_STATISTICS.

On a port the steal router takes (redirected), connections from other hosts go to the router,
not to the app, so the filter drops their SYNs: the reassembler only follows connections whose
SYN it saw, and the router copies what it passes on itself. Loopback connections are never
redirected and stay; connections that were open before the redirect began still reach the
app, and their SYN was seen, so they are followed to their end.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable

from podside_agent.podnet import PodNetwork

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
SO_ATTACH_FILTER = 26
RECEIVE_BUFFER = 64 * 1024 * 1024
_PACKET_OUTGOING = 4

# classic BPF opcodes
_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_H_IND, _LD_B_IND = 0x48, 0x50
_LDX_B_MSH = 0xB1
_LDX_MEM, _ST = 0x61, 0x02
_JEQ_K, _JSET_K, _JGT_K = 0x15, 0x45, 0x25
_RSH_K, _LSH_K, _SUB_X = 0x74, 0x64, 0x1C
_TAX, _TXA = 0x07, 0x87
_RET_K = 0x06
_SKF_AD_PROTOCOL = -0x1000 + 0 & 0xFFFFFFFF
_SKF_AD_PKTTYPE = -0x1000 + 4 & 0xFFFFFFFF
_SKF_AD_IFINDEX = -0x1000 + 8 & 0xFFFFFFFF
LOOPBACK_IFINDEX = 1  # the kernel gives `lo` index 1 in every network namespace
_TCP_SYN = 0x02
_KEEP = 0x40000


def build_port_filter(
    ports: Iterable[int], redirected4: Iterable[int] = (), redirected6: Iterable[int] = ()
) -> bytes:
    """BPF for a SOCK_DGRAM packet socket (data starts at the IP header).

    `redirected4` and `redirected6` are the ports whose connections from other
    hosts the steal router takes: their SYNs are dropped unless they came over loopback.
    """
    port_list = sorted(set(ports))
    ipv4_redirected, ipv6_redirected = set(redirected4), set(redirected6)
    # Each entry: (code, jump-true label or offset, jump-false label or offset, k)
    program: list[tuple[int, object, object, int]] = []

    def add(code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        program.append((code, jt, jf, k))

    add(_LD_W_ABS, _SKF_AD_PKTTYPE)
    add(_JEQ_K, _PACKET_OUTGOING, "drop", 0)
    add(_LD_W_ABS, _SKF_AD_PROTOCOL)
    add(_JEQ_K, 0x0800, 0, "not_ipv4")
    # IPv4: TCP, not a fragment tail
    add(_LD_B_ABS, 9)
    add(_JEQ_K, 6, 0, "drop")
    add(_LD_H_ABS, 6)
    add(_JSET_K, 0x1FFF, "drop", 0)
    add(_LDX_B_MSH, 0)  # X = IP header length
    add(_LD_H_IND, 2)  # destination port
    for port in port_list:
        add(_JEQ_K, port, "ipv4_redirected" if port in ipv4_redirected else "ipv4_port", 0)
    add(_RET_K, 0)
    program.append((-1, "ipv4_redirected", None, 0))
    add(_LD_W_ABS, _SKF_AD_IFINDEX)  # X still holds the IP header length
    add(_JEQ_K, LOOPBACK_IFINDEX, "ipv4_port", 0)
    add(_LD_B_IND, 13)  # TCP flags
    add(_JSET_K, _TCP_SYN, "drop", "ipv4_port")
    program.append((-1, "ipv4_port", None, 0))
    add(_LD_B_IND, 13)  # TCP flags
    add(_JSET_K, 0x07, "keep", 0)  # FIN, SYN or RST
    add(_TXA)
    add(_ST, 1)  # M[1] = IP header length
    add(_LD_B_IND, 12)
    add(_RSH_K, 4)
    add(_LSH_K, 2)
    add(_TAX)  # X = TCP header length
    add(_LD_H_ABS, 2)  # total length
    add(_SUB_X)
    add(_LDX_MEM, 1)
    add(_SUB_X)  # payload = total - TCP header - IP header
    add(_JGT_K, 0, "keep", "drop")
    program.append((-1, "not_ipv4", None, 0))
    add(_JEQ_K, 0x86DD, 0, "drop")
    # IPv6 without extension headers: next header TCP at 6, TCP header at 40
    add(_LD_B_ABS, 6)
    add(_JEQ_K, 6, 0, "drop")
    add(_LD_H_ABS, 42)
    for port in port_list:
        add(_JEQ_K, port, "ipv6_redirected" if port in ipv6_redirected else "ipv6_port", 0)
    add(_RET_K, 0)
    program.append((-1, "ipv6_redirected", None, 0))
    add(_LD_W_ABS, _SKF_AD_IFINDEX)
    add(_JEQ_K, LOOPBACK_IFINDEX, "ipv6_port", 0)
    add(_LD_B_ABS, 53)  # TCP flags
    add(_JSET_K, _TCP_SYN, "drop", "ipv6_port")
    program.append((-1, "ipv6_port", None, 0))
    add(_LD_B_ABS, 53)
    add(_JSET_K, 0x07, "keep", 0)
    add(_LD_B_ABS, 52)
    add(_RSH_K, 4)
    add(_LSH_K, 2)
    add(_TAX)
    add(_LD_H_ABS, 4)  # payload length (after the fixed header)
    add(_SUB_X)
    add(_JGT_K, 0, "keep", "drop")
    program.append((-1, "keep", None, 0))
    add(_RET_K, _KEEP)
    program.append((-1, "drop", None, 0))
    add(_RET_K, 0)

    labels: dict[object, int] = {}
    instructions: list[tuple[int, object, object, int]] = []
    for entry in program:
        if entry[0] == -1:
            labels[entry[1]] = len(instructions)
        else:
            instructions.append(entry)

    def resolve(target: object, position: int) -> int:
        if isinstance(target, int):
            return target
        offset = labels[target] - position - 1
        if not 0 <= offset <= 255:
            raise ValueError("too many mirrored ports for one filter")
        return offset

    packed = bytearray()
    for position, (code, jt, jf, k) in enumerate(instructions):
        packed += struct.pack(
            "=HBBI", code, resolve(jt, position), resolve(jf, position), k & 0xFFFFFFFF
        )
    return bytes(packed)


def _bind_all_interfaces(fd: int) -> None:
    """bind(2) with ifindex 0 (every interface); Python's bind() wants an interface name."""
    import ctypes
    import ctypes.util
    import os

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    # struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr
    address = struct.pack(
        "=H2siHBB8s", socket.AF_PACKET, struct.pack("!H", ETH_P_ALL), 0, 0, 0, 0, b""
    )
    if libc.bind(fd, address, len(address)) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


class _SockFprog:
    """struct sock_fprog kept alive for the setsockopt call."""

    def __init__(self, program: bytes) -> None:
        import ctypes

        self._buffer = ctypes.create_string_buffer(program, len(program))
        self.packed = struct.pack("HL", len(program) // 8, ctypes.addressof(self._buffer))


# (source ip, source port, destination ip, destination port, seq, flags, payload)
Segment = tuple[bytes, int, bytes, int, int, int, bytes]
_TCP = struct.Struct("!HHIIBB")


class Sniffer:
    """A packet socket for the subscribed ports; `read_segments` drains it without blocking."""

    def __init__(self, network: PodNetwork) -> None:
        self._network = network
        self._socket: socket.socket | None = None
        self._filter: _SockFprog | None = None
        self._buffer = bytearray(65536)
        self.dropped = 0
        self.received = 0

    def fileno(self) -> int:
        return self._socket.fileno() if self._socket else -1

    def set_ports(
        self, ports: Iterable[int], redirected4: Iterable[int] = (), redirected6: Iterable[int] = ()
    ) -> None:
        """Watch exactly these ports (opening the socket when first needed); see
        `build_port_filter` for the redirected ones."""
        program = _SockFprog(build_port_filter(ports, redirected4, redirected6))
        if self._socket is None:
            with self._network.entered():
                # Protocol 0 receives nothing until bound: no unfiltered packet is ever queued.
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program.packed)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
                except PermissionError:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
                _bind_all_interfaces(sock.fileno())
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            self._socket = sock
        else:
            self._socket.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, program.packed)
        self._filter = program

    def close(self) -> None:
        if self._socket is not None:
            self._collect_statistics()
            self._socket.close()
            self._socket = None

    def read_segments(self, on_segment: Callable[[Segment], None], limit: int = 512) -> int:
        """Parse up to `limit` queued packets; returns how many were read."""
        sock = self._socket
        if sock is None:
            return 0
        buffer = self._buffer
        view = memoryview(buffer)
        unpack_tcp = _TCP.unpack_from
        count = 0
        try:
            while count < limit:
                try:
                    size = sock.recv_into(buffer)
                except BlockingIOError:
                    break
                count += 1
                version = buffer[0] >> 4
                if version == 4:
                    header = (buffer[0] & 0x0F) * 4
                    total = min((buffer[2] << 8) | buffer[3], size)
                    source, destination = bytes(buffer[12:16]), bytes(buffer[16:20])
                elif version == 6:
                    header = 40
                    total = min(40 + ((buffer[4] << 8) | buffer[5]), size)
                    source, destination = bytes(buffer[8:24]), bytes(buffer[24:40])
                else:
                    continue
                sport, dport, seq, _ack, offset, flags = unpack_tcp(buffer, header)
                payload_start = header + (offset >> 4) * 4
                payload = bytes(view[payload_start:total]) if total > payload_start else b""
                on_segment((source, sport, destination, dport, seq, flags, payload))
        finally:
            view.release()
        self.received += count
        return count

    def _collect_statistics(self) -> None:
        if self._socket is None:
            return
        raw = self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _packets, drops = struct.unpack("II", raw)
        self.dropped += drops  # reading the counters resets them in the kernel

    def statistics(self) -> dict[str, int]:
        self._collect_statistics()
        return {"received": self.received, "dropped": self.dropped}
