"""The pod's hostname: uname, gethostname, `hostname`, `uname -n`, Go's os.Hostname and
/etc/hostname answer the pod's name under podside exec (the test pod has its own UTS
namespace, which the agent does not share)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.core.conftest import podside_exec
from tests.topology import POD_HOSTNAME, PYTHON, Pod

SCRIPT = (
    "import os, platform, socket\n"
    "print(socket.gethostname())\n"
    "print(os.uname().nodename)\n"
    "print(platform.node())\n"
    "print(open('/etc/hostname').read().strip())\n"
    "print(os.uname().release)\n"
)


def _output(pod: Pod, *command: str, options: tuple[str, ...] = ()) -> list[str]:
    result = podside_exec(pod, *command, options=options)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_python_sees_the_pods_hostname(pod: Pod) -> None:
    assert os.uname().nodename != POD_HOSTNAME
    lines = _output(pod, PYTHON, "-c", SCRIPT)
    assert lines == [POD_HOSTNAME] * 4 + [os.uname().release]  # only the nodename changes


def test_a_static_binarys_uname_syscall_answers_the_pods_hostname(
    pod: Pod, musl_probe: Path
) -> None:
    lines = _output(pod, str(musl_probe), "--hostname")
    local = os.uname()
    assert lines == [
        f"nodename: {POD_HOSTNAME}",
        f"gethostname: {POD_HOSTNAME}",
        f"sysname: {local.sysname}",
        f"release: {local.release}",
        f"machine: {local.machine}",
    ]


def test_go_and_the_commands_answer_the_pods_hostname(pod: Pod, go_probe: Path) -> None:
    assert _output(pod, str(go_probe), "--hostname") == [f"hostname: {POD_HOSTNAME}"]
    assert _output(pod, "uname", "-n") == [POD_HOSTNAME]
    assert _output(pod, "hostname") == [POD_HOSTNAME]


def test_the_hostname_is_the_pods_without_dns_too(pod: Pod) -> None:
    assert _output(pod, "uname", "-n", options=("--no-dns", "--no-env")) == [POD_HOSTNAME]


def test_no_hostname_keeps_this_machines(pod: Pod) -> None:
    local = os.uname().nodename
    assert _output(pod, PYTHON, "-c", SCRIPT, options=("--no-hostname",))[:2] == [local, local]
