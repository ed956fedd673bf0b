"""A session through Kubernetes loads only the kubernetes client's connection and kubeconfig
handling, never its generated API classes and models: importing those cost 0.5 to 0.6 s, more
than the rest of `podside exec -- true` (issue 12 §7)."""

from __future__ import annotations

import re
from typing import Any

from tests.kube.test_exec_target import PYTHON, exec_target

GENERATED = re.compile(r"kubernetes\.client\.(models|api)\.")


def _imported_generated_modules(options: tuple[str, ...]) -> list[str]:
    result = exec_target("deployment/blog", PYTHON, "-c", "pass", options=options)
    assert result.returncode == 0, result.stderr
    return sorted(
        {found[0] for line in result.stderr.splitlines() if (found := GENERATED.search(line))}
    )


def test_a_session_with_a_new_and_a_reused_agent_imports_no_generated_client_code(
    sandbox: Any, monkeypatch: Any
) -> None:
    # -X importtime in the environment: podside's own imports, one line each, on stderr.
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    assert _imported_generated_modules(()) == []  # resolves the deployment, joins or adds an agent
    assert _imported_generated_modules(("-q",)) == []  # reuses it
