"""Clients of the test session's sandbox (the `sandbox` fixture itself is in tests/conftest.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float = 30, what: str = "condition") -> T:
    """Poll until `condition` returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as error:
            last_error = error
        else:
            if result:
                return result
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


@pytest.fixture(scope="session")
def kubeconfig(sandbox: Any) -> Path:
    return Path(os.environ["KUBECONFIG"])


@pytest.fixture(scope="session")
def api_client(kubeconfig: Path) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig), context="podside-sandbox")


@pytest.fixture(scope="session")
def core(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture(scope="session")
def apps(api_client: Any) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api_client)


@pytest.fixture
def namespace(core: Any) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (with everything in it)."""
    from kubernetes import client

    name = f"t-{os.urandom(3).hex()}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def run_pod(
    core: Any, namespace: str, name: str, command: list[str], **spec: Any
) -> dict[str, Any]:
    """Create a one-container pod running `command` (image busybox, command given)."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": command,
                    **spec.pop("container", {}),
                }
            ],
            **spec,
        },
    }
    return core.create_namespaced_pod(namespace, body)  # type: ignore[no-any-return]


def pod_phase(core: Any, namespace: str, name: str) -> str:
    return str(core.read_namespaced_pod(name, namespace).status.phase)
