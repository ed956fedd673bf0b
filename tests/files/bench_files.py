"""`make bench` section `files`: program start-up under `--fs read` (every open and stat of the
program stops in the supervisor) against the same program under the layer without it, and
plain."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable

from tests.topology import PYTHON, Pod

RUNS = 30


def _per_run_us(command: list[str]) -> float:
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(result.stdout.split()[-1])


def _under_podside(pod: Pod, *options: str) -> list[str]:
    agent = ["--agent", pod.agent_address, "--token", pod.token]
    return [PYTHON, "-m", "podside", "exec", "-q", *agent, *options, "--"]


def files_startup(pod: Pod, report: Callable[[str], None]) -> None:
    report(f"## Program start-up under --fs read ({RUNS} runs in one podside exec, per run)")
    python = os.path.realpath(shutil.which("python3", path="/usr/bin:/bin") or sys.executable)
    programs = (
        ('python3 -c "import json, http.server"', f'{python} -c "import json, http.server"'),
        ("node -e \"require('http')\"", "node -e \"require('http')\""),
    )
    for name, command in programs:
        loop = (
            f"start=$(date +%s%N); for i in $(seq {RUNS}); do {command}; done; "
            f"echo $(( ($(date +%s%N) - start) / {RUNS * 1000} ))"
        )
        script = ["bash", "-c", loop]
        plain = min(_per_run_us(script) for _ in range(3))
        layered = min(_per_run_us([*_under_podside(pod), *script]) for _ in range(3))
        files = min(_per_run_us([*_under_podside(pod, "--fs", "read"), *script]) for _ in range(3))
        report(
            f"- `{name}`: {plain / 1000:.1f} ms plain, {layered / 1000:.1f} ms under the layer, "
            f"{files / 1000:.1f} ms with --fs read = **{files / plain:.2f}x** plain, "
            f"{files / layered:.2f}x the layer without files (goal ≤ 1.50x)"
        )


if __name__ == "__main__":
    from tests.topology import make_pod

    with make_pod() as test_pod:
        test_pod.start_agent()
        files_startup(test_pod, print)
