"""Blocking work off the agent's event loop: a few threads, and a deadline on every call.

Anything that can wait on the pod — a file (a FIFO, a hung network volume), `/proc` of a
process stuck in the kernel — runs here, so the loop keeps answering every other client, its
heartbeats, mirrored and stolen connections. A call that outlives its deadline is answered
ETIMEDOUT; its thread stays blocked until the kernel lets it go, and the pool is bounded, so a
pod that hangs every call costs a few threads, never the agent.

A call that makes something to keep (a temporary file, a descriptor) can name what releases
it (`late`): when the caller stopped waiting (the deadline passed, or it was cancelled) before
the result reached it, the result goes there instead, so nothing is left that no one owns.

The threads are daemon threads (not a ThreadPoolExecutor, whose threads are joined at exit):
a thread stuck in the kernel must not keep the agent from exiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

Result = TypeVar("Result")


class _Call(Generic[Result]):
    """One call, and the hand-over of its result: to the caller, or to `late` once the caller
    has stopped waiting. The lock makes the two exclusive, whichever side comes first."""

    def __init__(
        self,
        function: Callable[..., Result],
        args: tuple[Any, ...],
        late: Callable[[Result], object] | None,
    ) -> None:
        self.function, self.args, self.late = function, args, late
        self.future: concurrent.futures.Future[Result] = concurrent.futures.Future()
        self._lock = threading.Lock()
        self._abandoned = False

    def serve(self) -> None:
        # A call whose caller gave up while it waited in the queue is not started.
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.function(*self.args)
        except BaseException as error:
            self.future.set_exception(error)
            return
        with self._lock:
            abandoned = self._abandoned
            if not abandoned:
                self.future.set_result(result)
        if abandoned:
            self._release(result)

    def abandon(self) -> Result | None:
        """The caller stops waiting: a result it has not taken is answered, to be released
        (None when there is none or nothing releases it); a later one is released by serve."""
        with self._lock:
            self._abandoned = True
            future = self.future
            if self.late is None or not future.done() or future.cancelled():
                return None
            if future.exception() is not None:
                return None
            return future.result()

    def _release(self, result: Result) -> None:
        if self.late is None:
            return
        try:
            self.late(result)
        except Exception:
            log.warning("releasing what a call made after its caller left failed", exc_info=True)


class Workers:
    def __init__(self, threads: int = 8, deadline: float = 30.0) -> None:
        self.deadline = deadline
        self._queue: queue.SimpleQueue[_Call[Any] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"podside-worker-{index}", daemon=True)
            for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    async def run(
        self,
        function: Callable[..., Result],
        *args: Any,
        late: Callable[[Result], object] | None = None,
    ) -> Result:
        """`function(*args)` on a worker thread; OSError(ETIMEDOUT) after the deadline. A
        result that arrives after the caller stopped waiting goes to `late`, on a worker."""
        call = _Call(function, args, late)
        self._queue.put(call)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(call.future), self.deadline)
        except TimeoutError:
            self._abandon(call)
            raise OSError(
                errno.ETIMEDOUT, f"the pod did not answer within {self.deadline:.0f} s"
            ) from None
        except asyncio.CancelledError:
            self._abandon(call)
            raise

    def _abandon(self, call: _Call[Result]) -> None:
        untaken = call.abandon()
        if untaken is not None and call.late is not None:
            release = call.late
            self.submit(lambda: release(untaken))

    def submit(self, function: Callable[[], object]) -> None:
        """`function()` on a worker thread, no one waiting for it (a clean-up)."""
        self._queue.put(_Call(function, (), None))

    def _serve(self) -> None:
        while (call := self._queue.get()) is not None:
            call.serve()

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
