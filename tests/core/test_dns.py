"""DNS: names resolve exactly as in the pod (its resolv.conf, search list, ndots, hosts), the
queries answered by the pod's nameserver from inside the pod, whatever the resolver."""

from __future__ import annotations

import functools
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.conftest import podside_exec
from tests.topology import PYTHON, Pod


def test_short_name_known_only_to_the_pods_resolver_resolves(pod: Pod) -> None:
    assert subprocess.run(["getent", "hosts", "backend"], capture_output=True).returncode != 0
    result = podside_exec(pod, "getent", "hosts", "backend")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [pod.cluster_ip, "backend.test.svc.cluster.local"]


def test_queries_are_answered_by_the_pods_nameserver_from_inside_the_pod(pod: Pod) -> None:
    podside_exec(pod, "getent", "ahostsv4", "backend.test.svc.cluster.local")
    log = pod.log("dnsmasq.log")
    assert f"query[A] backend.test.svc.cluster.local from {pod.cluster_gateway}" in log


def test_the_pods_hosts_file_is_used(pod: Pod) -> None:
    result = podside_exec(pod, "getent", "hosts", "hosts-only-name")
    assert result.stdout.split() == [pod.cluster_ip, "hosts-only-name"], result.stderr


def test_musl_resolver_resolves_and_connects(pod: Pod, musl_probe: Path) -> None:
    result = podside_exec(pod, str(musl_probe), "backend", "80", "/musl")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resolved: {pod.cluster_ip}" in result.stdout
    assert f"peer: {pod.cluster_ip}:80" in result.stdout
    assert '"path": "/musl"' in result.stdout


def test_go_resolver_resolves_and_connects(pod: Pod, go_probe: Path) -> None:
    result = podside_exec(pod, str(go_probe), "backend", "http://backend/go")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"lookup: [{pod.cluster_ip}]" in result.stdout
    assert '"path": "/go"' in result.stdout


def test_nodes_resolvers_use_the_pods_configuration(pod: Pod) -> None:
    script = (
        "const dns = require('dns');"
        "dns.lookup('backend', {family: 4}, (e, address) => {"
        "  console.log('lookup', e ? e.code : address);"
        "  dns.resolve4('backend.test.svc.cluster.local', (e2, addresses) =>"
        "    console.log('resolve4', e2 ? e2.code : addresses.join(',')));"
        "});"
    )
    result = podside_exec(pod, "node", "-e", script)
    assert result.stdout.splitlines() == [
        f"lookup {pod.cluster_ip}",
        f"resolve4 {pod.cluster_ip}",
    ], result.stderr


def test_busybox_static_resolver(pod: Pod) -> None:
    result = podside_exec(pod, "busybox", "nslookup", "backend")
    assert "Name:\tbackend.test.svc.cluster.local" in result.stdout, result.stdout + result.stderr
    assert f"Address: {pod.cluster_ip}" in result.stdout


def test_works_when_this_machine_uses_a_loopback_stub_resolver(pod: Pod, tmp_path: Path) -> None:
    """Like systemd-resolved's 127.0.0.53: the stub is here, the names are in the pod."""
    stub = tmp_path / "resolv.conf"
    stub.write_text("nameserver 127.0.0.53\noptions edns0\n")
    command = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        'mount --bind "$0" /etc/resolv.conf && exec "$@"',
        str(stub),
        PYTHON,
        "-m",
        "podside",
        "exec",
        "--agent",
        pod.agent_address,
        "--token",
        pod.token,
        "--",
        "getent",
        "hosts",
        "backend",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == [pod.cluster_ip, "backend.test.svc.cluster.local"], (
        result.stderr
    )


def test_a_query_sent_straight_to_a_loopback_stub_goes_to_the_pods_nameserver(pod: Pod) -> None:
    """A program with its own resolver that ignores resolv.conf and asks 127.0.0.53."""
    script = (
        "import socket, struct\n"
        "name = b''.join(bytes([len(p)]) + p for p in b'backend.test.svc.cluster.local'.split(b'.'))\n"
        "query = struct.pack('!HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0) + name + b'\\0' + struct.pack('!HH', 1, 1)\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(10)\n"
        "s.sendto(query, ('127.0.0.53', 53))\n"
        "answer, sender = s.recvfrom(512)\n"
        "print(sender, socket.inet_ntoa(answer[-4:]))\n"
    )
    result = podside_exec(pod, PYTHON, "-c", script)
    assert result.stdout.strip() == f"('127.0.0.53', 53) {pod.cluster_ip}", result.stderr


