"""A pod file that would make the agent wait — a FIFO nobody writes, a device — never holds up
anyone: `--fs` refuses what is not a regular file or a folder with EOPNOTSUPP, and the other
sessions of the same agent keep getting answers while one program opens such a file."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podside.session import AgentSession
from podside_agent.peer import RequestFailed
from podside_protocol import files
from tests.core.conftest import pod, podside_exec  # noqa: F401
from tests.topology import POD_DATA, PYTHON, Pod

FIFO = f"{POD_DATA}/x.fifo"


@pytest.fixture
def fifo(pod: Pod) -> Iterator[Path]:  # noqa: F811
    """A FIFO in the pod's writable folder that no one ever writes to."""
    path = pod.pod_files / "podside-data" / "x.fifo"
    os.mkfifo(path)
    try:
        yield path
    finally:
        # Whoever still waits in open() for a writer (an agent that blocks) is let go.
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        path.unlink()


def _ask_agent(pod: Pod, method: str, params: dict[str, object]) -> object:  # noqa: F811
    async def ask() -> object:
        session = AgentSession(pod.token, description="the test agent")
        host, port = pod.agent_address.split(":")
        await session.connect_tcp(host, int(port))
        try:
            return await asyncio.wait_for(session.request(method, params), 20)
        finally:
            await session.close()

    return asyncio.run(ask())


def test_a_fifo_opened_through_fs_is_refused_and_other_sessions_keep_their_answers(
    pod: Pod,  # noqa: F811
    fifo: Path,
) -> None:
    reader = subprocess.Popen(
        [
            *pod.podside_exec("-q", "--fs", "read", "--fs-remote", "^/srv/"),
            "--",
            "sh",
            "-c",
            'echo started; exec cat "$0"',
            FIFO,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline() == "started\n"
        # Another session while cat opens the FIFO: the pod's environment and an outgoing connection.
        other = podside_exec(
            pod,
            PYTHON,
            "-c",
            "import os, urllib.request; print(os.environ['POD_ONLY_VAR']); "
            "print(urllib.request.urlopen('http://backend/other', timeout=10).status)",
            timeout=30,
        )
        assert (other.returncode, other.stdout) == (0, "from-the-pod\n200\n"), other.stderr
        out, err = reader.communicate(timeout=30)
    finally:
        reader.kill()
        reader.wait()
    assert reader.returncode != 0
    assert out == ""
    assert f"cat: {FIFO}: Operation not supported" in err
    assert f"podside: {FIFO} is a FIFO in the pod; --fs serves regular files and folders" in err


@pytest.mark.parametrize(
    ("method", "params"),
    [
        (files.READ, {"path": FIFO}),  # the resolver's whole-file read
        (files.OPEN, {"path": FIFO}),
        (files.READ_CHUNK, {"path": FIFO, "offset": 0, "length": 10}),
        (
            getattr(files, "CHECK_WRITE", "file.check_write"),
            {"path": FIFO, "flags": os.O_WRONLY, "mode": 0},
        ),
        (files.OPEN, {"path": "/dev/zero"}),  # a device is not served either
        (files.READ, {"path": "/dev/zero"}),
    ],
)
def test_the_agent_refuses_what_is_not_a_regular_file_at_once(
    pod: Pod,  # noqa: F811
    fifo: Path,
    method: str,
    params: dict[str, object],
) -> None:
    with pytest.raises(RequestFailed) as failure:
        _ask_agent(pod, method, params)
    assert failure.value.errno == errno.EOPNOTSUPP
    assert "regular files" in str(failure.value)
