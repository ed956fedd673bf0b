"""Which names the program's own lookups gave each address, for outgoing rules by name.

A rule such as `--outgoing-remote db:5432` must hold when the program resolved `db` itself
and connects to the address it got: the connect carries only the address. So the answers of
the pod's nameservers on their way back to the program (`proxy.UdpRelay`) and the pod's hosts
file are read here, address -> names. The event loop writes, the supervisor thread reads:
every access holds the lock. Bounded: the addresses seen longest ago are forgotten first.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections import OrderedDict

import dns.exception
import dns.message
import dns.rdatatype

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_ADDRESSES = 8192
_NAMES_PER_ADDRESS = 16


def _name(text: str) -> str:
    return text.rstrip(".").lower()


class NameBook:
    def __init__(self, limit: int = MAX_ADDRESSES) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._names: OrderedDict[IPAddress, frozenset[str]] = OrderedDict()

    def names_of(self, address: IPAddress) -> frozenset[str]:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        with self._lock:
            return self._names.get(address, frozenset())

    def learn(self, name: str, addresses: list[str]) -> None:
        """`name` resolved to `addresses` (literal IPs; others are passed over)."""
        parsed = []
        for text in addresses:
            with contextlib.suppress(ValueError):
                parsed.append(ipaddress.ip_address(text))
        with self._lock:
            for address in parsed:
                known = self._names.pop(address, frozenset())
                if len(known) < _NAMES_PER_ADDRESS:
                    known = known | {_name(name)}
                self._names[address] = known
            while len(self._names) > self._limit:
                self._names.popitem(last=False)

    def learn_answer(self, datagram: bytes) -> None:
        """A DNS answer on its way to the program: its question's name gets its addresses,
        and so does every name of the CNAME chain in it."""
        try:
            message = dns.message.from_wire(datagram)
        except dns.exception.DNSException:
            return  # not DNS, or truncated: the program's resolver decides what to do with it
        if not message.question:
            return
        asked = str(message.question[0].name)
        addresses = [
            item.address
            for rrset in message.answer
            if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
            for item in rrset
        ]
        if not addresses:
            return
        names = {asked, *(str(rrset.name) for rrset in message.answer)}
        for name in names:
            self.learn(name, addresses)

    def learn_hosts(self, hosts: bytes) -> None:
        """A hosts file (the pod's, which the program reads under podside)."""
        for line in hosts.decode(errors="replace").splitlines():
            fields = line.split("#", 1)[0].split()
            for name in fields[1:]:
                self.learn(name, [fields[0].split("%")[0]])
