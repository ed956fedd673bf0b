"""A reused agent follows its target across a restart of the app container: the next session
gets the new process's environment and files, and names the new process in its start-up line,
whether the agent found the target by itself (the oldest process of the pod) or was given it
(`--target-pid`, as the sandbox does)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.core.agent_client import agent_status
from tests.core.conftest import podside_exec
from tests.topology import POD_CONFIG, PYTHON, Pod, make_pod

PROBE = (
    "import json, os; print(json.dumps([os.environ.get('POD_GENERATION'), "
    f"open({POD_CONFIG + '/mode'!r}).read()]))"
)


@pytest.fixture(params=["found", "pinned"])
def restartable_pod(request: pytest.FixtureRequest) -> Iterator[Pod]:
    with make_pod({"POD_GENERATION": "1"}) as made:
        assert made.app is not None
        if request.param == "pinned":
            made.start_agent("--target-pid", str(made.app.pid))
        else:
            made.start_agent()
        yield made


def _session(pod: Pod, *options: str) -> tuple[list[str], str]:
    """What the program saw of the pod, and podside's start-up line."""
    result = podside_exec(pod, PYTHON, "-c", PROBE, options=("--fs", "read", *options))
    assert result.returncode == 0, result.stderr
    [started] = [line for line in result.stderr.splitlines() if "running in the context" in line]
    return json.loads(result.stdout), started


@pytest.mark.parametrize("environment", ["env", "no-env"])
def test_a_new_session_after_the_target_restarted_gets_the_new_process(
    restartable_pod: Pod, environment: str
) -> None:
    pod = restartable_pod
    assert pod.app is not None
    seen, started = _session(pod)
    assert seen == ["1", "production\n"]
    assert started.endswith(f"(pod process {pod.app.pid})")
    old_pid = pod.app.pid
    pod.restart_app({"POD_GENERATION": "2"})
    assert pod.app.pid != old_pid
    # The first session after the restart: its line names the process it now works with
    # (without the pod's environment, the agent's status says which).
    seen, started = _session(pod, *(["--no-env"] if environment == "no-env" else []))
    assert seen == ["2" if environment == "env" else None, "production\n"]
    assert started.endswith(f"(pod process {pod.app.pid})"), started
    assert agent_status(pod)["target_pid"] == pod.app.pid
