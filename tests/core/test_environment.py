"""Environment: the target process's variables are merged into the program's."""

from __future__ import annotations

import json
import os

from tests.core.conftest import podside_exec
from tests.topology import PYTHON, Pod

PRINT_ENV = "import json, os; print(json.dumps(dict(os.environ)))"


def _environment(pod: Pod, *options: str, env: dict[str, str] | None = None) -> dict[str, str]:
    result = podside_exec(
        pod, PYTHON, "-c", PRINT_ENV, options=options, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_pod_variables_arrive_and_local_ones_stay(pod: Pod) -> None:
    env = _environment(pod, env={"SHARED_NAME": "local-value", "ONLY_HERE": "1"})
    assert env["POD_ONLY_VAR"] == "from-the-pod"
    assert env["SHARED_NAME"] == "pod-value"  # the pod's value wins over this machine's
    assert env["ONLY_HERE"] == "1"
    assert env["PATH"] == os.environ["PATH"]  # the pod's PATH names the container's dirs
    assert env["HOME"] == os.environ["HOME"]


def test_exclude_env_drops_matching_pod_variables(pod: Pod) -> None:
    env = _environment(
        pod,
        "-x",
        "POD_SECRET_*",
        "--exclude-env",
        "SHARED_NAME",
        env={"SHARED_NAME": "local-value"},
    )
    assert "POD_SECRET_TOKEN" not in env
    assert env["SHARED_NAME"] == "local-value"
    assert env["POD_ONLY_VAR"] == "from-the-pod"


def test_include_env_keeps_only_matching_pod_variables(pod: Pod) -> None:
    env = _environment(pod, "--include-env", "POD_ONLY_*")
    assert env["POD_ONLY_VAR"] == "from-the-pod"
    assert "POD_SECRET_TOKEN" not in env and "SHARED_NAME" not in env


def test_env_assignment_wins_over_everything(pod: Pod) -> None:
    env = _environment(pod, "--env", "SHARED_NAME=mine", "--env", "EXTRA=a=b")
    assert env["SHARED_NAME"] == "mine"
    assert env["EXTRA"] == "a=b"


def test_no_env_takes_nothing_from_the_pod(pod: Pod) -> None:
    env = _environment(pod, "--no-env", "--env", "EXTRA=1")
    assert "POD_ONLY_VAR" not in env
    assert env["EXTRA"] == "1"
