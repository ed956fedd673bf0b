"""The nf_tables messages steal sends, read back attribute by attribute.

The expected numbers are written out here from the kernel's uapi headers (linux/netlink.h,
linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h), not taken from the module, and the
expressions are the ones `nft --debug=netlink` prints for the same rule:

    [ meta load iifname => reg 1 ]
    [ cmp neq reg 1 0x00006f6c 0x00000000 0x00000000 0x00000000 ]
    [ fib daddr type => reg 1 ]
    [ cmp eq reg 1 0x00000002 ]
    [ meta load nfproto => reg 1 ]
    [ cmp eq reg 1 0x00000002 ]
    [ meta load l4proto => reg 1 ]
    [ cmp eq reg 1 0x00000006 ]
    [ payload load 2b @ transport header + 2 => reg 1 ]
    [ lookup reg 1 set __set%d ]
    [ immediate reg 1 0x0000d204 ]
    [ tproxy ip port reg 1 ]
    [ immediate reg 0 accept ]
"""

from __future__ import annotations

import errno
import struct
from typing import Any

from podside_agent import nftables

NESTED = 0x8000


def read(data: bytes) -> list[tuple[int, bytes]]:
    """A flat list of (type, payload) attributes; a test-local reader, not the module's."""
    found = []
    while data:
        length, kind = struct.unpack_from("=HH", data)
        assert 4 <= length <= len(data)
        found.append((kind, data[4:length]))
        data = data[(length + 3) & ~3 :]
    return found


def nest(payload: bytes) -> Any:
    """An attribute tree as nested dict {type: payload or subtree}, for attributes marked
    nested; type numbers keep the NLA_F_NESTED bit so unmarked nests are caught."""
    return {kind: nest(value) if kind & NESTED else value for kind, value in read(payload)}


def be32(value: int) -> bytes:
    return struct.pack(">I", value & 0xFFFFFFFF)


def expression(name: str, data: dict[int, Any]) -> dict[int, Any]:
    # NFTA_EXPR_NAME = 1 (NUL-terminated), NFTA_EXPR_DATA = 2 (nested)
    return {1: name.encode() + b"\0", NESTED | 2: data}


def meta(key: int) -> dict[int, Any]:
    return expression("meta", {2: be32(key), 1: be32(1)})  # NFTA_META_KEY, NFTA_META_DREG reg 1


def cmp(op: int, data: bytes) -> dict[int, Any]:
    # NFTA_CMP_SREG = 1, NFTA_CMP_OP = 2, NFTA_CMP_DATA = 3 {NFTA_DATA_VALUE = 1}
    return expression("cmp", {1: be32(1), 2: be32(op), NESTED | 3: {1: data}})


def expected_rule(family: int, set_id: int, port: int) -> list[dict[int, Any]]:
    return [
        meta(6),  # NFT_META_IIFNAME
        cmp(1, b"lo" + bytes(14)),  # NFT_CMP_NEQ, IFNAMSIZ bytes
        # NFTA_FIB_DREG 1, NFTA_FIB_RESULT NFT_FIB_RESULT_ADDRTYPE, NFTA_FIB_FLAGS F_DADDR
        expression("fib", {1: be32(1), 2: be32(3), 3: be32(2)}),
        cmp(0, struct.pack("=I", 2)),  # RTN_LOCAL, a host-order u32 in the register
        meta(15),  # NFT_META_NFPROTO
        cmp(0, bytes([family])),
        meta(16),  # NFT_META_L4PROTO
        cmp(0, bytes([6])),  # IPPROTO_TCP
        # NFTA_PAYLOAD_DREG, _BASE (transport header), _OFFSET, _LEN
        expression("payload", {1: be32(1), 2: be32(2), 3: be32(2), 4: be32(2)}),
        # NFTA_LOOKUP_SET, _SET_ID, _SREG
        expression("lookup", {1: b"__set%d\0", 4: be32(set_id), 2: be32(1)}),
        # NFTA_IMMEDIATE_DREG reg 1, NFTA_IMMEDIATE_DATA {NFTA_DATA_VALUE port}
        expression("immediate", {1: be32(1), NESTED | 2: {1: struct.pack(">H", port)}}),
        expression("tproxy", {1: be32(family), 3: be32(1)}),  # NFTA_TPROXY_FAMILY, _REG_PORT
        # NFTA_IMMEDIATE_DREG NFT_REG_VERDICT, DATA {NFTA_DATA_VERDICT {NFTA_VERDICT_CODE}}
        expression("immediate", {1: be32(0), NESTED | 2: {NESTED | 2: {1: be32(1)}}}),
    ]


