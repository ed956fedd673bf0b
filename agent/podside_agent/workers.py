"""Blocking work off the agent's event loop: a few threads, and a deadline on every call.

Anything that can wait on the pod — a file (a FIFO, a hung network volume), `/proc` of a
process stuck in the kernel — runs here, so the loop keeps answering every other client, its
heartbeats, mirrored and stolen connections. A call that outlives its deadline is answered
ETIMEDOUT; its thread stays blocked until the kernel lets it go, and the pool is bounded, so a
pod that hangs every call costs a few threads, never the agent.

The threads are daemon threads (not a ThreadPoolExecutor, whose threads are joined at exit):
a thread stuck in the kernel must not keep the agent from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

Result = TypeVar("Result")

_Work = tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]


class Workers:
    def __init__(self, threads: int = 8, deadline: float = 30.0) -> None:
        self.deadline = deadline
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"podside-worker-{index}", daemon=True)
            for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, function: Callable[..., Result], *args: Any) -> Result:
        """`function(*args)` on a worker thread; OSError(ETIMEDOUT) after the deadline."""
        future: concurrent.futures.Future[Result] = concurrent.futures.Future()
        self._queue.put((future, function, args))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.deadline)
        except TimeoutError:
            raise OSError(
                errno.ETIMEDOUT, f"the pod did not answer within {self.deadline:.0f} s"
            ) from None

    def submit(self, function: Callable[[], object]) -> None:
        """`function()` on a worker thread, no one waiting for it (a clean-up)."""
        self._queue.put((concurrent.futures.Future(), function, ()))

    def _serve(self) -> None:
        while (work := self._queue.get()) is not None:
            future, function, args = work
            # A call whose caller gave up while it waited in the queue is not started.
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args))
            except BaseException as error:
                future.set_exception(error)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
