"""Steal's nf_tables messages against the real kernel: what the kernel keeps reads back, through
`nft`, as the rule podside means; a leftover table is replaced by an owned one; a refusal names
what was refused; the doctor's probe names NET_ADMIN when it is missing. Each case runs in a
fresh network namespace (`unshare --net`) that dies with its process, so nothing is left
behind."""

from __future__ import annotations

import json
import subprocess
import textwrap

from tests.topology import PYTHON


def in_new_netns(script: str, *, net_admin: bool = True) -> subprocess.CompletedProcess[str]:
    """Python `script` in a network namespace of its own, with or without NET_ADMIN."""
    python = [PYTHON, "-"]
    if not net_admin:
        python = ["capsh", "--drop=cap_net_admin", "--", "-c", f"exec {PYTHON} -"]
    return subprocess.run(
        ["unshare", "--net", *python],
        input=textwrap.dedent(script),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_kernel_keeps_the_rules_nft_would_write_in_an_owned_table() -> None:
    result = in_new_netns(
        """
        import json
        import subprocess
        from podside_agent.nftables import StealTable
        from podside_agent.podnet import PodNetwork

        def listing():
            command = ["nft", "list", "table", "inet", "podside_steal"]
            return subprocess.run(command, capture_output=True, text=True, check=True).stdout

        table = StealTable(PodNetwork(None))
        table.create()
        table.apply([8080, 80, 8080], 1234, 1235)
        both = listing()
        table.apply([81], 1234)
        ipv4_only = listing()
        table.close()
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
        print(json.dumps([both, ipv4_only, tables.stdout]))
        """
    )
    assert result.returncode == 0, result.stderr
    both, ipv4_only, after_close = json.loads(result.stdout)
    rules = [line.strip() for line in both.splitlines() if "tproxy" in line]
    assert rules == [
        'iifname != "lo" fib daddr type local meta nfproto ipv4 tcp dport { 80, 8080 } '
        "tproxy ip to :1234 accept",
        'iifname != "lo" fib daddr type local meta nfproto ipv6 tcp dport { 80, 8080 } '
        "tproxy ip6 to :1235 accept",
    ]
    assert "flags owner" in both
    assert "type filter hook prerouting priority mangle; policy accept;" in both
    assert [line.strip() for line in ipv4_only.splitlines() if "tproxy" in line] == [
        'iifname != "lo" fib daddr type local meta nfproto ipv4 tcp dport { 81 } '
        "tproxy ip to :1234 accept"
    ]
    assert "podside_steal" not in after_close


def test_a_leftover_table_made_by_hand_is_replaced_by_an_owned_one() -> None:
    result = in_new_netns(
        """
        import subprocess
        from podside_agent.nftables import StealTable
        from podside_agent.podnet import PodNetwork

        leftover = (
            "table inet podside_steal {\\n"
            "  chain prerouting { type filter hook prerouting priority 0; }\\n"
            "  chain other { counter; }\\n"
            "}\\n"
        )
        subprocess.run(["nft", "-f", "-"], input=leftover, text=True, check=True)
        table = StealTable(PodNetwork(None))
        table.create()
        print(subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout)
        """
    )
    assert result.returncode == 0, result.stderr
    assert "flags owner" in result.stdout
    assert "chain other" not in result.stdout
    assert "priority mangle" in result.stdout


def test_refusals_are_one_line_naming_the_refused_part() -> None:
    result = in_new_netns(
        """
        import json
        from podside_agent import nftables
        from podside_agent.podnet import PodNetwork

        lines = {}
        first = nftables.StealTable(PodNetwork(None))
        first.create()
        second = nftables.StealTable(PodNetwork(None))
        try:
            second.create()
        except nftables.NftablesError as error:
            lines["owned"] = str(error)
        # A tproxy expression for an address family it has none for: the kernel refuses that
        # expression, and reports where it lies in the message.
        socket = nftables.NetfilterSocket(PodNetwork(None))
        expressions = nftables.redirect_expressions(2, 1, 1234)
        expressions[11] = nftables.Expression(
            "tproxy", nftables.be32(1, 7) + nftables.be32(3, 1)  # NFPROTO_BRIDGE
        )
        try:
            socket.run(
                [
                    nftables.new_table("probe"),
                    nftables.new_chain("probe"),
                    *nftables.port_set("probe", 1, [80]),
                    nftables.new_rule("probe", expressions, "adding the test rule"),
                ]
            )
        except nftables.NftablesError as error:
            lines["tproxy"] = str(error)
        print(json.dumps(lines))
        """
    )
    assert result.returncode == 0, result.stderr
    lines = json.loads(result.stdout)
    assert lines["owned"] == (
        "nftables refused adding table inet podside_steal (Operation not permitted): the agent "
        "needs NET_ADMIN, and no other process may own table inet podside_steal"
    )
    assert lines["tproxy"] == (
        "nftables: adding the test rule: the kernel has no usable 'tproxy' expression "
        "(Operation not supported); it needs the nft_tproxy module"
    )


def test_the_doctor_probe_passes_with_net_admin_and_names_it_without() -> None:
    probe = """
        from podside_agent.capabilities import check
        from podside_agent.podnet import PodNetwork

        print(check(PodNetwork(None))["nftables"])
        """
    allowed = in_new_netns(probe)
    assert allowed.returncode == 0, allowed.stderr
    assert "'ok': True" in allowed.stdout
    refused = in_new_netns(probe, net_admin=False)
    assert refused.returncode == 0, refused.stderr
    assert "'ok': False" in refused.stdout and "the agent needs NET_ADMIN" in refused.stdout


def test_more_ports_than_one_netlink_attribute_holds_are_stolen_in_both_families() -> None:
    """A netlink attribute holds at most 64 KiB, a set element 16 bytes of it: a set of more
    than 4095 ports is several element messages, and the batch more than a default send
    buffer holds."""
    result = in_new_netns(
        """
        import json
        import subprocess
        from podside_agent.nftables import StealTable
        from podside_agent.podnet import PodNetwork

        table = StealTable(PodNetwork(None))
        table.create()
        table.apply(range(1, 10001), 1234, 1235)
        command = ["nft", "-j", "list", "table", "inet", "podside_steal"]
        listing = json.loads(subprocess.run(command, capture_output=True, check=True).stdout)
        sets = []
        for item in listing["nftables"]:
            for expression in item.get("rule", {}).get("expr", []):
                right = expression.get("match", {}).get("right", {})
                if isinstance(right, dict) and "set" in right:
                    sets.append(right["set"])
        table.apply([80], 1234, 1235)
        table.close()
        print(json.dumps(sets))
        """
    )
    assert result.returncode == 0, result.stderr
    sets = json.loads(result.stdout)
    assert len(sets) == 2
    for ports in sets:
        covered = set()
        for element in ports:
            if isinstance(element, dict):  # nft shows runs of ports as ranges
                low, high = element["range"]
                covered.update(range(low, high + 1))
            else:
                covered.add(element)
        assert covered == set(range(1, 10001))
