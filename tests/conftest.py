"""Shared fixtures. The tests use real namespaces, so they need root (as CI runs them).

One sandbox serves the whole test session, in a temporary state dir and kubeconfig so a
developer's own cluster config is never touched; `down` runs at the end even on failure. With
PODSIDE_TEST_REUSE_SANDBOX=1 the session uses (and leaves running) the sandbox named by
PODSIDE_SANDBOX_DIR and KUBECONFIG instead, so several developers' test runs on one machine
can share it; the tests that take a sandbox down are not run then.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

REUSE_SANDBOX = os.environ.get("PODSIDE_TEST_REUSE_SANDBOX") == "1"


def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() != 0:
        raise pytest.UsageError(
            "podside's tests create network namespaces: run them as root (make test does)"
        )
    config.addinivalue_line("markers", "ends_sandbox: takes the session's sandbox down (runs last)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ending = [item for item in items if item.get_closest_marker("ends_sandbox")]
    if REUSE_SANDBOX:
        for item in ending:
            items.remove(item)
        config.hook.pytest_deselected(items=ending)
        return
    for item in ending:
        items.remove(item)
        items.append(item)


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
            yield state
        finally:
            control.down(state)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
