"""`podside exec --target` with a value that would not do what is meant (an empty steal filter
takes the whole port): one line, exit 2, and nothing is added to the pod (an ephemeral
container can never be removed)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kube.test_exec_target import exec_target
from tests.sandbox.conftest import pod_phase, wait_for


@pytest.fixture
def app(core: Any, namespace: str) -> str:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "app"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}],
            },
        },
    )
    wait_for(lambda: pod_phase(core, namespace, "app") == "Running", what="app running")
    return "app"


def test_bad_values_add_no_agent_to_the_pod(core: Any, namespace: str, app: str) -> None:
    for option in (
        "--path-filter=",
        "--method-filter=,",
        "--http-filter=X-Dev:",
        "--fs-remote=",
        "--agent-timeout=0",
        "--agent-timeout=nan",
    ):
        result = exec_target(
            f"pod/{app}", "true", options=("-n", namespace, "--mode", "steal", option)
        )
        assert result.returncode == 2, (option, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("podside: --"), (option, result.stderr)
        assert not core.read_namespaced_pod(app, namespace).spec.ephemeral_containers, option
