"""Shared fixtures. Most tests use real namespaces and a sandbox, so they need root (as CI runs
them); the pure decisions in ROOTLESS_FOLDERS run as any user, in seconds.

One sandbox serves the whole test session, in a temporary state dir and kubeconfig so a
developer's own cluster config is never touched; `down` runs at the end even on failure. With
PODSIDE_TEST_REUSE_SANDBOX=1 the session uses (and leaves running) the sandbox named by
PODSIDE_SANDBOX_DIR and KUBECONFIG instead, so several developers' test runs on one machine
can share it; the tests that take a sandbox down are not run then.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REUSE_SANDBOX = os.environ.get("PODSIDE_TEST_REUSE_SANDBOX") == "1"
# Test folders that touch no namespace, sandbox or privileged socket.
ROOTLESS_FOLDERS = ("unit", "protocol")
TESTS = Path(__file__).parent


def needs_root(item: pytest.Item) -> bool:
    relative = item.path.relative_to(TESTS) if item.path.is_relative_to(TESTS) else item.path
    return relative.parts[0] not in ROOTLESS_FOLDERS


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ends_sandbox: takes the session's sandbox down (runs last)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Refused, not skipped: a test that needs root must never pass by not running.
    if os.geteuid() != 0:
        rooted = [item for item in items if needs_root(item)]
        if rooted:
            raise pytest.UsageError(
                f"{len(rooted)} of the selected tests create network namespaces or a sandbox "
                f"(first: {rooted[0].nodeid}): run them as root (make test does), or select "
                f"only {' and '.join('tests/' + f for f in ROOTLESS_FOLDERS)}"
            )
    ending = [item for item in items if item.get_closest_marker("ends_sandbox")]
    if REUSE_SANDBOX:
        for item in ending:
            items.remove(item)
        config.hook.pytest_deselected(items=ending)
        return
    for item in ending:
        items.remove(item)
        items.append(item)


def _wait_for_demo_workloads(state: Any, timeout: float = 60) -> None:
    """The tests use the demo pods: start them only once every one of them is ready."""
    from podside.sandbox import control

    port = int(control._read_state(state)["port"])  # type: ignore[index]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = control.api_get(state, port, "/api/v1/namespaces/default/pods")["items"]
        conditions = [(pod.get("status") or {}).get("conditions") or [] for pod in pods]
        if pods and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in of_pod)
            for of_pod in conditions
        ):
            return
        time.sleep(0.1)
    raise TimeoutError("the sandbox's demo pods did not become ready")


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from podside.sandbox import control
    from podside.sandbox.layout import STATE_DIR_ENV, StateDir

    if REUSE_SANDBOX:
        state = StateDir.from_env()
        control.up(state)
        yield state
        return
    root = tmp_path_factory.mktemp("sandbox")
    saved = {key: os.environ.get(key) for key in (STATE_DIR_ENV, "KUBECONFIG")}
    os.environ[STATE_DIR_ENV] = str(root / "state")
    os.environ["KUBECONFIG"] = str(root / "kubeconfig")
    state = StateDir.from_env()
    try:
        # Only a sandbox this session started is taken down: when `up` fails because another
        # one runs on this machine, `down` would tear down that one's node.
        control.up(state)
        try:
            _wait_for_demo_workloads(state)
            yield state
        finally:
            control.down(state)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
