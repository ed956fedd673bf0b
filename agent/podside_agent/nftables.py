"""The steal redirect: a TPROXY rule in an nftables table the kernel removes when the agent dies,
written to the kernel over netlink (NETLINK_NETFILTER) in pure Python.

The agent runs in a plain Python image, so there is no libnftables and no `nft`: this module
encodes the nf_tables messages itself, with every number taken from the kernel's uapi headers
(linux/netlink.h, linux/netfilter.h, linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h,
linux/rtnetlink.h). pyroute2 was weighed: it is pure Python, but 2.4 MB with its own asyncio
core, and its nftables layer builds only a few expressions (no fib, tproxy or set lookup), so
the rule would still be written attribute by attribute here.

The table is created with `flags owner` (NFT_TABLE_F_OWNER) from one netlink socket the agent
opens once, inside the pod's network namespace (a netlink socket belongs to the namespace it was
created in), and keeps for its whole life: the kernel deletes an owned table as soon as its
socket closes, which happens when the agent exits for any reason, SIGKILL included. The socket
is close-on-exec and the agent never forks: a child holding it would keep the redirect alive.

Every change is one nfnetlink batch (NFNL_MSG_BATCH_BEGIN ... END), which nf_tables applies as
one transaction or not at all; each message asks for an ACK, and the first refusal becomes a
one-line NftablesError (EPERM names NET_ADMIN; a missing expression names its kernel module,
found from the attribute offset the kernel reports with NETLINK_EXT_ACK). The table's name is
fixed, so a leftover of an earlier run that was not owned (made by hand with `nft`) is replaced
at start. Each change flushes and refills the chain in the same batch, so there is never a
moment without the rule for a port that stays stolen.

The rule is the one `nft` builds from

    iifname != "lo" fib daddr type local meta nfproto ipv4 tcp dport { PORTS }
    tproxy ip to :LISTENER accept

(and the same for ipv6 with `tproxy ip6`), expression for expression as
`nft --debug=netlink` prints it, the ports in an anonymous set made in the same batch (the
kernel frees it with the rule). Measured on Linux 6.x: packets to the pod's own addresses need
no policy routing (no `ip rule fwmark`/`local` route): their route is already local, and the
tproxy expression assigns the agent's transparent listener as their socket. The rule is limited
to local destinations (`fib daddr type local`), so nothing the pod forwards is touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from podside_agent.podnet import PodNetwork

TABLE = "podside_steal"
CHAIN = "prerouting"
ANSWER_SECONDS = 10.0  # the kernel answers while we send; this only bounds a broken kernel

# linux/netlink.h
_NETLINK_NETFILTER = 12
_SOL_NETLINK = 270  # bits/socket.h
_NETLINK_CAP_ACK = 10
_NETLINK_EXT_ACK = 11
_NLM_F_REQUEST = 0x1
_NLM_F_ACK = 0x4
_NLM_F_CAPPED = 0x100
_NLM_F_ACK_TLVS = 0x200
_NLM_F_CREATE = 0x400
_NLM_F_APPEND = 0x800
_NLMSG_ERROR = 0x2
_NLMSGERR_ATTR_MSG = 1
_NLMSGERR_ATTR_OFFS = 2
_NLA_F_NESTED = 1 << 15
_MAX_ATTRIBUTE_PAYLOAD = 0xFFFF - 4  # an attribute's length is 16 bits, its header included
_SO_SNDBUFFORCE = 32  # asm-generic/socket.h; Python does not name it
_NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
_NFGENMSG = struct.Struct(">BBH")  # family, version, resource id (big-endian)
_HEADERS = _NLMSG_HEADER.size + _NFGENMSG.size

# linux/netfilter/nfnetlink.h
_NFNL_MSG_BATCH_BEGIN = 0x10  # NLMSG_MIN_TYPE
_NFNL_MSG_BATCH_END = 0x11
_NFNL_SUBSYS_NFTABLES = 10
_NFNETLINK_V0 = 0

# linux/netfilter.h
_NF_ACCEPT = 1
_NF_INET_PRE_ROUTING = 0
_NFPROTO_UNSPEC = 0
_NFPROTO_INET = 1
_NFPROTO_IPV4 = 2
_NFPROTO_IPV6 = 10
_NF_IP_PRI_MANGLE = -150  # linux/netfilter_ipv4.h

# linux/rtnetlink.h, linux/in.h, linux/if.h
_RTN_LOCAL = 2
_IPPROTO_TCP = 6
_IFNAMSIZ = 16

# linux/netfilter/nf_tables.h: messages (enum nf_tables_msg_types)
_NFT_MSG_NEWTABLE = 0
_NFT_MSG_DELTABLE = 2
_NFT_MSG_NEWCHAIN = 3
_NFT_MSG_NEWRULE = 6
_NFT_MSG_DELRULE = 8
_NFT_MSG_NEWSET = 9
_NFT_MSG_NEWSETELEM = 12

# linux/netfilter/nf_tables.h: attributes
_NFTA_LIST_ELEM = 1
_NFTA_HOOK_HOOKNUM = 1
_NFTA_HOOK_PRIORITY = 2
_NFT_TABLE_F_OWNER = 0x2
_NFTA_TABLE_NAME = 1
_NFTA_TABLE_FLAGS = 2
_NFTA_CHAIN_TABLE = 1
_NFTA_CHAIN_NAME = 3
_NFTA_CHAIN_HOOK = 4
_NFTA_CHAIN_POLICY = 5
_NFTA_CHAIN_TYPE = 7
_NFTA_RULE_TABLE = 1
_NFTA_RULE_CHAIN = 2
_NFTA_RULE_EXPRESSIONS = 4
_NFT_SET_ANONYMOUS = 0x1
_NFT_SET_CONSTANT = 0x2
_NFTA_SET_TABLE = 1
_NFTA_SET_NAME = 2
_NFTA_SET_FLAGS = 3
_NFTA_SET_KEY_TYPE = 4
_NFTA_SET_KEY_LEN = 5
_NFTA_SET_ID = 10
_NFTA_SET_ELEM_KEY = 1
_NFTA_SET_ELEM_LIST_TABLE = 1
_NFTA_SET_ELEM_LIST_SET = 2
_NFTA_SET_ELEM_LIST_ELEMENTS = 3
_NFTA_SET_ELEM_LIST_SET_ID = 4
_NFTA_DATA_VALUE = 1
_NFTA_DATA_VERDICT = 2
_NFTA_VERDICT_CODE = 1
_NFTA_EXPR_NAME = 1
_NFTA_EXPR_DATA = 2
_NFT_REG_VERDICT = 0
_NFT_REG_1 = 1
_NFTA_IMMEDIATE_DREG = 1
_NFTA_IMMEDIATE_DATA = 2
_NFT_CMP_EQ = 0
_NFT_CMP_NEQ = 1
_NFTA_CMP_SREG = 1
_NFTA_CMP_OP = 2
_NFTA_CMP_DATA = 3
_NFTA_LOOKUP_SET = 1
_NFTA_LOOKUP_SREG = 2
_NFTA_LOOKUP_SET_ID = 4
_NFT_PAYLOAD_TRANSPORT_HEADER = 2
_NFTA_PAYLOAD_DREG = 1
_NFTA_PAYLOAD_BASE = 2
_NFTA_PAYLOAD_OFFSET = 3
_NFTA_PAYLOAD_LEN = 4
_NFT_META_IIFNAME = 6
_NFT_META_NFPROTO = 15
_NFT_META_L4PROTO = 16
_NFTA_META_DREG = 1
_NFTA_META_KEY = 2
_NFTA_TPROXY_FAMILY = 1
_NFTA_TPROXY_REG_PORT = 3
_NFTA_FIB_DREG = 1
_NFTA_FIB_RESULT = 2
_NFTA_FIB_FLAGS = 3
_NFT_FIB_RESULT_ADDRTYPE = 3
_NFTA_FIB_F_DADDR = 1 << 1

# nftables' own data type of a port (src/datatype.h TYPE_INET_SERVICE): the kernel keeps it
# only so that `nft list` prints the set's elements as ports.
_TYPE_INET_SERVICE = 13
_ANONYMOUS_SET = "__set%d"  # the kernel replaces %d with a free number

# What a kernel lacking an expression must load; the others are part of nf_tables itself.
_EXPRESSION_MODULES = {"fib": "nft_fib_inet", "tproxy": "nft_tproxy"}


class NftablesError(Exception):
    """nftables refused; the message is one line for the user."""


# --- encoding: netlink attributes (pure) -------------------------------------------------------


def attribute(kind: int, payload: bytes) -> bytes:
    """One netlink attribute (length, type, payload), padded to 4 bytes."""
    return struct.pack("=HH", 4 + len(payload), kind) + payload + bytes(-len(payload) % 4)


def nested(kind: int, *attributes: bytes) -> bytes:
    return attribute(kind | _NLA_F_NESTED, b"".join(attributes))


def be32(kind: int, value: int) -> bytes:
    """nf_tables' numbers (keys, registers, flags, priorities) are 32-bit big-endian."""
    return attribute(kind, struct.pack(">I", value & 0xFFFFFFFF))


