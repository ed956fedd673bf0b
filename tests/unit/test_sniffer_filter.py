"""The sniffer's packet filter, run by a classic BPF interpreter (the kernel's semantics for the
instructions it uses): which segments wake the agent, redirected ports included."""

from __future__ import annotations

import socket
import struct

from podside_agent.sniffer import LOOPBACK_IFINDEX, build_port_filter

ETH0 = 2
HOST, OUTGOING = 0, 4
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
_ANCILLARY = 0xFFFFF000  # SKF_AD_OFF


def run_filter(program: bytes, packet: bytes, *, ifindex: int, pkttype: int = HOST) -> int:
    """What the filter returns for `packet` (0: dropped)."""
    ethertype = 0x0800 if packet[0] >> 4 == 4 else 0x86DD
    ancillary = {0: ethertype, 4: pkttype, 8: ifindex}
    instructions = [struct.unpack_from("=HBBI", program, at) for at in range(0, len(program), 8)]
    a = x = 0
    memory = [0] * 16
    pc = 0

    def load(offset: int, size: int) -> int:
        if offset >= _ANCILLARY:
            return ancillary[offset - _ANCILLARY]
        return int.from_bytes(packet[offset : offset + size], "big")

    while True:
        code, jt, jf, k = instructions[pc]
        pc += 1
        kind, size = code & 0x07, {0x00: 4, 0x08: 2, 0x10: 1}.get(code & 0x18, 4)
        mode = code & 0xE0
        if code == 0xB1:  # ldx 4*([k]&0xf)
            x = (packet[k] & 0x0F) * 4
        elif kind == 0x00:  # ld
            a = load(k if mode == 0x20 else x + k, size)
        elif code == 0x61:  # ldx M[k]
            x = memory[k]
        elif code == 0x02:  # st M[k]
            memory[k] = a
        elif code == 0x07:  # tax
            x = a
        elif code == 0x87:  # txa
            a = x
        elif code == 0x74:
            a >>= k
        elif code == 0x64:
            a = (a << k) & 0xFFFFFFFF
        elif code == 0x1C:
            a = (a - x) & 0xFFFFFFFF
        elif kind == 0x05:  # jumps
            taken = {0x15: a == k, 0x25: a > k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        elif kind == 0x06:
            return k
        else:
            raise AssertionError(f"instruction {code:#x} not interpreted")


def tcp(dport: int, flags: int, payload: bytes = b"", *, ipv6: bool = False) -> bytes:
    header = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    segment = header + payload
    if ipv6:
        addresses = socket.inet_pton(socket.AF_INET6, "fd00::1") * 2
        return struct.pack("!IHBB", 6 << 28, len(segment), 6, 64) + addresses + segment
    addresses = socket.inet_aton("10.0.0.1") + socket.inet_aton("10.0.0.2")
    ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(segment), 0, 0, 64, 6, 0) + addresses
    return ip + segment


def kept(program: bytes, packet: bytes, ifindex: int = ETH0, pkttype: int = HOST) -> bool:
    return run_filter(program, packet, ifindex=ifindex, pkttype=pkttype) != 0


def test_only_segments_that_open_carry_or_end_a_connection_to_a_mirrored_port_are_kept() -> None:
    program = build_port_filter([8080, 9000])
    for ipv6 in (False, True):
        assert kept(program, tcp(8080, SYN, ipv6=ipv6))
        assert kept(program, tcp(9000, ACK | PSH, b"GET / HTTP/1.1\r\n", ipv6=ipv6))
        assert kept(program, tcp(8080, ACK | FIN, ipv6=ipv6))
        assert kept(program, tcp(8080, RST, ipv6=ipv6))
        assert not kept(program, tcp(8080, ACK, ipv6=ipv6))  # a pure ACK never wakes us
        assert not kept(program, tcp(8081, SYN, ipv6=ipv6))
        assert not kept(program, tcp(8080, SYN, ipv6=ipv6), pkttype=OUTGOING)


def test_a_redirected_port_drops_only_the_syns_of_connections_from_other_hosts() -> None:
    program = build_port_filter([8080, 9000], redirected4=[8080], redirected6=[8080])
    for ipv6 in (False, True):
        assert not kept(program, tcp(8080, SYN, ipv6=ipv6))  # the steal router's
        assert kept(program, tcp(8080, SYN, ipv6=ipv6), ifindex=LOOPBACK_IFINDEX)
        # Segments of connections followed since before the redirect still count.
        assert kept(program, tcp(8080, ACK | PSH, b"x", ipv6=ipv6))
        assert kept(program, tcp(8080, ACK | FIN, ipv6=ipv6))
        assert kept(program, tcp(9000, SYN, ipv6=ipv6))  # not redirected


def test_a_port_redirected_for_ipv4_only_keeps_its_ipv6_connections() -> None:
    """Without IPv6 TPROXY the pod's IPv6 clients still reach the app: the sniffer copies them."""
    program = build_port_filter([8080], redirected4=[8080])
    assert not kept(program, tcp(8080, SYN))
    assert kept(program, tcp(8080, SYN, ipv6=True))
