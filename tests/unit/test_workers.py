"""The agent's workers: a blocking call runs off the event loop, which keeps running; a call
past its deadline is ETIMEDOUT; a call whose caller gave up before it started never runs; what
a call makes after its caller stopped waiting is released, not left without an owner."""

from __future__ import annotations

import asyncio
import errno
import threading

import pytest

from podside_agent.workers import Workers


def test_a_blocked_call_times_out_while_the_loop_keeps_running() -> None:
    release = threading.Event()

    async def scenario() -> int:
        workers = Workers(threads=1, deadline=0.2)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.get_running_loop().create_task(tick())
        try:
            with pytest.raises(OSError) as failure:
                await workers.run(release.wait)
            assert failure.value.errno == errno.ETIMEDOUT
        finally:
            ticker.cancel()
            release.set()
            workers.close()
        return ticks

    assert asyncio.run(scenario()) > 0  # the loop ran while the worker was blocked


def test_a_call_abandoned_in_the_queue_never_runs() -> None:
    release = threading.Event()
    ran = threading.Event()

    async def scenario() -> None:
        workers = Workers(threads=1, deadline=0.1)
        started = threading.Event()

        def block() -> None:
            started.set()
            release.wait()

        blocker = asyncio.ensure_future(workers.run(block))
        while not started.is_set():  # the only thread is taken
            await asyncio.sleep(0.001)
        with pytest.raises(OSError):
            await workers.run(ran.set)  # waits behind the blocked call, then gives up
        release.set()
        await asyncio.gather(blocker, return_exceptions=True)
        assert await workers.run(lambda: 42) == 42  # the thread is free again
        workers.close()

    asyncio.run(scenario())
    assert not ran.is_set()


def test_results_and_errors_come_back() -> None:
    async def scenario() -> None:
        workers = Workers(threads=2)
        assert await workers.run(sum, [1, 2, 3]) == 6
        with pytest.raises(FileNotFoundError):
            await workers.run(open, "/nonexistent/podside-test")
        workers.close()

    asyncio.run(scenario())


def test_a_result_that_comes_after_the_deadline_is_released_not_lost() -> None:
    release, released = threading.Event(), threading.Event()
    kept: list[object] = []

    def make() -> object:
        release.wait()
        return "a temporary file"

    def late(result: object) -> None:
        kept.append(result)
        released.set()

    async def scenario() -> None:
        workers = Workers(threads=1, deadline=0.1)
        with pytest.raises(OSError) as failure:
            await workers.run(make, late=late)
        assert failure.value.errno == errno.ETIMEDOUT
        assert not released.is_set()  # nothing yet: the call still runs
        release.set()
        assert await asyncio.to_thread(released.wait, 10)
        workers.close()

    asyncio.run(scenario())
    assert kept == ["a temporary file"]


def test_a_result_whose_caller_was_cancelled_is_released() -> None:
    started, release, released = threading.Event(), threading.Event(), threading.Event()

    def make() -> str:
        started.set()
        release.wait()
        return "made"

    async def scenario() -> None:
        workers = Workers(threads=1)
        call = asyncio.ensure_future(workers.run(make, late=lambda _: released.set()))
        assert await asyncio.to_thread(started.wait, 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        release.set()
        assert await asyncio.to_thread(released.wait, 10)
        workers.close()

    asyncio.run(scenario())


def test_a_result_the_caller_takes_is_not_released() -> None:
    released: list[object] = []

    async def scenario() -> None:
        workers = Workers(threads=1)
        assert await workers.run(lambda: "mine", late=released.append) == "mine"
        assert await workers.run(lambda: 1) == 1  # the worker went on past the first call
        workers.close()

    asyncio.run(scenario())
    assert released == []