def messages(batch: bytes) -> list[tuple[int, int, int, int, int, bytes]]:
    """(type, flags, sequence, family, res_id, attributes) of each netlink message."""
    found = []
    while batch:
        length, kind, flags, sequence, _ = struct.unpack_from("=IHHII", batch)
        family, version, res_id = struct.unpack_from(">BBH", batch, 16)
        assert version == 0
        found.append((kind, flags, sequence, family, res_id, batch[20:length]))
        batch = batch[length:]
    return found


def test_the_ipv4_and_ipv6_rules_are_the_expressions_nft_builds() -> None:
    for family, listener in ((2, 1234), (10, 1235)):  # NFPROTO_IPV4, NFPROTO_IPV6
        rule = nftables.new_rule("t", nftables.redirect_expressions(family, 7, listener), "r")
        attributes = nest(rule.attributes)
        assert attributes[1] == b"t\0"  # NFTA_RULE_TABLE
        assert attributes[2] == b"prerouting\0"  # NFTA_RULE_CHAIN
        elements = read(rule.attributes)[-1]
        assert elements[0] == NESTED | 4  # NFTA_RULE_EXPRESSIONS
        listed = read(elements[1])
        assert [kind for kind, _ in listed] == [NESTED | 1] * 13  # NFTA_LIST_ELEM each
        assert [nest(data) for _, data in listed] == expected_rule(family, 7, listener)


def test_the_ports_are_an_anonymous_constant_set_filled_in_the_same_batch() -> None:
    new_set, new_elements = nftables.port_set("t", 3, [80, 8080])
    assert (new_set.kind, new_elements.kind) == (9, 12)  # NFT_MSG_NEWSET, NFT_MSG_NEWSETELEM
    assert nest(new_set.attributes) == {
        1: b"t\0",  # NFTA_SET_TABLE
        2: b"__set%d\0",  # NFTA_SET_NAME
        3: be32(0x1 | 0x2),  # NFTA_SET_FLAGS: NFT_SET_ANONYMOUS | NFT_SET_CONSTANT
        4: be32(13),  # NFTA_SET_KEY_TYPE: nft's inet_service
        5: be32(2),  # NFTA_SET_KEY_LEN
        10: be32(3),  # NFTA_SET_ID
    }
    attributes = nest(new_elements.attributes)
    assert attributes[1] == b"t\0" and attributes[2] == b"__set%d\0"
    assert attributes[4] == be32(3)  # NFTA_SET_ELEM_LIST_SET_ID
    elements = read(read(new_elements.attributes)[-1][1])  # NFTA_SET_ELEM_LIST_ELEMENTS
    # NFTA_LIST_ELEM {NFTA_SET_ELEM_KEY {NFTA_DATA_VALUE port, network order}}
    assert [nest(data) for _, data in elements] == [
        {NESTED | 1: {1: b"\x00\x50"}},
        {NESTED | 1: {1: b"\x1f\x90"}},
    ]


def test_more_ports_than_one_attribute_holds_go_in_several_element_messages() -> None:
    """An attribute's length is 16 bits and a port's element takes 16 bytes: 4095 a message."""
    ports = list(range(1, 10001))
    new_set, *new_elements = nftables.port_set("t", 1, ports)
    assert new_set.kind == 9  # NFT_MSG_NEWSET
    assert [request.kind for request in new_elements] == [12, 12, 12]  # NFT_MSG_NEWSETELEM
    found = []
    for request in new_elements:
        attributes = read(request.attributes)
        assert attributes[-1][0] == NESTED | 3  # NFTA_SET_ELEM_LIST_ELEMENTS
        assert nest(request.attributes)[4] == be32(1)  # each names the set by its id
        for _, element in read(attributes[-1][1]):
            found.append(struct.unpack(">H", nest(element)[NESTED | 1][1])[0])
    assert found == ports


def test_the_table_is_owned_and_the_chain_hooks_prerouting_at_mangle_priority() -> None:
    owned = nftables.new_table("t", owned=True)
    assert owned.kind == 0  # NFT_MSG_NEWTABLE
    # NFTA_TABLE_NAME, NFTA_TABLE_FLAGS = NFT_TABLE_F_OWNER
    assert nest(owned.attributes) == {1: b"t\0", 2: be32(0x2)}
    assert nest(nftables.new_table("t").attributes) == {1: b"t\0"}
    chain = nftables.new_chain("t")
    assert chain.kind == 3  # NFT_MSG_NEWCHAIN
    assert nest(chain.attributes) == {
        1: b"t\0",  # NFTA_CHAIN_TABLE
        3: b"prerouting\0",  # NFTA_CHAIN_NAME
        NESTED | 4: {1: be32(0), 2: be32(-150)},  # HOOK: NF_INET_PRE_ROUTING, mangle
        5: be32(1),  # NFTA_CHAIN_POLICY: NF_ACCEPT
        7: b"filter\0",  # NFTA_CHAIN_TYPE
    }
    flush = nftables.flush_chain("t")
    assert flush.kind == 8 and nest(flush.attributes) == {1: b"t\0", 2: b"prerouting\0"}


