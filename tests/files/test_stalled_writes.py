"""--fs write when the pod's file system stalls: a write-back whose agent worker finishes after
its client left, or after its client was answered ETIMEDOUT, leaves no temporary file and no
descriptor in the agent; and a commit that finishes after a later commit of the same file
renamed does not put the older content back.

The stalls are real: a folder on an ext4 image mounted in the pod and frozen (`fsfreeze`), so
the agent's worker waits in the kernel to create its temporary file; and a writer of one
write-back's temporary file that holds the file's inode lock while its own page fault waits
on a userfaultfd, so that commit's truncate waits while another commit of the file goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import mmap
import os
import select
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from podside.session import AgentSession
from podside_agent.peer import RequestFailed
from podside_protocol import files
from tests.core.conftest import pod  # noqa: F401
from tests.topology import POD_DATA, Pod, run

STALLED = f"{POD_DATA}/stalled"


def _agent(pod: Pod) -> int:  # noqa: F811
    assert pod.agent is not None
    return pod.agent.pid


def _descriptors(pid: int) -> dict[int, str]:
    found = {}
    for entry in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed as we looked
            found[int(entry)] = os.readlink(f"/proc/{pid}/fd/{entry}")
    return found


def _threads_waiting_in_the_kernel(pid: int) -> int:
    """Threads of `pid` in uninterruptible sleep: a worker waiting on the frozen file system
    or on an inode lock."""
    waiting = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
            waiting += stat.rsplit(")", 1)[1].split()[0] == "D"
    return waiting


async def _until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll `condition`; the timeout only bounds the wait."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _connect(pod: Pod) -> AgentSession:  # noqa: F811
    session = AgentSession(pod.token, description="the test agent")
    host, port = pod.agent_address.split(":")
    await session.connect_tcp(host, int(port))
    return session


def _in_pod_mounts(pod: Pod, *command: str) -> list[str]:  # noqa: F811
    """`command` in the pod's mount namespace (where the agent resolves the pod's paths)."""
    assert pod.app is not None
    return ["nsenter", "-t", str(pod.app.pid), "-m", *command]


@pytest.fixture
def stalled(pod: Pod) -> Iterator[Path]:  # noqa: F811
    """STALLED: an ext4 file system of its own in the pod, which the test can freeze; its
    folder as this machine sees it."""
    image = pod.workdir / "stalled.ext4"
    run("truncate", "-s", "16M", str(image))
    run("mkfs.ext4", "-q", str(image))
    run(*_in_pod_mounts(pod, "mkdir", "-p", STALLED))
    run(*_in_pod_mounts(pod, "mount", "-o", "loop", str(image), STALLED))
    run(*_in_pod_mounts(pod, "chmod", "0777", STALLED))
    try:
        yield Path(f"/proc/{pod.app.pid if pod.app else 0}/root{STALLED}")
    finally:
        # Thawed whatever happened, or the agent's worker and this umount would wait forever.
        run(*_in_pod_mounts(pod, "fsfreeze", "-u", STALLED), check=False)
        run(*_in_pod_mounts(pod, "umount", "-l", STALLED), check=False)
        image.unlink(missing_ok=True)


@contextlib.contextmanager
def _frozen(pod: Pod) -> Iterator[None]:  # noqa: F811
    run(*_in_pod_mounts(pod, "fsfreeze", "-f", STALLED))
    try:
        yield
    finally:
        run(*_in_pod_mounts(pod, "fsfreeze", "-u", STALLED))


def test_a_write_back_that_begins_after_its_client_left_leaves_nothing(
    pod: Pod,  # noqa: F811
    stalled: Path,
) -> None:
    agent = _agent(pod)
    descriptors, names = len(_descriptors(agent)), set(os.listdir(stalled))

    async def scenario() -> None:
        session = await _connect(pod)
        left = pod.log("agent.log").count("client left")
        with _frozen(pod):
            replace = asyncio.ensure_future(
                session.request(files.REPLACE, {"path": f"{STALLED}/new.txt", "mode": 0o644})
            )
            await _until(
                lambda: _threads_waiting_in_the_kernel(agent) > 0,
                "the agent's worker to wait on the frozen file system",
            )
            await session.close()
            await _until(
                lambda: pod.log("agent.log").count("client left") > left, "the client to leave"
            )
        with contextlib.suppress(ConnectionError, RequestFailed):
            await replace
        await _until(lambda: _threads_waiting_in_the_kernel(agent) == 0, "the worker to be let go")
        await _until(
            lambda: len(_descriptors(agent)) == descriptors,
            f"the agent to hold no more descriptors than before: {_descriptors(agent)}",
        )

    asyncio.run(scenario())
    assert set(os.listdir(stalled)) == names


def test_a_write_back_answered_etimedout_leaves_nothing_while_its_client_stays(
    pod: Pod,  # noqa: F811
    stalled: Path,
) -> None:
    agent = _agent(pod)
    names = set(os.listdir(stalled))

    async def scenario() -> None:
        session = await _connect(pod)
        try:
            descriptors = len(_descriptors(agent))  # with this client's connection
            with _frozen(pod):
                with pytest.raises(RequestFailed) as failure:
                    # The agent's deadline is 30 s; this bounds the wait for its answer.
                    await asyncio.wait_for(
                        session.request(
                            files.REPLACE, {"path": f"{STALLED}/late.txt", "mode": 0o644}
                        ),
                        90,
                    )
                assert failure.value.errno == errno.ETIMEDOUT
            await _until(
                lambda: _threads_waiting_in_the_kernel(agent) == 0, "the worker to be let go"
            )
            await _until(
                lambda: len(_descriptors(agent)) == descriptors,
                f"the agent to hold no more descriptors than before: {_descriptors(agent)}",
            )
            assert set(os.listdir(stalled)) == names
        finally:
            await session.close()

    asyncio.run(scenario())


# userfaultfd(2), for a writer whose page fault waits until the test lets it go.
_SYS_USERFAULTFD = {"x86_64": 323, "aarch64": 282}[os.uname().machine]
_UFFDIO_API, _UFFDIO_REGISTER = 0xC018AA3F, 0xC020AA00
_UFFD_API, _UFFDIO_REGISTER_MODE_MISSING = 0xAA, 1
_UFFD_MSG_SIZE = 32  # struct uffd_msg
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def _inode_held(path: str) -> Iterator[None]:
    """A write to `path` (far past its end) from a page nobody has touched yet, registered
    with a userfaultfd that answers no fault: the write takes the file's inode lock, then
    waits for its page inside it, so every truncate of that file waits too. Leaving closes
    the userfaultfd: the page is filled with zeros and the write ends."""
    uffd = _libc.syscall(_SYS_USERFAULTFD, os.O_CLOEXEC)
    if uffd < 0:
        raise OSError(ctypes.get_errno(), "userfaultfd")
    page = mmap.mmap(-1, mmap.PAGESIZE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    writer: threading.Thread | None = None
    try:
        api = ctypes.create_string_buffer(struct.pack("QQQ", _UFFD_API, 0, 0))
        register = ctypes.create_string_buffer(
            struct.pack("QQQQ", address, mmap.PAGESIZE, _UFFDIO_REGISTER_MODE_MISSING, 0)
        )
        for request, argument in ((_UFFDIO_API, api), (_UFFDIO_REGISTER, register)):
            if _libc.ioctl(uffd, ctypes.c_ulong(request), argument) != 0:
                raise OSError(ctypes.get_errno(), "userfaultfd ioctl")
        fd = os.open(path, os.O_WRONLY)
        view = memoryview(page)

        def write() -> None:
            try:
                os.pwrite(fd, view, 64 * 1024 * 1024)  # beyond the content: truncated away
            finally:
                os.close(fd)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        # The fault's message says the writer waits for its page, inside the inode lock:
        # before it, a commit could take the lock first and hold its file's turn waiting.
        ready, _, _ = select.select([uffd], [], [], 30)
        assert ready, "the writer did not reach its page within 30 s"
        assert len(os.read(uffd, _UFFD_MSG_SIZE)) == _UFFD_MSG_SIZE
        yield
    finally:
        os.close(uffd)
        if writer is not None:
            writer.join(30)


def test_a_commit_overtaken_by_a_later_one_does_not_bring_back_older_content(
    pod: Pod,  # noqa: F811
) -> None:
    target = pod.pod_files / "podside-data" / "ordered.txt"
    target.write_text("old\n")
    agent = _agent(pod)
    path = f"{POD_DATA}/ordered.txt"

    async def scenario() -> None:
        session = await _connect(pod)
        try:
            request = session.request
            before = _descriptors(agent)
            first = (await request(files.REPLACE, {"path": path, "mode": 0o644}))["handle"]
            # The first write-back's temporary file, as the agent holds it.
            now = _descriptors(agent)
            temporary = [fd for fd in now.keys() - before.keys() if "(deleted)" in now[fd]]
            assert len(temporary) == 1, _descriptors(agent)
            await request(files.WRITE, {"handle": first, "offset": 0, "data": b"first\n"})
            second = (await request(files.REPLACE, {"path": path, "mode": 0o644}))["handle"]
            await request(files.WRITE, {"handle": second, "offset": 0, "data": b"second\n"})
            with _inode_held(f"/proc/{agent}/fd/{temporary[0]}"):
                # The first commit arrives first and waits; the second goes past it. A thread
                # an earlier test left waiting is not the first commit's.
                waiting = _threads_waiting_in_the_kernel(agent)
                first_commit = asyncio.ensure_future(
                    request(files.COMMIT, {"handle": first, "size": 6})
                )
                await _until(
                    lambda: _threads_waiting_in_the_kernel(agent) > waiting,
                    "the first commit to wait for its file",
                )
                await asyncio.wait_for(request(files.COMMIT, {"handle": second, "size": 7}), 30)
                assert target.read_text() == "second\n"
            with contextlib.suppress(RequestFailed):
                await asyncio.wait_for(first_commit, 30)
            assert target.read_text() == "second\n"
            await _until(
                lambda: _descriptors(agent).keys() <= before.keys(),
                f"the write-backs' descriptors to be closed: {_descriptors(agent)}",
            )
        finally:
            await session.close()

    asyncio.run(scenario())
    assert sorted(path.name for path in target.parent.iterdir() if ".podside-" in path.name) == []
