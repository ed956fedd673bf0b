"""Which process is the target after the old one is gone: the oldest running the same
program; for a target the agent found itself, else the oldest of all; for a target given
by pid, none rather than an unrelated process."""

from __future__ import annotations

from podside_agent.target import Process, choose

APP = ("/usr/bin/python3", b"python3\0app.py\0")
SIDECAR = ("/usr/bin/envoy", b"envoy\0-c\0/etc/envoy.yaml\0")


def process(pid: int, started: int, program: tuple[str, bytes]) -> Process:
    return Process(pid, started, *program)


def test_the_oldest_process_running_the_same_program_wins() -> None:
    previous = process(10, 100, APP)
    candidates = [
        process(40, 400, APP),  # a child the new app forked later
        process(20, 200, SIDECAR),  # older, but another program
        process(30, 300, APP),
    ]
    assert choose(candidates, previous, pinned=True) == 30
    assert choose(candidates, previous, pinned=False) == 30


def test_age_is_the_start_time_not_the_pid() -> None:
    previous = process(10, 100, APP)
    wrapped = [process(900, 300, APP), process(5, 400, APP)]  # pids wrapped around
    assert choose(wrapped, previous, pinned=False) == 900


def test_a_pinned_target_is_not_swapped_for_another_program() -> None:
    previous = process(10, 100, APP)
    assert choose([process(20, 200, SIDECAR)], previous, pinned=True) is None


def test_a_found_target_falls_back_to_the_oldest_process() -> None:
    previous = process(10, 100, APP)
    candidates = [process(30, 300, SIDECAR), process(20, 250, ("/bin/sh", b"sh\0"))]
    assert choose(candidates, previous, pinned=False) == 20
    assert choose(candidates, None, pinned=False) == 20


def test_no_candidates_no_target() -> None:
    assert choose([], process(10, 100, APP), pinned=False) is None
    assert choose([], None, pinned=False) is None
