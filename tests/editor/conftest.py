"""Fixtures for the editor backend: the real `podside lsp`, driven by pygls's LanguageClient.

The client runs on an event loop owned by the fixture, so tests stay plain functions:
`backend.command(name, params)` answers like the extension would see it, and notifications
are collected per method.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient

NOTIFICATIONS = (
    "podside/sessionState",
    "podside/progress",
    "podside/traffic",
    "podside/attachDebugger",
    "podside/output",
)


class Backend:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = LanguageClient("podside-tests", "0")
        self.notifications: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for method in NOTIFICATIONS:
            self.client.feature(method)(self._collector(method))

    def _collector(self, method: str) -> Callable[[Any, Any], None]:
        def collect(params: Any) -> None:
            self.notifications[method].append(_plain(params))

        return collect

    def run(self, coroutine: Any, timeout: float = 30) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, timeout))

    def start(self) -> None:
        self.run(self.client.start_io(sys.executable, "-m", "podside", "lsp", env=dict(os.environ)))
        self.run(
            self.client.initialize_async(
                types.InitializeParams(capabilities=types.ClientCapabilities())
            )
        )
        self.client.initialized(types.InitializedParams())

    def command(self, name: str, params: dict[str, Any] | None = None, timeout: float = 30) -> Any:
        arguments = [] if params is None else [params]
        result = self.run(
            self.client.workspace_execute_command_async(
                types.ExecuteCommandParams(command=name, arguments=arguments)
            ),
            timeout,
        )
        return _plain(result)

    def wait_for(
        self, method: str, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        async def poll() -> dict[str, Any]:
            while True:
                for params in self.notifications[method]:
                    if predicate(params):
                        return params
                await asyncio.sleep(0.05)

        return dict(self.run(poll(), timeout))

    def stop(self) -> None:
        self.run(self.client.shutdown_async(None))
        self.client.exit(None)
        self.run(self.client.stop())
        self.loop.close()


def _plain(value: Any) -> Any:
    """pygls hands JSON objects over as namedtuples; tests compare plain JSON."""
    if hasattr(value, "_asdict"):
        return {key: _plain(item) for key, item in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@pytest.fixture
def backend(sandbox: Any) -> Iterator[Backend]:
    running = Backend()
    running.start()
    try:
        yield running
    finally:
        running.stop()
