"""--fs write never leaves a pod file torn: until the program's close is written back whole, the
pod keeps the old file; the new one replaces it in one rename, with the old file's mode and
owner. podside killed at any moment (after the program's writes, or in the middle of a large
write-back) leaves the old content or the new, and the agent removes its temporary file."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import textwrap
import time
from pathlib import Path

from tests.core.conftest import pod, podside_exec  # noqa: F401
from tests.topology import POD_DATA, PYTHON, Pod, wait_for

LARGE = 50 * 1024 * 1024 + 4321  # many of the agent's chunks, and a partial one


def in_pod(pod: Pod, name: str) -> Path:  # noqa: F811
    return pod.pod_files / "podside-data" / name


def _folder_names(pod: Pod) -> set[str]:  # noqa: F811
    return {path.name for path in in_pod(pod, "").iterdir()}


def _writer(pod: Pod, code: str) -> subprocess.Popen[str]:  # noqa: F811
    return subprocess.Popen(
        [*pod.podside_exec("-q", "--fs", "write"), "--", PYTHON, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_podside_killed_between_write_and_close_leaves_the_old_file(pod: Pod) -> None:  # noqa: F811
    in_pod(pod, "precious.txt").write_text("old content\n")
    before = _folder_names(pod)
    program = _writer(
        pod,
        f"""
        import sys
        file = open({POD_DATA + "/precious.txt"!r}, "w")
        file.write("new content that never gets closed\\n")
        file.flush()
        print("written", flush=True)
        sys.stdin.readline()
        """,
    )
    try:
        assert program.stdout is not None
        assert program.stdout.readline() == "written\n"
        assert in_pod(pod, "precious.txt").read_text() == "old content\n"  # not truncated
    finally:
        program.kill()  # SIGKILL of podside; the program follows it (parent-death signal)
        program.wait()
    assert in_pod(pod, "precious.txt").read_text() == "old content\n"
    wait_for(lambda: _folder_names(pod) == before, timeout=15, what="no file left beside it")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rewrite_in_place(pod: Pod, byte: bytes) -> subprocess.Popen[str]:  # noqa: F811
    """A program that rewrites large.bin without O_TRUNC (as a database or an editor would),
    closes it and exits: written in place in the pod, an interrupted write-back would leave
    the new head and the old tail."""
    return _writer(
        pod,
        f"""
        with open({POD_DATA + "/large.bin"!r}, "r+b") as file:
            file.write({byte!r} * {LARGE})
        print("closed", flush=True)
        """,
    )


def test_a_large_write_back_interrupted_by_kill_leaves_old_or_new(pod: Pod) -> None:  # noqa: F811
    target = in_pod(pod, "large.bin")
    target.write_bytes(bytes(range(256)) * (LARGE // 256) + b"o" * (LARGE % 256))
    before = _folder_names(pod)
    # How long a whole write-back takes here: from the program's close to podside's exit.
    program = _rewrite_in_place(pod, b"M")
    assert program.stdout is not None
    assert program.stdout.readline() == "closed\n"
    closed = time.monotonic()
    assert program.wait(120) == 0
    write_back = time.monotonic() - closed
    old = target.read_bytes()
    assert old == b"M" * LARGE
    # Again, and podside killed at a random moment of that write-back.
    program = _rewrite_in_place(pod, b"N")
    try:
        assert program.stdout is not None
        assert program.stdout.readline() == "closed\n"
        time.sleep(random.uniform(0, write_back))
    finally:
        program.kill()
        program.wait()
    content = target.read_bytes()
    assert _digest(content) in (_digest(old), _digest(b"N" * LARGE)), (
        f"torn: {len(content)} bytes, head {content[:8]!r}, tail {content[-8:]!r}"
    )
    wait_for(lambda: _folder_names(pod) == before, timeout=15, what="no file left beside it")


def test_the_new_file_keeps_the_old_ones_mode_and_owner(pod: Pod) -> None:  # noqa: F811
    target = in_pod(pod, "owned.txt")
    target.write_text("old\n")
    os.chown(target, 1234, 5678)
    target.chmod(0o640)
    result = podside_exec(
        pod,
        PYTHON,
        "-c",
        f"open({POD_DATA + '/owned.txt'!r}, 'a').write('appended\\n')",
        options=("-q", "--fs", "write"),
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert target.read_text() == "old\nappended\n"
    now = target.stat()
    assert (now.st_uid, now.st_gid, oct(now.st_mode & 0o7777)) == (1234, 5678, "0o640")


def _acl(path: Path) -> str:
    """The file's ACL entries, as getfacl prints them without the header."""
    return subprocess.run(
        ["getfacl", "--omit-header", "--absolute-names", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _append_through_fs_write(pod: Pod, path: str) -> None:  # noqa: F811
    result = podside_exec(
        pod,
        PYTHON,
        "-c",
        f"open({path!r}, 'a').write('appended\\n')",
        options=("-q", "--fs", "write"),
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_the_new_file_keeps_the_old_ones_acl_and_extended_attributes(pod: Pod) -> None:  # noqa: F811
    target = in_pod(pod, "shared.txt")
    target.write_text("old\n")
    target.chmod(0o640)
    subprocess.run(["setfacl", "-m", "u:1234:rw,g:5678:r", str(target)], check=True)
    os.setxattr(target, "user.origin", b"written by the pod")
    acl = _acl(target)
    assert "user:1234:rw-" in acl
    _append_through_fs_write(pod, POD_DATA + "/shared.txt")
    assert target.read_text() == "old\nappended\n"
    assert _acl(target) == acl
    assert os.getxattr(target, "user.origin") == b"written by the pod"


def test_a_file_without_an_acl_gets_none_from_its_folders_default(pod: Pod) -> None:  # noqa: F811
    folder = in_pod(pod, "inheriting")
    folder.mkdir()
    target = folder / "plain.txt"
    target.write_text("old\n")
    target.chmod(0o644)
    subprocess.run(["setfacl", "-d", "-m", "u:1234:rwx", str(folder)], check=True)
    acl = _acl(target)
    _append_through_fs_write(pod, POD_DATA + "/inheriting/plain.txt")
    assert target.read_text() == "old\nappended\n"
    assert _acl(target) == acl  # as a write in place: no entry for user 1234
    assert oct(target.stat().st_mode & 0o777) == "0o644"
