"""A reused agent follows its target across a restart of the app container: the next session
gets the new process's environment and files, whether the agent found the target by itself
(the oldest process of the pod) or was given it (`--target-pid`, as the sandbox does)."""

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


def _session(pod: Pod) -> list[str]:
    result = podside_exec(pod, PYTHON, "-c", PROBE, options=("-q", "--fs", "read"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_new_session_after_the_target_restarted_gets_the_new_process(
    restartable_pod: Pod,
) -> None:
    pod = restartable_pod
    assert pod.app is not None
    assert _session(pod) == ["1", "production\n"]
    old_pid = pod.app.pid
    pod.restart_app({"POD_GENERATION": "2"})
    assert pod.app.pid != old_pid
    assert _session(pod) == ["2", "production\n"]
    assert agent_status(pod)["target_pid"] == pod.app.pid
