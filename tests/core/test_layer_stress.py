"""The layer under load from many threads at once: every stopped syscall is answered.

A program resolves pod-only names, connects to them through tunnels, reads and stats a pod-only
file (--fs read) and reads the served resolver files, hundreds of times at once and for several
rounds, from a pool of threads and from an asyncio loop. The supervisor thread and the event
loop then answer notifications side by side; a notification answered by neither leaves a
program thread in its syscall for ever, which the program's watchdog reports as the round that
hung."""

from __future__ import annotations

import pytest

from tests.core.conftest import PROGRAMS, podside_exec
from tests.topology import POD_CONFIG, PYTHON, Pod

ROUNDS = 4
JOBS = 200
APP_JSON = '{"greeting": "hello from the pod"}\n'


@pytest.mark.parametrize("mode", ["threads", "asyncio"])
def test_hundreds_of_concurrent_lookups_connects_and_opens_all_finish_right(
    pod: Pod, mode: str
) -> None:
    result = podside_exec(
        pod,
        PYTHON,
        str(PROGRAMS / "layer_stress.py"),
        mode,
        str(ROUNDS),
        str(JOBS),
        "backend",
        "80",
        pod.cluster_ip,
        f"{POD_CONFIG}/app.json",
        APP_JSON,
        options=("-q", "--fs", "read"),
        timeout=ROUNDS * 60 + 30,  # the program's own watchdog says first which round hung
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.splitlines() == [f"round {n} ok" for n in range(1, ROUNDS + 1)]
