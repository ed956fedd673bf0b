"""Environment: the target process's variables are merged into the program's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

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


def test_env_file_wins_over_the_pod_and_env_over_the_file(pod: Pod, tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "# settings for this run\nexport SHARED_NAME=\"from the file\"\nFILE_ONLY='a $b'\n"
        'PICKED=file\nMULTI="one\\ntwo"\n'
    )
    env = _environment(pod, "--env-file", str(env_file), "--env", "PICKED=flag")
    assert env["SHARED_NAME"] == "from the file"
    assert env["FILE_ONLY"] == "a $b"
    assert env["MULTI"] == "one\ntwo"
    assert env["PICKED"] == "flag"
    assert env["POD_ONLY_VAR"] == "from-the-pod"


def test_a_bad_env_file_is_one_line_before_the_agent_is_asked(pod: Pod, tmp_path: Path) -> None:
    env_file = tmp_path / "bad.env"
    env_file.write_text("GOOD=1\n\nthis is not an assignment\n")
    for path, expected in (
        (env_file, f"podside: --env-file {env_file}:3: expected NAME=VALUE"),
        (tmp_path / "missing.env", f"podside: --env-file {tmp_path / 'missing.env'}: No such"),
    ):
        # A wrong token: had podside reached the agent first, the error would be the token's.
        result = subprocess.run(
            [*pod.podside_exec(), "--token", "wrong", "--env-file", str(path), "--", "true"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert result.stderr.startswith(expected), result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_unset_env_removes_local_and_pod_variables_in_any_case(pod: Pod) -> None:
    env = _environment(
        pod,
        "--unset-env",
        "aws_profile",
        "--unset-env",
        "POD_ONLY_*",
        env={"AWS_PROFILE": "dev", "Aws_Profile": "dev2", "KEEP_ME": "1"},
    )
    assert "AWS_PROFILE" not in env and "Aws_Profile" not in env
    assert "POD_ONLY_VAR" not in env
    assert env["KEEP_ME"] == "1" and env["SHARED_NAME"] == "pod-value"


def test_env_map_gives_a_pod_variable_another_name(pod: Pod) -> None:
    env = _environment(
        pod,
        "--env-map",
        "SHARED_NAME=POD_SHARED_NAME",
        "--env-map",
        r"POD_(ONLY)_VAR=\1_FROM_POD",
        env={"SHARED_NAME": "local-value"},
    )
    assert env["POD_SHARED_NAME"] == "pod-value"
    assert env["SHARED_NAME"] == "local-value"  # this machine's keeps its name
    assert env["ONLY_FROM_POD"] == "from-the-pod" and "POD_ONLY_VAR" not in env


def test_podside_env_prints_what_a_session_takes(pod: Pod) -> None:
    def printed(*options: str) -> dict[str, str]:
        result = subprocess.run(
            [
                *(PYTHON, "-m", "podside", "env", "-o", "json"),
                *("--agent", pod.agent_address, "--token", pod.token, *options),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    shown = printed()
    assert shown["POD_ONLY_VAR"] == "from-the-pod" and shown["SHARED_NAME"] == "pod-value"
    assert "PATH" not in shown and "HOME" not in shown
    assert printed("--include-env", "*")["PATH"] == "/usr/local/bin:/usr/bin:/bin"
    assert printed("--env-map", "SHARED_NAME=OTHER", "-x", "POD_*") == {"OTHER": "pod-value"}
