"""On the sandbox, through the Kubernetes path: after the app container restarted, the next
session reuses the pod's agent and gets the pod's environment from the new process (the agent
was started with `--target-pid` of the old one)."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from typing import Any

from tests.kube.conftest import api_client, core, kubeconfig, namespace  # noqa: F401
from tests.kube.test_exec_target import exec_target
from tests.sandbox.conftest import run_pod
from tests.topology import PYTHON, wait_for

PRINT = "import os; print(os.environ['GENERATION_MARK'])"


def _container_pids(command: str) -> list[int]:
    found = subprocess.run(["pgrep", "-x", "-f", command], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def _restarts(core: Any, namespace: str) -> int:  # noqa: F811
    statuses = core.read_namespaced_pod("restarting", namespace).status.container_statuses
    return int(statuses[0].restart_count) if statuses else 0


def test_a_session_after_the_app_container_restarted_gets_its_environment(
    core: Any,  # noqa: F811
    namespace: str,  # noqa: F811
) -> None:
    seconds = str(600 + secrets.randbelow(10000))  # a command line no other process has
    mark = secrets.token_hex(4)
    run_pod(
        core,
        namespace,
        "restarting",
        ["sleep", seconds],
        container={"env": [{"name": "GENERATION_MARK", "value": mark}]},
    )
    wait_for(
        lambda: core.read_namespaced_pod("restarting", namespace).status.phase == "Running",
        timeout=60,
        what="the pod to run",
    )
    options = ("-q", "-n", namespace)
    first = exec_target("pod/restarting", PYTHON, "-c", PRINT, options=options)
    assert (first.returncode, first.stdout) == (0, f"{mark}\n"), first.stderr
    [old] = _container_pids(f"sleep {seconds}")
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: _restarts(core, namespace) >= 1, timeout=60, what="the restart")
    wait_for(
        lambda: [pid for pid in _container_pids(f"sleep {seconds}") if pid != old],
        timeout=60,
        what="the restarted container's process",
    )
    second = exec_target("pod/restarting", PYTHON, "-c", PRINT, options=options)
    assert (second.returncode, second.stdout) == (0, f"{mark}\n"), second.stderr