def test_no_dns_resolves_on_this_machine(pod: Pod) -> None:
    result = podside_exec(pod, "getent", "hosts", "backend", options=("--no-dns",))
    assert result.returncode != 0
    by_address = podside_exec(
        pod, "curl", "-sS", "-m", "10", f"http://{pod.cluster_ip}/", options=("--no-dns",)
    )
    assert '"server": "backend"' in by_address.stdout, by_address.stderr


class _HereNameserver(socketserver.BaseRequestHandler):
    """This machine's nameserver in the DNS filter tests: its own answers, NXDOMAIN else."""

    ANSWERS = {
        "only-here.example.": "127.0.0.98",
        "backend.test.svc.cluster.local.": "127.0.0.99",  # the pod's says pod.cluster_ip
    }

    def handle(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rrset

        data, sock = self.request
        query = dns.message.from_wire(data)
        answer = dns.message.make_response(query)
        name = str(query.question[0].name).lower()
        address = self.ANSWERS.get(name)
        if address is None or query.question[0].rdtype != 1:
            answer.set_rcode(dns.rcode.NXDOMAIN if address is None else dns.rcode.NOERROR)
        else:
            answer.answer.append(dns.rrset.from_text(name, 5, "IN", "A", address))
        sock.sendto(answer.to_wire(), self.client_address)


@pytest.fixture
def here_resolv_conf(tmp_path: Path) -> Iterator[Path]:
    server = socketserver.ThreadingUDPServer(("127.0.0.77", 53), _HereNameserver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.77\n")
    try:
        yield resolv
    finally:
        server.shutdown()
        server.server_close()


def _resolved_with_this_machines(pod: Pod, resolv: Path, name: str, *options: str) -> list[str]:
    """`getent hosts NAME` under podside, this machine's resolv.conf being `resolv`."""
    command = [
        *("unshare", "--mount", "--propagation", "private", "sh", "-c"),
        'mount --bind "$0" /etc/resolv.conf && exec "$@"',
        str(resolv),
        *(PYTHON, "-m", "podside", "exec", "--agent", pod.agent_address, "--token", pod.token),
        *options,
        *("--", "getent", "ahostsv4", name),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    return sorted({line.split()[0] for line in result.stdout.splitlines()})


def test_dns_local_names_are_resolved_by_this_machines_nameserver(
    pod: Pod, here_resolv_conf: Path
) -> None:
    resolved = functools.partial(_resolved_with_this_machines, pod, here_resolv_conf)
    assert resolved("only-here.example") == []  # the pod's nameserver does not know it
    assert resolved("only-here.example", "--dns-local", "only-here.example") == ["127.0.0.98"]
    assert resolved("backend", "--dns-local", "only-here.example") == [pod.cluster_ip]
    local_domain = ("--dns-local", "*.test.svc.cluster.local")
    assert resolved("backend", *local_domain) == ["127.0.0.99"]  # the search list's name


def test_dns_remote_names_only_are_resolved_by_the_pods_nameserver(
    pod: Pod, here_resolv_conf: Path
) -> None:
    resolved = functools.partial(_resolved_with_this_machines, pod, here_resolv_conf)
    only_backend = ("--dns-remote", "backend.test.svc.cluster.local")
    assert resolved("backend", *only_backend) == [pod.cluster_ip]
    assert resolved("only-here.example", *only_backend) == ["127.0.0.98"]
    both = (*only_backend, "--dns-local", "backend.test.svc.cluster.local")
    assert resolved("backend", *both) == ["127.0.0.99"]  # --dns-local wins


def test_dns_filters_need_the_dns_feature(pod: Pod) -> None:
    result = podside_exec(pod, "true", options=("--no-dns", "--dns-local", "example.com"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "podside: --dns-local chooses where names resolve: not with --no-dns"
    )
    bad = podside_exec(pod, "true", options=("--dns-remote", "bad name"))
    assert bad.returncode == 2 and bad.stderr.startswith("podside: --dns-remote 'bad name': ")