def string(kind: int, text: str) -> bytes:
    return attribute(kind, text.encode() + b"\0")


def _data(kind: int, value: bytes) -> bytes:
    return nested(kind, attribute(_NFTA_DATA_VALUE, value))


def _port(number: int) -> bytes:
    return struct.pack(">H", number)


@dataclass(frozen=True)
class Expression:
    """One expression of a rule: its name and its NFTA_<NAME>_* attributes."""

    name: str
    attributes: bytes

    def encode(self) -> bytes:
        return nested(
            _NFTA_LIST_ELEM,
            string(_NFTA_EXPR_NAME, self.name),
            nested(_NFTA_EXPR_DATA, self.attributes),
        )


def _meta(key: int) -> Expression:
    return Expression("meta", be32(_NFTA_META_KEY, key) + be32(_NFTA_META_DREG, _NFT_REG_1))


def _compare(operation: int, value: bytes) -> Expression:
    return Expression(
        "cmp",
        be32(_NFTA_CMP_SREG, _NFT_REG_1)
        + be32(_NFTA_CMP_OP, operation)
        + _data(_NFTA_CMP_DATA, value),
    )


def redirect_expressions(family: int, set_id: int, listener_port: int) -> list[Expression]:
    """`iifname != "lo" fib daddr type local meta nfproto F tcp dport @set tproxy F to :L
    accept`, as nft lowers it (`nft --debug=netlink`); family is NFPROTO_IPV4 or _IPV6."""
    return [
        _meta(_NFT_META_IIFNAME),
        _compare(_NFT_CMP_NEQ, b"lo".ljust(_IFNAMSIZ, b"\0")),
        Expression(
            "fib",
            be32(_NFTA_FIB_DREG, _NFT_REG_1)
            + be32(_NFTA_FIB_RESULT, _NFT_FIB_RESULT_ADDRTYPE)
            + be32(_NFTA_FIB_FLAGS, _NFTA_FIB_F_DADDR),
        ),
        # The address type lands in the register as a host-order u32.
        _compare(_NFT_CMP_EQ, struct.pack("=I", _RTN_LOCAL)),
        _meta(_NFT_META_NFPROTO),
        _compare(_NFT_CMP_EQ, bytes([family])),
        _meta(_NFT_META_L4PROTO),
        _compare(_NFT_CMP_EQ, bytes([_IPPROTO_TCP])),
        Expression(  # the TCP destination port: 2 bytes at offset 2 of the transport header
            "payload",
            be32(_NFTA_PAYLOAD_DREG, _NFT_REG_1)
            + be32(_NFTA_PAYLOAD_BASE, _NFT_PAYLOAD_TRANSPORT_HEADER)
            + be32(_NFTA_PAYLOAD_OFFSET, 2)
            + be32(_NFTA_PAYLOAD_LEN, 2),
        ),
        Expression(
            "lookup",
            string(_NFTA_LOOKUP_SET, _ANONYMOUS_SET)
            + be32(_NFTA_LOOKUP_SET_ID, set_id)
            + be32(_NFTA_LOOKUP_SREG, _NFT_REG_1),
        ),
        Expression(
            "immediate",
            be32(_NFTA_IMMEDIATE_DREG, _NFT_REG_1)
            + _data(_NFTA_IMMEDIATE_DATA, _port(listener_port)),
        ),
        Expression(
            "tproxy", be32(_NFTA_TPROXY_FAMILY, family) + be32(_NFTA_TPROXY_REG_PORT, _NFT_REG_1)
        ),
        Expression(
            "immediate",
            be32(_NFTA_IMMEDIATE_DREG, _NFT_REG_VERDICT)
            + nested(
                _NFTA_IMMEDIATE_DATA,
                nested(_NFTA_DATA_VERDICT, be32(_NFTA_VERDICT_CODE, _NF_ACCEPT)),
            ),
        ),
    ]


