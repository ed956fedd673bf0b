"""Files the program reads from the pod instead of this machine (the resolver's, for DNS; the
hostname's).

Resolvers read their configuration with open(): glibc, musl, Go and Node (through glibc) all
open /etc/resolv.conf and /etc/hosts, and glibc consults /etc/nsswitch.conf first. Serving the
pod's copies makes search domains, ndots and the nameserver exactly the pod's, for every
language, without touching the DNS packets themselves. nsswitch.conf is this machine's own with
its `hosts:` line replaced, so that a local `resolve` or `mdns` module cannot answer instead
of the pod's nameserver.

Each file lives in a sealed memfd; every open gets a fresh read-only description of it (its
own offset) through /proc/self/fd, injected into the program by the supervisor.
"""

from __future__ import annotations

import fcntl
import os
import re

RESOLV_CONF = "/etc/resolv.conf"
HOSTS = "/etc/hosts"
NSSWITCH_CONF = "/etc/nsswitch.conf"
# The pod's hostname as files: the kubelet writes the pod's /etc/hostname, and the kernel's
# file is what Go's os.Hostname reads first.
HOSTNAME_FILES = ("/etc/hostname", "/proc/sys/kernel/hostname")

_F_ADD_SEALS = 1033
_SEALS = 0x0001 | 0x0002 | 0x0004 | 0x0008  # seal, shrink, grow, write


def nameservers(resolv_conf: bytes) -> list[str]:
    servers = []
    for line in resolv_conf.decode(errors="replace").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append(fields[1].split("%")[0])
    return servers


def nsswitch_for_pod(local: bytes | None) -> bytes:
    """This machine's nsswitch.conf, but host names come from files, then DNS."""
    hosts_line = "hosts: files dns"
    if not local:
        return (hosts_line + "\n").encode()
    text = local.decode(errors="replace")
    replaced, count = re.subn(r"(?m)^\s*hosts\s*:.*$", hosts_line, text)
    if not count:
        replaced = text.rstrip("\n") + "\n" + hosts_line + "\n"
    return replaced.encode()


class ServedFiles:
    def __init__(self, contents: dict[str, bytes]) -> None:
        self._fds: dict[bytes, int] = {}
        self.basenames: frozenset[bytes] = frozenset(
            os.path.basename(path).encode() for path in contents
        )
        for path, data in contents.items():
            fd = os.memfd_create(
                f"podside{path.replace('/', '-')}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
            )
            os.write(fd, data)
            fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
            self._fds[path.encode()] = fd

    def __contains__(self, path: bytes) -> bool:
        return path in self._fds

    def open(self, path: bytes) -> int:
        """A new read-only fd for `path` (the caller closes it)."""
        return os.open(f"/proc/self/fd/{self._fds[path]}", os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
