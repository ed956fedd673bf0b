"""Where a connection of the program goes: stays on this machine, or leaves from the pod.

Pure decisions from the user's options; no syscalls here. The order of the rules:

1. `--outgoing-local RULE` keeps matching destinations here, whatever else applies.
2. Port 53 is DNS: with the DNS feature on it goes to the pod (a loopback stub resolver such
   as 127.0.0.53 is replaced by the pod's nameserver); with it off it stays here.
3. Loopback stays here.
4. With the outgoing feature off (or off for the connection's protocol, `--no-outgoing-tcp`,
   `--no-outgoing-udp`) everything else stays here.
5. With `--outgoing-remote RULE`s, only what matches one of them leaves from the pod.
6. Everything else leaves from the pod.

A rule is mirrord's `[tcp://|udp://][NAME|IP|CIDR][:PORT]`: a protocol, an address or network
or host name, a port, each optional but not all. A name matches the addresses the program's
own lookups of it gave (`dns_names.NameBook`), with the pod's search domains: rule `db` holds
for an address the program got for `db.staging.svc.cluster.local`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from podside_protocol.addresses import MAX_PORT, port_from_text

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DNS_PORT = 53
PROTOCOLS = ("tcp", "udp")

_HOST_NAME = re.compile(
    r"(?=.{1,253}$)(?=.*[A-Za-z_])([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)
RULE_FORM = "CIDR[:PORT] or NAME[:PORT] (after tcp:// or udp:// for one protocol)"


class InvalidRule(ValueError):
    """The rule's text says what is wrong with it, in a few words."""


NamesOf = Callable[[IPAddress], frozenset[str]]


def _no_names(address: IPAddress) -> frozenset[str]:
    return frozenset()


@dataclass(frozen=True)
class OutgoingRule:
    network: IPNetwork | None = None
    name: str | None = None  # lowercase, without a trailing dot
    port: int | None = None
    protocol: str | None = None  # "tcp", "udp", or None for both

    def matches(
        self,
        address: IPAddress,
        port: int,
        protocol: str | None = None,
        names: NamesOf = _no_names,
        search: tuple[str, ...] = (),
    ) -> bool:
        """`protocol` None: not known, which only a rule for both protocols can match."""
        if self.protocol is not None and self.protocol != protocol:
            return False
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return address in self.network
        if self.name is not None:
            wanted = {self.name, *(f"{self.name}.{domain}" for domain in search)}
            return not wanted.isdisjoint(names(address))
        return True


def parse_outgoing_rule(text: str) -> OutgoingRule:
    """`[tcp://|udp://][NAME|IP|CIDR|[IPv6-CIDR]][:PORT]`; InvalidRule says what is wrong."""
    rest, protocol = text.strip(), None
    scheme, separator, after = rest.partition("://")
    if separator:
        if scheme.lower() not in PROTOCOLS:
            raise InvalidRule(f"unknown protocol {scheme!r}: tcp:// or udp://")
        protocol, rest = scheme.lower(), after
    if not rest and protocol is None:
        raise InvalidRule(f"empty: expected {RULE_FORM}")
    host, port = rest, None
    if rest.startswith("["):
        closing = rest.find("]")
        if closing < 0:
            raise InvalidRule("missing ']'")
        host, after_host = rest[1:closing], rest[closing + 1 :]
        if after_host:
            if not after_host.startswith(":"):
                raise InvalidRule("expected ':PORT' after ']'")
            port = _parse_port(after_host[1:])
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
        port = _parse_port(port_text)
    if not host:
        return OutgoingRule(port=port, protocol=protocol)
    try:
        return OutgoingRule(ipaddress.ip_network(host, strict=False), None, port, protocol)
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(host) or re.fullmatch(r"[\d.]+(/\d*)?", host):
        raise InvalidRule(f"expected {RULE_FORM}, e.g. 10.0.0.0/8 or db:5432")
    return OutgoingRule(None, host.rstrip(".").lower(), port, protocol)


def _parse_port(text: str) -> int:
    port = port_from_text(text)
    if port is None:
        raise InvalidRule(f"{text!r} is not a port (1-{MAX_PORT})")
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
    tcp: bool = True
    udp: bool = True
    dns: bool = True
    local_rules: list[OutgoingRule] = field(default_factory=list)
    remote_rules: list[OutgoingRule] = field(default_factory=list)
    pod_nameservers: list[str] = field(default_factory=list)
    search: tuple[str, ...] = ()  # the pod's search domains, for rules by name
    names: NamesOf = _no_names

    @property
    def needs_protocol(self) -> bool:
        """Whether a connect's route depends on its socket's type (TCP or UDP)."""
        rules = (*self.local_rules, *self.remote_rules)
        return not (self.tcp and self.udp) or any(rule.protocol for rule in rules)

    @property
    def needs_names(self) -> bool:
        return any(rule.name for rule in (*self.local_rules, *self.remote_rules))

    def route(self, address: IPAddress, port: int, protocol: str | None = None) -> Route:
        address = normalize(address)
        if any(self._matches(rule, address, port, protocol) for rule in self.local_rules):
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
        if not self.outgoing or not {"tcp": self.tcp, "udp": self.udp}.get(protocol or "", True):
            return LOCAL
        if self.remote_rules and not any(
            self._matches(rule, address, port, protocol) for rule in self.remote_rules
        ):
            return LOCAL
        return Route((str(address), port))

    def _matches(
        self, rule: OutgoingRule, address: IPAddress, port: int, protocol: str | None
    ) -> bool:
        return rule.matches(address, port, protocol, self.names, self.search)


_NAME_PATTERN = re.compile(r"(\*\.)?" + _HOST_NAME.pattern)


def parse_dns_pattern(text: str) -> str:
    """`--dns-local` / `--dns-remote`: a host name, or `*.DOMAIN` for every name under it."""
    pattern = text.strip().rstrip(".").lower()
    if not pattern or not _NAME_PATTERN.fullmatch(pattern):
        raise InvalidRule(
            "expected a host name or *.DOMAIN, e.g. db.corp.example or *.corp.example"
        )
    return pattern


def _name_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:])
    return name == pattern


@dataclass(frozen=True)
class DnsFilter:
    """Which names the pod's nameservers resolve (the others: this machine's), by pattern:
    `local` wins; with `remote` patterns only the names matching one go to the pod."""

    local: tuple[str, ...] = ()
    remote: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.local or self.remote)

    def in_pod(self, name: str) -> bool:
        name = name.rstrip(".").lower()
        if any(_name_matches(pattern, name) for pattern in self.local):
            return False
        return not self.remote or any(_name_matches(pattern, name) for pattern in self.remote)