# --- encoding: nf_tables messages and batches (pure) -------------------------------------------


@dataclass(frozen=True)
class Request:
    """One nf_tables message of a batch, and what it does in words (for error messages)."""

    kind: int  # NFT_MSG_*
    flags: int
    attributes: bytes
    action: str
    # (start, end, expression name): where each expression lies, as offsets from the start of
    # the netlink message, to name the one the kernel refused.
    expressions: tuple[tuple[int, int, str], ...] = ()
    unsupported: str = ""  # what EOPNOTSUPP means for this message, when it means more

    def expression_at(self, offset: int) -> str | None:
        for start, end, name in self.expressions:
            if start <= offset < end:
                return name
        return None


def new_table(name: str, *, owned: bool = False) -> Request:
    """`add table inet NAME` (which leaves an existing one as it is), `flags owner` if owned."""
    flags = be32(_NFTA_TABLE_FLAGS, _NFT_TABLE_F_OWNER) if owned else b""
    return Request(
        _NFT_MSG_NEWTABLE,
        _NLM_F_CREATE,
        string(_NFTA_TABLE_NAME, name) + flags,
        f"adding table inet {name}",
        unsupported="tables owned by the agent need Linux 5.12 or later" if owned else "",
    )


def delete_table(name: str) -> Request:
    return Request(
        _NFT_MSG_DELTABLE, 0, string(_NFTA_TABLE_NAME, name), f"deleting table inet {name}"
    )


