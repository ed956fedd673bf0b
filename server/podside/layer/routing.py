"""Where a connection of the program goes: stays on this machine, or leaves from the pod.

Pure decisions from the user's options; no syscalls here. The order of the rules:

1. `--outgoing-local CIDR[:PORT]` keeps matching destinations here, whatever else applies.
2. Port 53 is DNS: with the DNS feature on it goes to the pod (a loopback stub resolver such
   as 127.0.0.53 is replaced by the pod's nameserver); with it off it stays here.
3. Loopback stays here.
4. Everything else leaves from the pod when the outgoing feature is on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from podside.errors import PodsideError
from podside_protocol.addresses import MAX_PORT, port_from_text

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DNS_PORT = 53


@dataclass(frozen=True)
class LocalRule:
    network: IPNetwork
    port: int | None = None

    def matches(self, address: IPAddress, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)


def parse_local_rule(text: str) -> LocalRule:
    """`CIDR`, `CIDR:PORT`, `IP`, `IP:PORT`, or `[IPv6-CIDR]:PORT`."""
    network_text, port = text, None
    if text.startswith("["):
        closing = text.find("]")
        if closing < 0:
            raise PodsideError(f"--outgoing-local {text!r}: missing ']'")
        network_text = text[1:closing]
        rest = text[closing + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise PodsideError(f"--outgoing-local {text!r}: expected ':PORT' after ']'")
            port = _parse_port(rest[1:], text)
    elif text.count(":") == 1:
        network_text, port_text = text.split(":")
        port = _parse_port(port_text, text)
    try:
        network = ipaddress.ip_network(network_text, strict=False)
    except ValueError:
        raise PodsideError(
            f"--outgoing-local {text!r}: expected CIDR[:PORT], e.g. 10.0.0.0/8 or 192.168.1.5:5432"
        ) from None
    return LocalRule(network, port)


def _parse_port(text: str, whole: str) -> int:
    port = port_from_text(text)
    if port is None:
        raise PodsideError(f"--outgoing-local {whole!r}: {text!r} is not a port (1-{MAX_PORT})")
    return port


def normalize(address: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address is the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class Route:
    """`remote` is None to stay here; else the destination to dial from the pod."""

    remote: tuple[str, int] | None


LOCAL = Route(None)


@dataclass
class Router:
    outgoing: bool = True
    dns: bool = True
    local_rules: list[LocalRule] = field(default_factory=list)
    pod_nameservers: list[str] = field(default_factory=list)

    def route(self, address: IPAddress, port: int) -> Route:
        address = normalize(address)
        for rule in self.local_rules:
            if rule.matches(address, port):
                return LOCAL
        if port == DNS_PORT:
            if not self.dns:
                return LOCAL
            if address.is_loopback:
                if not self.pod_nameservers:
                    return LOCAL
                return Route((self.pod_nameservers[0], port))
            return Route((str(address), port))
        if address.is_loopback or address.is_unspecified:
            return LOCAL
        if not self.outgoing:
            return LOCAL
        return Route((str(address), port))
