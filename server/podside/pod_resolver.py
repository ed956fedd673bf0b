"""Names looked up as the pod looks them up, for podside's own connections (port-forward).

The program's lookups need none of this: its own resolver reads the pod's resolv.conf and
hosts (served by the layer) and its datagrams leave from the pod. podside's own connections
to a named host do the same here: the pod's /etc/hosts first, then its nameservers, asked
over an outgoing UDP flow from the pod, with the pod's search list and `ndots` (a cluster's
`db` is `db.<namespace>.svc.cluster.local`). Messages are built and read with dnspython.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from podside_agent.peer import Peer
from podside_protocol.outgoing import STREAM_UDP, open_params

# resolv.conf(5)'s defaults, and its caps on what a file may ask for.
DEFAULT_NDOTS = 1
MAX_NDOTS = 15
DEFAULT_TIMEOUT_SECONDS = 5.0
MAX_TIMEOUT_SECONDS = 30.0
DEFAULT_ATTEMPTS = 2
MAX_ATTEMPTS = 5
MAX_NAMESERVERS = 3


class LookupFailed(Exception):
    """The name has no address in the pod; the message says why, in words a user knows."""


@dataclass(frozen=True)
class ResolverConfig:
    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    ndots: int = DEFAULT_NDOTS
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    attempts: int = DEFAULT_ATTEMPTS


def parse_resolv_conf(text: bytes) -> ResolverConfig:
    """resolv.conf(5) as glibc reads it: the last `search` or `domain` line wins."""
    servers: list[str] = []
    search: tuple[str, ...] = ()
    ndots, timeout, attempts = DEFAULT_NDOTS, DEFAULT_TIMEOUT_SECONDS, DEFAULT_ATTEMPTS
    for line in text.decode(errors="replace").splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        keyword, values = fields[0], fields[1:]
        if keyword == "nameserver" and values and len(servers) < MAX_NAMESERVERS:
            address = values[0].split("%")[0]
            with contextlib.suppress(ValueError):
                ipaddress.ip_address(address)
                servers.append(address)
        elif keyword in ("search", "domain"):
            search = tuple(value.rstrip(".") for value in values if value.strip("."))
        elif keyword == "options":
            for option in values:
                name, _, number = option.partition(":")
                # the pod's file: "ndots:²" passes isdigit() but int() refuses it
                if not (number.isascii() and number.isdigit()):
                    continue
                if name == "ndots":
                    ndots = min(int(number), MAX_NDOTS)
                elif name == "timeout":
                    timeout = float(min(max(int(number), 1), MAX_TIMEOUT_SECONDS))
                elif name == "attempts":
                    attempts = min(max(int(number), 1), MAX_ATTEMPTS)
    return ResolverConfig(tuple(servers), search, ndots, timeout, attempts)


def hosts_addresses(hosts: bytes, name: str) -> list[str]:
    """The addresses /etc/hosts gives `name` (any of a line's names, case-insensitive)."""
    wanted = name.rstrip(".").lower()
    found: list[str] = []
    for line in hosts.decode(errors="replace").splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or wanted not in (field.lower() for field in fields[1:]):
            continue
        address = fields[0].split("%")[0]
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(address)
            if address not in found:
                found.append(address)
    return found


def candidates(name: str, config: ResolverConfig) -> list[str]:
    """The names asked for, in order: a name with `ndots` dots is tried as given first."""
    if name.endswith("."):
        return [name.rstrip(".")]
    searched = [f"{name}.{domain}" for domain in config.search]
    if name.count(".") >= config.ndots:
        return [name, *searched]
    return [*searched, name]


class _Flow:
    """One UDP flow to a nameserver in the pod: queries out, answers matched by id."""

    def __init__(self, peer: Peer, server: str) -> None:
        self._peer = peer
        self._waiting: dict[int, asyncio.Future[dns.message.Message]] = {}
        self.stream_id = peer.open_stream_nowait(STREAM_UDP, open_params((server, 53)), self)

    async def ask(self, query: dns.message.Message, timeout: float) -> dns.message.Message:
        answer: asyncio.Future[dns.message.Message] = asyncio.get_running_loop().create_future()
        self._waiting[query.id] = answer
        try:
            self._peer.send_data(self.stream_id, query.to_wire())
            return await asyncio.wait_for(asyncio.shield(answer), timeout)
        finally:
            self._waiting.pop(query.id, None)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._peer.reset_stream(self.stream_id, "lookup done")

    # --- the stream's end (podside_agent.peer.StreamEndpoint) ---------------------------------

    def data_received(self, data: bytes) -> None:
        self._peer.acknowledge(self.stream_id, len(data))
        try:
            message = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return  # not an answer: a resolver ignores it and keeps waiting
        waiting = self._waiting.get(message.id)
        if waiting is not None and not waiting.done():
            waiting.set_result(message)

    def eof_received(self) -> None:
        pass

    def writable(self) -> None:
        pass

    def reset(self, reason: str) -> None:
        for waiting in self._waiting.values():
            if not waiting.done():
                waiting.set_exception(ConnectionError(reason))


class PodResolver:
    def __init__(self, peer: Peer, resolv_conf: bytes, hosts: bytes) -> None:
        self._peer = peer
        self._config = parse_resolv_conf(resolv_conf)
        self._hosts = hosts

    async def resolve(self, name: str) -> list[str]:
        """The pod's addresses for `name`, IPv4 first; an IP address is its own answer."""
        with contextlib.suppress(ValueError):
            return [str(ipaddress.ip_address(name.strip("[]")))]
        from_hosts = hosts_addresses(self._hosts, name)
        if from_hosts:
            return from_hosts
        if not self._config.nameservers:
            raise LookupFailed(f"{name}: the pod's resolv.conf names no nameserver")
        unanswered = False
        for candidate in candidates(name, self._config):
            try:
                addresses = await self._ask_servers(candidate)
            except TimeoutError:
                unanswered = True
                continue
            if addresses:
                return addresses
        if unanswered:
            raise LookupFailed(f"{name}: the pod's nameservers did not answer")
        raise LookupFailed(f"{name}: no such host in the pod")

    async def _ask_servers(self, name: str) -> list[str]:
        """`name`'s A and AAAA records; [] when it has none; TimeoutError when nobody answered."""
        for _ in range(self._config.attempts):
            for server in self._config.nameservers:
                flow = _Flow(self._peer, server)
                try:
                    answers = await asyncio.gather(
                        *(
                            flow.ask(_query(name, kind), self._config.timeout)
                            for kind in (dns.rdatatype.A, dns.rdatatype.AAAA)
                        ),
                        return_exceptions=True,
                    )
                finally:
                    flow.close()
                messages = [answer for answer in answers if isinstance(answer, dns.message.Message)]
                if not messages or any(m.rcode() == dns.rcode.SERVFAIL for m in messages):
                    continue  # the next server, as a stub resolver would
                return [address for message in messages for address in _addresses(message)]
        raise TimeoutError


def _query(name: str, kind: dns.rdatatype.RdataType) -> dns.message.Message:
    return dns.message.make_query(name + ".", kind, flags=dns.flags.RD)  # a random id


def _addresses(message: dns.message.Message) -> list[str]:
    if message.rcode() != dns.rcode.NOERROR:
        return []
    return [
        item.address
        for rrset in message.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for item in rrset
    ]