def new_chain(table: str) -> Request:
    """`type filter hook prerouting priority mangle; policy accept;`"""
    return Request(
        _NFT_MSG_NEWCHAIN,
        _NLM_F_CREATE,
        string(_NFTA_CHAIN_TABLE, table)
        + string(_NFTA_CHAIN_NAME, CHAIN)
        + nested(
            _NFTA_CHAIN_HOOK,
            be32(_NFTA_HOOK_HOOKNUM, _NF_INET_PRE_ROUTING),
            be32(_NFTA_HOOK_PRIORITY, _NF_IP_PRI_MANGLE),
        )
        + be32(_NFTA_CHAIN_POLICY, _NF_ACCEPT)
        + string(_NFTA_CHAIN_TYPE, "filter"),
        f"adding chain inet {table} {CHAIN}",
    )


def flush_chain(table: str) -> Request:
    """A DELRULE naming no rule removes every rule of the chain (and their anonymous sets)."""
    return Request(
        _NFT_MSG_DELRULE,
        0,
        string(_NFTA_RULE_TABLE, table) + string(_NFTA_RULE_CHAIN, CHAIN),
        f"flushing chain inet {table} {CHAIN}",
    )


def port_set(table: str, set_id: int, ports: Sequence[int]) -> list[Request]:
    """An anonymous, constant set of TCP ports, known by `set_id` within its batch; its
    elements in as many messages as their 16-bit attribute lengths need (4095 ports each),
    all before the rule that binds the set, after which it takes no more."""
    naming = string(_NFTA_SET_TABLE, table) + string(_NFTA_SET_NAME, _ANONYMOUS_SET)
    elements = [nested(_NFTA_LIST_ELEM, _data(_NFTA_SET_ELEM_KEY, _port(port))) for port in ports]
    groups: list[list[bytes]] = [[]]
    size = 0
    for element in elements:
        if size + len(element) > _MAX_ATTRIBUTE_PAYLOAD:
            groups.append([])
            size = 0
        groups[-1].append(element)
        size += len(element)
    set_naming = (
        string(_NFTA_SET_ELEM_LIST_TABLE, table)
        + string(_NFTA_SET_ELEM_LIST_SET, _ANONYMOUS_SET)
        + be32(_NFTA_SET_ELEM_LIST_SET_ID, set_id)
    )
    return [
        Request(
            _NFT_MSG_NEWSET,
            _NLM_F_CREATE,
            naming
            + be32(_NFTA_SET_FLAGS, _NFT_SET_ANONYMOUS | _NFT_SET_CONSTANT)
            + be32(_NFTA_SET_KEY_TYPE, _TYPE_INET_SERVICE)
            + be32(_NFTA_SET_KEY_LEN, 2)
            + be32(_NFTA_SET_ID, set_id),
            "adding the set of stolen ports",
        ),
        *(
            Request(
                _NFT_MSG_NEWSETELEM,
                _NLM_F_CREATE,
                set_naming + nested(_NFTA_SET_ELEM_LIST_ELEMENTS, *group),
                "adding the stolen ports to their set",
            )
            for group in groups
        ),
    ]


