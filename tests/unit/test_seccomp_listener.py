"""The seccomp listener used from two threads at once, as the supervisor thread and the event
loop use it: each call judges and answers its own notification.

A child process installs a filter that stops mkdirat, hands its listener over, and blocks two
threads in mkdirat. Needs no root (the filter sets no_new_privs when not root)."""

from __future__ import annotations

import errno
import select
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from podside.layer import seccomp

CHILD = textwrap.dedent(
    """
    import os, socket, sys, threading
    from podside.layer import seccomp
    channel = socket.socket(fileno=int(sys.argv[1]))
    folder = os.open(sys.argv[2], os.O_RDONLY | os.O_DIRECTORY)
    rules = seccomp.FilterRules(always=frozenset({"mkdirat"}))
    listener = seccomp.PreparedFilter(rules).install()
    socket.send_fds(channel, [b"x"], [listener])
    os.close(listener)  # closed by the parent too, the stopped calls fail with ENOSYS
    results = {}
    def make(name):
        try:
            os.mkdir(name, dir_fd=folder)
            results[name] = 0
        except OSError as error:
            results[name] = error.errno
    threads = [threading.Thread(target=make, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(results["a"], results["b"])
    """
)


@dataclass
class Stopped:
    listener: seccomp.Listener
    child: subprocess.Popen[str]
    ids: list[int]


@pytest.fixture
def two_stopped_calls() -> Iterator[Stopped]:
    parent_end, child_end = socket.socketpair()
    with tempfile.TemporaryDirectory() as folder:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(child_end.fileno()), folder],
            pass_fds=[child_end.fileno()],
            stdout=subprocess.PIPE,
            text=True,
        )
        child_end.close()
        parent_end.settimeout(30)
        _, fds, _, _ = socket.recv_fds(parent_end, 1, 1)
        listener = seccomp.Listener(fds[0])
        ids = []
        while len(ids) < 2:
            assert select.select([listener.fd], [], [], 30)[0], "the child's mkdirat never stopped"
            request = listener.receive()
            if request is not None:
                ids.append(request.id)
        try:
            yield Stopped(listener, child, ids)
        finally:
            for notification_id in ids:
                listener.respond(notification_id, error=errno.EPERM)
            child.wait(30)
            listener.close()
            parent_end.close()


def test_two_threads_checking_two_notifications_each_see_their_own(
    two_stopped_calls: Stopped,
) -> None:
    listener, (waiting, answered) = two_stopped_calls.listener, two_stopped_calls.ids
    assert listener.respond(answered, error=errno.EACCES)
    wrong: list[str] = []

    def check(notification_id: int, expected: bool) -> None:
        for _ in range(20000):
            if listener.is_valid(notification_id) is not expected:
                wrong.append(f"{notification_id} seen {'invalid' if expected else 'valid'}")
                return

    threads = [
        threading.Thread(target=check, args=(waiting, True)),
        threading.Thread(target=check, args=(answered, False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert listener.respond(waiting, error=errno.EEXIST)
    output, _ = two_stopped_calls.child.communicate(timeout=30)
    assert sorted(output.split()) == sorted([str(errno.EACCES), str(errno.EEXIST)])


def test_an_answer_is_taken_once(two_stopped_calls: Stopped) -> None:
    listener, (first, second) = two_stopped_calls.listener, two_stopped_calls.ids
    assert listener.respond(first, error=errno.EACCES)
    assert not listener.respond(first, error=errno.EEXIST)
    assert not listener.allow(first)
    assert listener.is_valid(second)


def test_a_closed_listener_refuses_late_answers(two_stopped_calls: Stopped) -> None:
    listener, ids = two_stopped_calls.listener, two_stopped_calls.ids
    listener.close()
    assert listener.fd == -1
    assert not listener.is_valid(ids[0])
    assert not listener.respond(ids[0], error=errno.EACCES)
    assert listener.receive() is None
    with pytest.raises(OSError) as raised:
        listener.respond_with_fd(ids[0], 0, cloexec=True)
    assert raised.value.errno == errno.EBADF
    listener.close()  # twice is harmless
    output, _ = two_stopped_calls.child.communicate(timeout=30)
    assert output.split() == [str(errno.ENOSYS)] * 2
