"""`podside env` on the sandbox: a pod's environment, Secret-sourced variables included, as a
session gives it, printed so that `podside exec --env-file` reads it back unchanged."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.sandbox.conftest import pod_phase, wait_for
from tests.topology import PYTHON

# A value a dotenv writer must quote: newlines, both quotes, a backslash, a `$` and a `#`.
AWKWARD = 'line one\nline "two" it\'s \\ $HOME # not a comment\n'


def _podside(
    *args: str, kubeconfig: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"KUBECONFIG": kubeconfig} if kubeconfig else {})}
    return subprocess.run(
        [PYTHON, "-m", "podside", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=cwd,
    )


def _app_with_a_secret(core: Any, namespace: str) -> None:
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "db"},
            "data": {"password": base64.b64encode(AWKWARD.encode()).decode()},
        },
    )
    container = {
        "name": "main",
        "image": "busybox",
        "command": ["sleep", "600"],
        "env": [
            {
                "name": "DB_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
            },
            {"name": "APP_MODE", "value": "staging"},
            {"name": "STAGING_REGION", "value": "eu-1"},
        ],
    }
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "app"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container]},
        },
    )
    wait_for(lambda: pod_phase(core, namespace, "app") == "Running", what="app running")


def test_env_prints_the_pods_variables_and_dotenv_reads_back(
    sandbox: Any, core: Any, namespace: str, tmp_path: Path
) -> None:
    _app_with_a_secret(core, namespace)
    where = ("--context", "podside-sandbox", "-n", namespace, "--target", "pod/app")
    as_json = _podside("env", *where, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    variables = json.loads(as_json.stdout)
    assert variables["DB_PASSWORD"] == AWKWARD
    assert variables["APP_MODE"] == "staging"
    assert "PATH" not in variables and "HOME" not in variables  # as a session leaves them out

    as_dotenv = _podside("env", *where, "-q")
    assert as_dotenv.returncode == 0 and as_dotenv.stderr == "", as_dotenv.stderr
    env_file = tmp_path / "pod.env"
    env_file.write_text(as_dotenv.stdout)
    printed = _podside(
        "exec",
        *where,
        "--no-env",
        "--env-file",
        str(env_file),
        "--",
        PYTHON,
        "-c",
        "import json, os; print(json.dumps(dict(os.environ)))",
    )
    assert printed.returncode == 0, printed.stderr
    program_env = json.loads(printed.stdout.splitlines()[-1])
    assert {name: program_env[name] for name in variables} == variables

    # The session's filters, when given, are applied the same way.
    filtered = _podside(
        "env",
        *where,
        "-o",
        "json",
        "-x",
        "DB_*",
        "--env-map",
        r"STAGING_(.*)=\1",
        "--unset-env",
        "app_mode",
    )
    assert filtered.returncode == 0, filtered.stderr
    shown = json.loads(filtered.stdout)
    assert shown["REGION"] == "eu-1"
    assert not {"DB_PASSWORD", "APP_MODE", "STAGING_REGION"} & set(shown)

    # The project's config file chooses the pod and filters as it does for exec; its
    # exec-only keys (mode) are passed over.
    project = tmp_path / "project"
    (project / ".podside").mkdir(parents=True)
    (project / ".podside" / "config.json").write_text(
        json.dumps(
            {
                "context": "podside-sandbox",
                "namespace": namespace,
                "target": "pod/app",
                "exclude-env": ["DB_*"],
                "mode": "steal",
            }
        )
    )
    configured = _podside("env", "-o", "json", cwd=project)
    assert configured.returncode == 0, configured.stderr
    expected = {name: value for name, value in variables.items() if not name.startswith("DB_")}
    assert json.loads(configured.stdout) == expected


def test_env_errors_are_one_line(sandbox: Any, namespace: str) -> None:
    missing = _podside("env", "--context", "podside-sandbox", "-n", namespace, "-t", "pod/nope")
    assert missing.returncode != 0
    assert missing.stderr.startswith("podside: ") and len(missing.stderr.splitlines()) == 1
    assert "nope" in missing.stderr
    assert missing.stdout == ""
    neither = _podside("env", "-o", "json")
    assert neither.returncode == 2
    assert (
        neither.stderr == "podside: say which pod: one of --target KIND/NAME or --agent HOST:PORT\n"
    )
    targetless = _podside("env", "--targetless")
    assert targetless.returncode == 2 and targetless.stderr == neither.stderr


def test_env_without_rights_names_what_is_missing(sandbox: Any, core: Any, namespace: str) -> None:
    from podside.sandbox.control import add_restricted_user
    from podside.sandbox.users import Rule

    _app_with_a_secret(core, namespace)
    rules = (Rule.parse("get,list,watch:pods", (namespace,)),)
    _, standalone = add_restricted_user(sandbox, f"viewer-{os.urandom(3).hex()}", rules)
    denied = _podside("env", "-q", "-n", namespace, "-t", "pod/app", kubeconfig=str(standalone))
    assert denied.returncode != 0
    assert len(denied.stderr.splitlines()) == 1, denied.stderr
    assert denied.stderr.startswith(
        f"podside: cannot patch pods/ephemeralcontainers in namespace {namespace} (RBAC"
    ), denied.stderr
