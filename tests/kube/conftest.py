"""Clients for the kube tests: the sandbox's fixtures, and a podside KubeContext on a fresh
namespace (the namespace the test's workloads are created in)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Fixtures shared with the sandbox tests: importing them here makes them available to tests/kube.
from tests.sandbox.conftest import api_client, apps, core, kubeconfig, namespace  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def token_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache of agent tokens for the session, as one developer's machine has, instead of
    this machine user's own."""
    directory = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(directory))
        yield directory


@pytest.fixture
def ctx(sandbox: Any, namespace: str) -> Any:  # noqa: F811
    from podside.kube.config import load_context

    return load_context("podside-sandbox", namespace, os.environ["KUBECONFIG"])


def who_answers(sandbox: Any, pod_ip: str, port: int, developer: str | None = None) -> str:
    """The `server` that answers a request sent to the pod from the node, as a peer pod's would
    ("" if none does); `developer` sends the `x-dev` header filtered steals match."""
    header = ["-H", f"x-dev: {developer}"] if developer else []
    result = subprocess.run(
        [
            *("ip", "netns", "exec", sandbox.node_netns, "curl", "-sS", "-m", "10", *header),
            f"http://{pod_ip}:{port}/",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return str(json.loads(result.stdout)["server"]) if result.returncode == 0 else ""
