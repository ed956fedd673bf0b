"""The node's network: its namespace and bridge, one veth per pod, service DNAT in nftables,
and the host's `unreachable` route for the sandbox range. Everything is made with iproute2
and nft, named after the sandbox's state dir so teardown removes only that sandbox's."""

from __future__ import annotations

import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from podside.sandbox.layout import (
    BRIDGE,
    CLUSTER_DNS_IP,
    GATEWAY_IP,
    POD_CIDR,
    SANDBOX_RANGE,
    StateDir,
)

log = logging.getLogger(__name__)
NFT_TABLE = "podside_services"
NETNS_DIR = Path("/run/netns")


def run(
    *command: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result


def netns_path(name: str) -> str:
    return str(NETNS_DIR / name)


def ip_batch(netns: str, commands: list[str]) -> None:
    """Run `ip` commands inside `netns` in one process (`ip -batch`), failing on the first."""
    run("ip", "-n", netns, "-batch", "-", stdin="".join(f"{command}\n" for command in commands))


@dataclass
class ServiceRule:
    """One service port: traffic to cluster_ip:port is spread over the endpoints."""

    cluster_ip: str
    port: int
    protocol: str  # tcp or udp
    endpoints: list[tuple[str, int]] = field(default_factory=list)


class NodeNetwork:
    """One sandbox's node namespace (bridge, DNS address, service table) and its pods'
    namespaces, all named after the sandbox's state dir."""

    def __init__(self, state: StateDir) -> None:
        self.node_netns = state.node_netns
        self.pod_netns_prefix = state.pod_netns_prefix

    @property
    def node_netns_path(self) -> str:
        return netns_path(self.node_netns)

    def setup(self) -> None:
        """Create the node namespace with its bridge and DNS address."""
        run("ip", "netns", "add", self.node_netns)
        prefix = POD_CIDR.prefixlen
        ip_batch(
            self.node_netns,
            [
                "link set lo up",
                f"link add {BRIDGE} type bridge",
                f"addr add {GATEWAY_IP}/{prefix} dev {BRIDGE}",
                f"link set {BRIDGE} up",
                f"addr add {CLUSTER_DNS_IP}/32 dev lo",
            ],
        )
        run("ip", "netns", "exec", self.node_netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self.apply_service_rules([])

    def exists(self) -> bool:
        return Path(self.node_netns_path).exists()

    def teardown(self) -> None:
        """Remove the pods' namespaces and the node namespace (its bridge, veths and nftables
        go with it)."""
        for name in self.pod_namespaces():
            self.remove_pod(name, "")
        run("ip", "netns", "del", self.node_netns, check=False)

    def pod_namespaces(self) -> list[str]:
        if not NETNS_DIR.exists():
            return []
        return sorted(
            path.name for path in NETNS_DIR.iterdir() if path.name.startswith(self.pod_netns_prefix)
        )

    def add_pod(self, netns: str, veth: str, holder_pid: int, pod_ip: str) -> None:
        """Name the holder's namespace, wire it to the bridge and give it its address."""
        run("ip", "netns", "attach", netns, str(holder_pid))
        ip_batch(
            self.node_netns,
            [
                f"link add {veth} type veth peer name eth0 netns {netns}",
                f"link set {veth} master {BRIDGE} up",
            ],
        )
        ip_batch(
            netns,
            [
                "link set lo up",
                "link set eth0 up",
                f"addr add {pod_ip}/{POD_CIDR.prefixlen} dev eth0",
                f"route add default via {GATEWAY_IP}",
            ],
        )

    def remove_pod(self, netns: str, veth: str) -> None:
        if veth:
            run("ip", "-n", self.node_netns, "link", "del", veth, check=False)
        run("ip", "netns", "del", netns, check=False)

    def apply_service_rules(self, rules: list[ServiceRule]) -> None:
        """Replace the whole service table in one atomic nft transaction."""
        run("ip", "netns", "exec", self.node_netns, "nft", "-f", "-", stdin=_service_ruleset(rules))


def add_host_route() -> None:
    """As on a laptop beside a real cluster: the host has no way into pod or service networks.
    Every sandbox uses the same range, each in its own node namespace, so one route serves all."""
    run("ip", "route", "replace", "unreachable", str(SANDBOX_RANGE))


def remove_host_route() -> None:
    routes = run(
        "ip", "route", "show", "type", "unreachable", str(SANDBOX_RANGE), check=False
    ).stdout
    if routes.strip():
        run("ip", "route", "del", "unreachable", str(SANDBOX_RANGE), check=False)


def namespace_pids(name: str) -> list[int]:
    output = run("ip", "netns", "pids", name, check=False).stdout
    return [int(pid) for pid in output.split()]


def _service_ruleset(rules: list[ServiceRule]) -> str:
    chains: list[str] = []
    dispatch: list[str] = []
    for index, rule in enumerate(rules):
        if not rule.endpoints:
            continue
        targets = []
        for number, (address, port) in enumerate(rule.endpoints):
            chain = f"svc{index}_ep{number}"
            chains.append(
                f"  chain {chain} {{\n    meta l4proto {rule.protocol} dnat to {address}:{port}\n  }}"
            )
            targets.append(f"{number} : goto {chain}")
        dispatch.append(
            f"    ip daddr {rule.cluster_ip} {rule.protocol} dport {rule.port} "
            f"numgen random mod {len(rule.endpoints)} vmap {{ {', '.join(targets)} }}"
        )
    return (
        "\n".join(
            [
                f"table ip {NFT_TABLE} {{}}",
                f"delete table ip {NFT_TABLE}",
                f"table ip {NFT_TABLE} {{",
                *chains,
                "  chain prerouting {",
                "    type nat hook prerouting priority dstnat; policy accept;",
                *dispatch,
                "  }",
                "  chain postrouting {",
                "    type nat hook postrouting priority srcnat; policy accept;",
                # Pod -> service -> pod on the same bridge: without this the reply would go straight
                # back from the endpoint and never be un-DNATed.
                "    ct status dnat masquerade",
                "  }",
                "}",
            ]
        )
        + "\n"
    )


class AddressPool:
    """Pod IPs from the pod CIDR; the gateway and network addresses are never handed out."""

    def __init__(self) -> None:
        self._used: set[str] = {str(GATEWAY_IP)}

    def allocate(self) -> str:
        for address in POD_CIDR.hosts():
            if str(address) not in self._used:
                self._used.add(str(address))
                return str(address)
        raise RuntimeError(f"no free pod IP in {POD_CIDR}")

    def release(self, address: str) -> None:
        if address != str(GATEWAY_IP):
            self._used.discard(address)


def record(path: Path, **facts: object) -> None:
    """Merge facts into the network record the CLI reads on `down`."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(facts)
    # Other sandboxes read it too (which mount points this one made): never a torn file.
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2))
    temporary.replace(path)