def new_rule(table: str, expressions: Sequence[Expression], action: str) -> Request:
    head = string(_NFTA_RULE_TABLE, table) + string(_NFTA_RULE_CHAIN, CHAIN)
    spans = []
    start = _HEADERS + len(head) + 4  # past the NFTA_RULE_EXPRESSIONS attribute's own header
    encoded = []
    for expression in expressions:
        data = expression.encode()
        spans.append((start, start + len(data), expression.name))
        encoded.append(data)
        start += len(data)
    return Request(
        _NFT_MSG_NEWRULE,
        _NLM_F_CREATE | _NLM_F_APPEND,
        head + nested(_NFTA_RULE_EXPRESSIONS, *encoded),
        action,
        tuple(spans),
    )


def redirect(
    table: str, family: int, set_id: int, ports: Sequence[int], listener: int
) -> list[Request]:
    """The set of `ports` and the rule sending new connections to them to `listener`."""
    name = "IPv4" if family == _NFPROTO_IPV4 else "IPv6"
    rule = new_rule(
        table, redirect_expressions(family, set_id, listener), f"adding the {name} redirect rule"
    )
    return [*port_set(table, set_id, ports), rule]


def _message(
    kind: int, flags: int, family: int, sequence: int, payload: bytes, res_id: int = 0
) -> bytes:
    body = _NFGENMSG.pack(family, _NFNETLINK_V0, res_id) + payload
    return _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(body), kind, flags, sequence, 0) + body


def encode_batch(requests: Sequence[Request], sequence: int) -> bytes:
    """BEGIN, the requests (each asking for an ACK) and END, numbered from `sequence` on."""
    begin = _message(
        _NFNL_MSG_BATCH_BEGIN, _NLM_F_REQUEST, _NFPROTO_UNSPEC, sequence, b"", _NFNL_SUBSYS_NFTABLES
    )
    messages = [begin]
    for number, request in enumerate(requests, sequence + 1):
        messages.append(
            _message(
                (_NFNL_SUBSYS_NFTABLES << 8) | request.kind,
                _NLM_F_REQUEST | _NLM_F_ACK | request.flags,
                _NFPROTO_INET,
                number,
                request.attributes,
            )
        )
    messages.append(
        _message(
            _NFNL_MSG_BATCH_END,
            _NLM_F_REQUEST,
            _NFPROTO_UNSPEC,
            sequence + len(requests) + 1,
            b"",
            _NFNL_SUBSYS_NFTABLES,
        )
    )
    return b"".join(messages)


