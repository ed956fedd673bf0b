"""Clients for the kube tests: the sandbox's fixtures, and a podside KubeContext on a fresh
namespace (the namespace the test's workloads are created in)."""

from __future__ import annotations

import os
from typing import Any

import pytest

# Fixtures shared with the sandbox tests: importing them here makes them available to tests/kube.
from tests.sandbox.conftest import api_client, apps, core, kubeconfig, namespace  # noqa: F401


@pytest.fixture
def ctx(sandbox: Any, namespace: str) -> Any:  # noqa: F811
    from podside.kube.config import load_context

    return load_context("podside-sandbox", namespace, os.environ["KUBECONFIG"])
