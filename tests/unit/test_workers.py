"""The agent's workers: a blocking call runs off the event loop, which keeps running; a call
past its deadline is ETIMEDOUT; a call whose caller gave up before it started never runs."""

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