# --- decoding the kernel's answers (pure) -------------------------------------------------------


@dataclass(frozen=True)
class Ack:
    """The kernel's answer to one message: errno 0 for success."""

    sequence: int
    error: int
    offset: int | None = None  # of the refused attribute, from the start of our message
    text: str = ""


def parse_attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4 or offset + length > len(data):
            return
        yield kind & ~_NLA_F_NESTED, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def parse_acks(datagram: bytes) -> Iterator[Ack]:
    """The NLMSG_ERROR messages (ACKs and refusals) in one datagram from the kernel."""
    offset = 0
    while offset + _NLMSG_HEADER.size <= len(datagram):
        length, kind, flags, _, _ = _NLMSG_HEADER.unpack_from(datagram, offset)
        if length < _NLMSG_HEADER.size or offset + length > len(datagram):
            return
        message = datagram[offset : offset + length]
        offset += (length + 3) & ~3
        if kind != _NLMSG_ERROR or length < _NLMSG_HEADER.size + 4 + _NLMSG_HEADER.size:
            continue
        (code,) = struct.unpack_from("=i", message, _NLMSG_HEADER.size)
        original = _NLMSG_HEADER.unpack_from(message, _NLMSG_HEADER.size + 4)
        rest = _NLMSG_HEADER.size + 4 + _NLMSG_HEADER.size
        if code and not flags & _NLM_F_CAPPED:
            rest += (original[0] - _NLMSG_HEADER.size + 3) & ~3  # the echoed request
        bad_offset, text = None, ""
        if flags & _NLM_F_ACK_TLVS:
            for name, value in parse_attributes(message[rest:]):
                if name == _NLMSGERR_ATTR_OFFS and len(value) == 4:
                    (bad_offset,) = struct.unpack("=I", value)
                elif name == _NLMSGERR_ATTR_MSG:
                    text = value.rstrip(b"\0").decode(errors="replace")
        yield Ack(original[3], -code, bad_offset, text)


def describe_failure(request: Request | None, ack: Ack) -> str:
    """One line for the user; `request` is None when the kernel refused the whole batch."""
    action = request.action if request is not None else "changing the ruleset"
    reason = os.strerror(ack.error) + (f": {ack.text}" if ack.text else "")
    if ack.error == errno.EPERM:
        return (
            f"nftables refused {action} ({reason}): the agent needs NET_ADMIN, "
            f"and no other process may own table inet {TABLE}"
        )
    if ack.error in (errno.ENOENT, errno.EOPNOTSUPP):
        expression = request.expression_at(ack.offset) if request and ack.offset else None
        if expression is not None:
            module = _EXPRESSION_MODULES.get(expression, "nf_tables")
            return (
                f"nftables: {action}: the kernel has no usable '{expression}' expression "
                f"({reason}); it needs the {module} module"
            )
        if request is None and ack.error == errno.EOPNOTSUPP:
            return f"nftables: {reason}: the kernel has no nf_tables (module nf_tables)"
        if request is not None and request.unsupported and ack.error == errno.EOPNOTSUPP:
            return f"nftables: {action}: {reason}: {request.unsupported}"
    return f"nftables: {action}: {reason}"


# --- the socket --------------------------------------------------------------------------------


