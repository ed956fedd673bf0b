"""Any language: the kernel does the interposition, so every runtime, static binaries, forked
children and programs under a ptrace debugger all reach the pod the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.core.conftest import podside_exec
from tests.topology import PYTHON, Pod

PYTHON_FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
NODE_FETCH = (
    "require('http').get(process.argv[1], r => { let body = '';"
    " r.on('data', c => body += c); r.on('end', () => console.log(body)); })"
)

COMMANDS = {
    "python": [PYTHON, "-c", PYTHON_FETCH, "{url}"],
    "node": ["node", "-e", NODE_FETCH, "{url}"],
    "curl": ["curl", "-sS", "-m", "10", "{url}"],
    "busybox-static": ["busybox", "wget", "-q", "-O", "-", "{url}"],
    "bash-fork": ["bash", "-c", 'curl -sS -m 10 "$0"; echo', "{url}"],
    "gdb": ["gdb", "--batch", "-ex", "run", "--args", "curl", "-sS", "-m", "10", "{url}"],
}


def _answer(output: str) -> dict[str, object]:
    for line in output.splitlines():
        if line.startswith("{"):
            return json.loads(line[: line.rindex("}") + 1])  # type: ignore[no-any-return]
    raise AssertionError(f"no answer in {output!r}")


@pytest.mark.parametrize("runtime", sorted(COMMANDS))
def test_runtime_reaches_a_pod_only_service_by_its_short_name(pod: Pod, runtime: str) -> None:
    url = f"http://backend/{runtime}"
    command = [part.replace("{url}", url) for part in COMMANDS[runtime]]
    result = podside_exec(pod, *command)
    assert result.returncode == 0, result.stdout + result.stderr
    answer = _answer(result.stdout)
    assert answer["path"] == f"/{runtime}"
    assert answer["client"] == pod.cluster_gateway


def test_static_go_binary(pod: Pod, go_probe: Path) -> None:
    result = podside_exec(pod, str(go_probe), "backend", "http://backend/go-static")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _answer(result.stdout.split("body: ", 1)[1])["client"] == pod.cluster_gateway


def test_static_musl_binary(pod: Pod, musl_probe: Path) -> None:
    result = podside_exec(pod, str(musl_probe), "backend", "80", "/musl-static")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _answer(result.stdout)["client"] == pod.cluster_gateway


def test_grandchildren_of_the_program_are_covered_too(pod: Pod) -> None:
    script = 'sh -c "sh -c \\"curl -sS -m 10 http://backend/grandchild\\"" & wait'
    result = podside_exec(pod, "bash", "-c", script)
    assert _answer(result.stdout)["path"] == "/grandchild", result.stderr