def test_a_batch_is_begin_the_acknowledged_messages_and_end() -> None:
    requests = [nftables.new_table("t"), nftables.delete_table("t")]
    found = messages(nftables.encode_batch(requests, 40))
    # NFNL_MSG_BATCH_BEGIN/END carry NFNL_SUBSYS_NFTABLES (10) as res_id; the messages are
    # NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*, family NFPROTO_INET, with NLM_F_REQUEST|NLM_F_ACK.
    assert [(kind, sequence, family, res_id) for kind, _, sequence, family, res_id, _ in found] == [
        (0x10, 40, 0, 10),
        (0x0A00, 41, 1, 0),
        (0x0A02, 42, 1, 0),
        (0x11, 43, 0, 10),
    ]
    assert [flags for _, flags, *_ in found] == [0x1, 0x1 | 0x4 | 0x400, 0x1 | 0x4, 0x1]
    assert found[1][5] == requests[0].attributes


def ack(sequence: int, code: int, *, offset: int | None = None, capped: bool = True) -> bytes:
    """An NLMSG_ERROR as linux/netlink.h lays it out: nlmsghdr, int error, the request's
    nlmsghdr (and its payload unless capped), then the extended-ACK attributes."""
    request = struct.pack("=IHHII", 16 + 8, 0x0A06, 0x5, sequence, 0)
    body = struct.pack("=i", code) + request + (b"" if capped else bytes(8))
    flags = 0x100 if capped else 0  # NLM_F_CAPPED
    if offset is not None:
        body += struct.pack("=HHI", 8, 2, offset)  # NLMSGERR_ATTR_OFFS
        flags |= 0x200  # NLM_F_ACK_TLVS
    return struct.pack("=IHHII", 16 + len(body), 2, flags, sequence, 4242) + body


def test_answers_are_read_with_their_errno_and_the_offset_of_what_was_refused() -> None:
    datagram = ack(5, 0) + ack(6, -errno.ENOENT, offset=96) + ack(7, -errno.EPERM, capped=False)
    assert list(nftables.parse_acks(datagram)) == [
        nftables.Ack(5, 0),
        nftables.Ack(6, errno.ENOENT, 96),
        nftables.Ack(7, errno.EPERM),
    ]


def test_a_refused_expression_is_named_with_the_module_the_kernel_lacks() -> None:
    rule = nftables.new_rule("t", nftables.redirect_expressions(10, 1, 1), "adding the rule")
    batch = nftables.encode_batch([rule], 0)
    rule_message = messages(batch)[1][5]
    tproxy = [
        start for start, _, name in rule.expressions if name == "tproxy"
    ]  # an offset from the start of the netlink message, as the kernel reports it
    assert len(tproxy) == 1
    data = read(rule_message[tproxy[0] - 20 :])[0]  # the attribute found at that offset
    assert nest(data[1])[1] == b"tproxy\0"
    line = nftables.describe_failure(rule, nftables.Ack(1, errno.EOPNOTSUPP, tproxy[0] + 8))
    assert line == (
        "nftables: adding the rule: the kernel has no usable 'tproxy' expression "
        "(Operation not supported); it needs the nft_tproxy module"
    )
    fib = next(start for start, _, name in rule.expressions if name == "fib")
    assert "nft_fib_inet module" in nftables.describe_failure(rule, nftables.Ack(1, 2, fib))


def test_eperm_anywhere_says_net_admin_in_one_line() -> None:
    for request in (None, nftables.new_table(nftables.TABLE, owned=True)):
        line = nftables.describe_failure(request, nftables.Ack(1, errno.EPERM))
        assert "\n" not in line
        assert "the agent needs NET_ADMIN" in line and "Operation not permitted" in line
    unsupported = nftables.describe_failure(
        nftables.new_table("t", owned=True), nftables.Ack(1, errno.EOPNOTSUPP)
    )
    assert unsupported.endswith("tables owned by the agent need Linux 5.12 or later")
    batch = nftables.describe_failure(None, nftables.Ack(1, errno.EOPNOTSUPP))
    assert "the kernel has no nf_tables" in batch