class NetfilterSocket:
    """One NETLINK_NETFILTER socket made in the pod's namespace, and batches sent over it."""

    def __init__(self, network: PodNetwork) -> None:
        try:
            with network.entered():
                sock = socket.socket(
                    socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, _NETLINK_NETFILTER
                )
        except OSError as error:
            raise NftablesError(
                f"cannot open a netfilter netlink socket ({error.strerror or error}): "
                "the kernel needs nfnetlink and nf_tables"
            ) from None
        try:
            # Refusals without the echoed request, and with the offset of what was refused.
            for option in (_NETLINK_CAP_ACK, _NETLINK_EXT_ACK):
                with contextlib.suppress(OSError):  # kernels before 4.12 answer without them
                    sock.setsockopt(_SOL_NETLINK, option, 1)
            sock.bind((0, 0))  # the kernel picks the port id that will own the table
            sock.settimeout(ANSWER_SECONDS)
        except OSError as error:
            sock.close()
            raise NftablesError(f"netfilter netlink socket: {error.strerror or error}") from None
        self._sock: socket.socket | None = sock
        self._next_sequence = 1

    def run(self, requests: Sequence[Request]) -> None:
        """Apply `requests` as one transaction; NftablesError (one line) if the kernel refuses."""
        if self._sock is None:
            raise NftablesError("the steal table is closed")
        first = self._next_sequence
        self._next_sequence += len(requests) + 2  # with BEGIN and END
        pending = {first + index: request for index, request in enumerate(requests, 1)}
        refused: list[tuple[int, Request, Ack]] = []
        batch = encode_batch(requests, first)
        try:
            self._make_room(len(batch))
            self._sock.send(batch)
            while pending:
                for ack in parse_acks(self._sock.recv(65536)):
                    if ack.sequence == first and ack.error:
                        raise NftablesError(describe_failure(None, ack))
                    request = pending.pop(ack.sequence, None)
                    if request is not None and ack.error:
                        refused.append((ack.sequence, request, ack))
        except TimeoutError:
            raise NftablesError(
                f"nftables: the kernel did not answer within {ANSWER_SECONDS:.0f} s"
            ) from None
        except OSError as error:
            raise NftablesError(f"nftables: netlink: {error.strerror or error}") from None
        if refused:
            _, request, ack = min(refused, key=lambda item: item[0])
            raise NftablesError(describe_failure(request, ack))

    def _make_room(self, length: int) -> None:
        """A batch is one datagram, refused (EMSGSIZE) when longer than the send buffer: many
        stolen ports make one longer than the default (208 KiB), so the buffer grows to fit,
        beyond the sysctl limit too as NET_ADMIN may (the kernel doubles what is asked)."""
        assert self._sock is not None
        needed = length + 4096  # the kernel's own accounting on top of the bytes
        if self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= needed:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, _SO_SNDBUFFORCE, needed)
        except PermissionError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, needed)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class StealTable:
    """The agent's netlink socket and the table it owns."""

    def __init__(self, network: PodNetwork) -> None:
        self._netfilter = NetfilterSocket(network)

    def create(self) -> None:
        """Replace a leftover of an earlier run with our own table, redirecting nothing yet."""
        # `add` first makes `delete` valid whether or not the table exists.
        self._netfilter.run(
            [new_table(TABLE), delete_table(TABLE), new_table(TABLE, owned=True), new_chain(TABLE)]
        )

    def apply(
        self, ports: Iterable[int], listener_port: int, listener_port6: int | None = None
    ) -> None:
        """Redirect new connections to `ports` to the listeners (IPv4, and IPv6 when the pod
        has it), in one transaction."""
        stolen = sorted(set(ports))
        requests = [flush_chain(TABLE)]
        families = [(_NFPROTO_IPV4, listener_port)]
        if listener_port6 is not None:
            families.append((_NFPROTO_IPV6, listener_port6))
        if stolen:
            for set_id, (family, listener) in enumerate(families, 1):
                requests += redirect(TABLE, family, set_id, stolen, listener)
        self._netfilter.run(requests)

    def close(self) -> None:
        """Remove the table and close the socket (either alone would remove it)."""
        with contextlib.suppress(NftablesError):
            self._netfilter.run([new_table(TABLE), delete_table(TABLE)])
        self._netfilter.close()


def probe(network: PodNetwork) -> None:
    """Add and remove, in one transaction, a table of our own with the steal rule in it: what
    steal needs (NET_ADMIN, owned tables, fib and tproxy). NftablesError (one line) if refused."""
    name = f"podside_probe_{os.getpid()}"
    netfilter = NetfilterSocket(network)
    try:
        netfilter.run(
            [
                new_table(name, owned=True),
                new_chain(name),
                *redirect(name, _NFPROTO_IPV4, 1, [0], 1),
                delete_table(name),
            ]
        )
    finally:
        netfilter.close()
