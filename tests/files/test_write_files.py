"""--fs write: the program creates, truncates, appends to, reads back, renames and deletes files
in the pod (a writable emptyDir-like /srv/podside-data), each change visible in the pod's own
folder; the pod's errors (EROFS of the read-only ConfigMap-like mount, ENOENT of a missing
folder, EEXIST, EACCES for a non-root target) are the program's; --fs read refuses to write
with EROFS."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.core.conftest import pod, podside_exec  # noqa: F401
from tests.files import probe_prelude
from tests.topology import POD_CONFIG, POD_DATA, PYTHON, Pod, make_pod, wait_for

PRELUDE = probe_prelude.PRELUDE + textwrap.dedent(
    """
    data, config = sys.argv[1], sys.argv[2]
    def write(path, text, mode="w"):
        with open(path, mode) as file:
            file.write(text)
    """
)


def run(pod: Pod, body: str, *options: str) -> dict[str, object]:  # noqa: F811
    code = PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(result))\n"
    result = podside_exec(
        pod, PYTHON, "-c", code, POD_DATA, POD_CONFIG, options=("-q", "--fs", "write", *options)
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def in_pod(pod: Pod, name: str) -> Path:  # noqa: F811
    """Where the pod keeps /srv/podside-data/NAME (its volume, seen from this machine)."""
    return pod.pod_files / "podside-data" / name


def test_a_new_file_is_created_in_the_pod_and_reads_back(pod: Pod) -> None:  # noqa: F811
    seen = run(
        pod,
        """
        write(data + "/created.txt", "made by the program\\n")
        attempt("read_back", lambda: read(data + "/created.txt"))
        attempt("listed", lambda: "created.txt" in os.listdir(data))
        attempt("stat", lambda: os.stat(data + "/created.txt").st_size)
        """,
    )
    assert seen == {"read_back": "made by the program\n", "listed": True, "stat": 20}
    assert in_pod(pod, "created.txt").read_text() == "made by the program\n"
    assert oct(in_pod(pod, "created.txt").stat().st_mode & 0o777) == "0o644"  # 0o666 - umask


def test_truncate_append_and_read_write_behave_as_on_a_file(pod: Pod) -> None:  # noqa: F811
    in_pod(pod, "log.txt").write_text("one\n")
    in_pod(pod, "truncated.txt").write_text("long old contents\n")
    seen = run(
        pod,
        """
        write(data + "/log.txt", "two\\n", "a")
        write(data + "/log.txt", "three\\n", "a")
        attempt("appended", lambda: read(data + "/log.txt"))
        write(data + "/truncated.txt", "new\\n")
        attempt("truncated", lambda: read(data + "/truncated.txt"))
        def update():
            with open(data + "/log.txt", "r+") as file:
                first = file.readline()
                file.seek(0)
                file.write("ONE")
                file.seek(0)
                return [first, file.read()]
        attempt("read_write", update)
        def seek_past_the_end():
            fd = os.open(data + "/sparse.bin", os.O_WRONLY | os.O_CREAT, 0o600)
            os.pwrite(fd, b"end", 10)
            os.close(fd)
            return os.stat(data + "/sparse.bin").st_size
        attempt("sparse", seek_past_the_end)
        """,
    )
    assert seen == {
        "appended": "one\ntwo\nthree\n",
        "truncated": "new\n",
        "read_write": ["one\n", "ONE\ntwo\nthree\n"],
        "sparse": 13,
    }
    assert in_pod(pod, "log.txt").read_text() == "ONE\ntwo\nthree\n"
    assert in_pod(pod, "truncated.txt").read_text() == "new\n"
    assert in_pod(pod, "sparse.bin").read_bytes() == bytes(10) + b"end"


def test_while_open_the_program_sees_its_writes_and_the_pod_gets_them_at_close(
    pod: Pod,  # noqa: F811
) -> None:
    code = PRELUDE + textwrap.dedent(
        """
        path = data + "/open-long.txt"
        writer = open(path, "w")
        writer.write("written, not closed")
        writer.flush()
        reader = open(path)  # a second open of the same file sees the first one's writes
        print(json.dumps([os.stat(path).st_size, reader.read()]), flush=True)
        sys.stdin.readline()
        writer.close()
        print("closed", flush=True)
        sys.stdin.readline()
        """
    )
    program = subprocess.Popen(
        [*pod.podside_exec("-q", "--fs", "write"), "--", PYTHON, "-c", code, POD_DATA, POD_CONFIG],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert program.stdin is not None and program.stdout is not None
        assert json.loads(program.stdout.readline()) == [19, "written, not closed"]
        assert not in_pod(pod, "open-long.txt").exists()  # the pod gets it whole, at close
        program.stdin.write("\n")
        program.stdin.flush()
        assert program.stdout.readline() == "closed\n"
        wait_for(
            lambda: (
                in_pod(pod, "open-long.txt").exists()
                and in_pod(pod, "open-long.txt").read_text() == "written, not closed"
            ),
            timeout=5,
            what="the closed file in the pod",
        )
        program.stdin.write("\n")
        program.stdin.flush()
        assert program.wait(30) == 0
    finally:
        program.kill()
        program.wait()


def test_a_file_left_open_at_exit_still_reaches_the_pod(pod: Pod) -> None:  # noqa: F811
    run(
        pod,
        """
        fd = os.open(data + "/left-open.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b"never closed")
        """,
    )
    assert in_pod(pod, "left-open.txt").read_text() == "never closed"


def test_the_pods_errors_reach_the_program(pod: Pod) -> None:  # noqa: F811
    seen = run(
        pod,
        """
        attempt("configmap_file", lambda: write(config + "/app.json", "{}"))
        attempt("configmap_new", lambda: write(config + "/new.json", "{}"))
        attempt("configmap_access", lambda: os.access(config + "/app.json", os.W_OK))
        attempt("missing_folder", lambda: write(data + "/no-such-folder/file", "x"))
        attempt("exclusive", lambda: os.open(data + "/notes.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        attempt("a_folder", lambda: os.open(data, os.O_WRONLY))
        attempt("still_readable", lambda: read(config + "/mode"))
        """,
    )
    assert seen == {
        "configmap_file": "EROFS",
        "configmap_new": "EROFS",
        "configmap_access": False,
        "missing_folder": "ENOENT",
        "exclusive": "EEXIST",
        "a_folder": "EISDIR",
        "still_readable": "production\n",
    }


def test_mkdir_rename_and_unlink_change_the_pods_folder(pod: Pod) -> None:  # noqa: F811
    in_pod(pod, "to-delete.txt").write_text("bye")
    seen = run(
        pod,
        """
        os.mkdir(data + "/reports")
        write(data + "/reports/draft.txt", "draft")
        os.rename(data + "/reports/draft.txt", data + "/reports/final.txt")
        attempt("renamed", lambda: [sorted(os.listdir(data + "/reports")), read(data + "/reports/final.txt")])
        attempt("not_empty", lambda: os.rmdir(data + "/reports"))
        os.unlink(data + "/to-delete.txt")
        attempt("deleted", lambda: os.path.exists(data + "/to-delete.txt"))
        attempt("deleted_again", lambda: os.unlink(data + "/to-delete.txt"))
        attempt("across", lambda: os.rename(data + "/reports/final.txt", "/tmp/podside-final.txt"))
        os.mkdir(data + "/empty")
        os.rmdir(data + "/empty")
        attempt("rmdir", lambda: os.path.isdir(data + "/empty"))
        """,
    )
    assert seen == {
        "renamed": [["final.txt"], "draft"],
        "not_empty": "ENOTEMPTY",
        "deleted": False,
        "deleted_again": "ENOENT",
        "across": "EXDEV",  # between this machine and the pod, as between two file systems
        "rmdir": False,
    }
    assert (in_pod(pod, "reports") / "final.txt").read_text() == "draft"
    assert not in_pod(pod, "to-delete.txt").exists()
    assert not in_pod(pod, "empty").exists()


def test_shell_tools_write_in_the_pod(pod: Pod) -> None:  # noqa: F811
    script = (
        f"echo hello > {POD_DATA}/shell.txt && echo more >> {POD_DATA}/shell.txt && "
        f"mkdir {POD_DATA}/a {POD_DATA}/a/b && cat {POD_DATA}/shell.txt > {POD_DATA}/a/b/shell.txt && "
        f"mv {POD_DATA}/a/b/shell.txt {POD_DATA}/a/b/moved.txt && rm {POD_DATA}/shell.txt && "
        f"cat {POD_DATA}/a/b/moved.txt"
    )
    result = podside_exec(pod, "sh", "-c", script, options=("-q", "--fs", "write"))
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello\nmore\n", "")
    assert (in_pod(pod, "a") / "b" / "moved.txt").read_text() == "hello\nmore\n"
    assert not in_pod(pod, "shell.txt").exists()


def test_fs_read_refuses_to_change_the_pods_files(pod: Pod) -> None:  # noqa: F811
    in_pod(pod, "read-only-here.txt").write_text("unchanged")
    seen = run(
        pod,
        """
        attempt("write", lambda: write(data + "/read-only-here.txt", "x"))
        attempt("append", lambda: write(data + "/read-only-here.txt", "x", "a"))
        attempt("create", lambda: write(data + "/new-under-read.txt", "x"))
        attempt("unlink", lambda: os.unlink(data + "/read-only-here.txt"))
        attempt("mkdir", lambda: os.mkdir(data + "/folder-under-read"))
        attempt("rename", lambda: os.rename(data + "/read-only-here.txt", data + "/renamed.txt"))
        attempt("access", lambda: os.access(data + "/read-only-here.txt", os.W_OK))
        attempt("read", lambda: read(data + "/read-only-here.txt"))
        """,
        "--fs",
        "read",
    )
    assert seen == {
        "write": "EROFS",
        "append": "EROFS",
        "create": "EROFS",
        "unlink": "EROFS",
        "mkdir": "EROFS",
        "rename": "EROFS",
        "access": False,
        "read": "unchanged",
    }
    assert in_pod(pod, "read-only-here.txt").read_text() == "unchanged"
    assert (
        sorted(path.name for path in in_pod(pod, "").iterdir() if "under-read" in path.name) == []
    )


@pytest.fixture(scope="module")
def non_root_pod() -> Iterator[Pod]:
    """A pod whose target process runs as nobody (65534), as most real workloads do."""
    with make_pod() as made:
        assert made.app is not None
        sleeper = made.spawn(
            [
                "nsenter",
                f"--target={made.app.pid}",
                "--mount",
                "--net",
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "sleep",
                "600",
            ],
            "nobody.log",
        )
        wait_for(lambda: _uid_of(sleeper.pid) == 65534, what="the non-root target")
        made.start_agent("--target-pid", str(sleeper.pid))
        yield made


def _uid_of(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return -1


def test_a_non_root_target_gets_eacces_and_owns_what_it_creates(non_root_pod: Pod) -> None:
    seen = run(
        non_root_pod,
        """
        attempt("write_locked", lambda: write(data + "/locked.txt", "x"))
        attempt("read_locked", lambda: read(data + "/locked.txt"))
        attempt("access_locked", lambda: os.access(data + "/locked.txt", os.R_OK))
        attempt("write_notes", lambda: write(data + "/notes.txt", "by nobody\\n", "a"))
        write(data + "/by-nobody.txt", "mine")
        attempt("configmap", lambda: write(config + "/app.json", "{}"))
        """,
    )
    assert seen == {
        "write_locked": "EACCES",
        "read_locked": "EACCES",
        "access_locked": False,
        "write_notes": None,
        "configmap": "EROFS",
    }
    assert in_pod(non_root_pod, "by-nobody.txt").stat().st_uid == 65534
    assert in_pod(non_root_pod, "notes.txt").read_text() == "first line\nby nobody\n"


def test_a_file_in_a_folder_the_target_cannot_write_is_refused_with_a_reason(
    non_root_pod: Pod,
) -> None:
    """A write-back replaces the file (a new file beside it, renamed over it), so the folder
    must be the target's to write: the open says so rather than leave a write to fail later."""
    folder = in_pod(non_root_pod, "root-folder")
    folder.mkdir(mode=0o755)
    (folder / "mine.txt").write_text("nobody's\n")
    os.chown(folder / "mine.txt", 65534, 65534)
    path = f"{POD_DATA}/root-folder/mine.txt"
    result = podside_exec(
        non_root_pod,
        PYTHON,
        "-c",
        f"open({path!r}, 'a').write('more')",
        options=("-q", "--fs", "write"),
    )
    assert result.returncode != 0
    assert "PermissionError" in result.stderr
    assert f"podside: {path}: the pod's process may write this file but not create" in (
        result.stderr
    )
    assert (folder / "mine.txt").read_text() == "nobody's\n"
