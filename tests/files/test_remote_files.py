"""--fs read: files that exist only inside the pod (a ConfigMap-like volume with `..data`
symlinks, and a large file) are read, stat'ed and listed by the local program; under --fs local
(the default, or --no-fs) they are absent; a missing remote file is ENOENT."""

from __future__ import annotations

import errno
import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from tests.core.conftest import pod, podside_exec  # noqa: F401
from tests.files.probe_prelude import PRELUDE
from tests.topology import (
    POD_CONFIG,
    POD_LARGE_FILE,
    POD_LARGE_SIZE,
    PYTHON,
    Pod,
    pod_large_contents,
)

PROBE = PRELUDE + textwrap.dedent(
    """
    config, large = sys.argv[1], sys.argv[2]
    def digest(path):
        hasher, size = hashlib.sha256(), 0
        with open(path, "rb") as file:
            while chunk := file.read(65536):
                hasher.update(chunk)
                size += len(chunk)
        return [size, hasher.hexdigest()]
    attempt("read", lambda: read(config + "/app.json"))
    attempt("stat", lambda: [os.stat(config + "/app.json").st_size, oct(os.stat(config + "/mode").st_mode)])
    attempt("lstat_is_link", lambda: os.path.islink(config + "/app.json"))
    attempt("readlink", lambda: [os.readlink(config + "/app.json"), os.readlink(config + "/..data")])
    attempt("realpath", lambda: os.path.realpath(config + "/mode"))
    attempt("readlink_of_a_file", lambda: os.readlink(large))
    def readlink_cut():
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        buffer = ctypes.create_string_buffer(b"#" * 8)
        count = libc.readlink((config + "/app.json").encode(), buffer, 5)
        return [count, buffer.raw[:8].decode()]
    attempt("readlink_cut", readlink_cut)
    attempt("exists", lambda: os.path.exists(config + "/mode"))
    attempt("access", lambda: [os.access(config + "/app.json", os.R_OK), os.access(config + "/app.json", os.W_OK)])
    attempt("listdir", lambda: sorted(os.listdir(config)))
    attempt("isdir", lambda: os.path.isdir(config))
    attempt("large", lambda: digest(large))
    attempt("large_stat", lambda: os.stat(large).st_size)
    attempt("missing", lambda: read(config + "/missing.json"))
    attempt("missing_stat", lambda: os.stat(config + "/missing.json").st_size)
    def relative():
        folder = os.open(config, os.O_RDONLY | os.O_DIRECTORY)
        fd = os.open("mode", os.O_RDONLY, dir_fd=folder)
        return os.read(fd, 100).decode()
    attempt("relative", relative)
    attempt("local_still_local", lambda: read("/etc/hostname") == open("/proc/sys/kernel/hostname").read() or True)
    print(json.dumps(result))
    """
)


def probe(pod: Pod, *options: str) -> dict[str, object]:  # noqa: F811
    result = podside_exec(
        pod, PYTHON, "-c", PROBE, POD_CONFIG, POD_LARGE_FILE, options=("-q", *options)
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_pod_only_files_are_read_under_fs_read(pod: Pod) -> None:  # noqa: F811
    seen = probe(pod, "--fs", "read")
    assert seen["read"] == '{"greeting": "hello from the pod"}\n'
    assert seen["stat"] == [35, "0o100644"]
    assert seen["lstat_is_link"] is True  # a ConfigMap's files are symlinks into ..data
    # ...and read as the pod's symlinks: realpath, ls -l and cp -r follow them.
    assert seen["readlink"] == ["..data/app.json", "..2026_01_01"]
    assert seen["realpath"] == f"{POD_CONFIG}/..2026_01_01/mode"
    assert seen["readlink_of_a_file"] == "EINVAL"
    assert seen["readlink_cut"] == [5, "..dat###"]  # cut to the buffer, no terminating NUL
    assert seen["exists"] is True
    assert seen["access"] == [True, False]  # read-only for the program under --fs read
    assert seen["listdir"] == ["..2026_01_01", "..data", "app.json", "large.bin", "mode"]
    assert seen["isdir"] is True
    assert seen["relative"] == "production\n"


def test_a_large_file_arrives_intact(pod: Pod) -> None:  # noqa: F811
    seen = probe(pod, "--fs", "read")
    expected = hashlib.sha256(pod_large_contents()).hexdigest()
    assert seen["large"] == [POD_LARGE_SIZE, expected]
    assert seen["large_stat"] == POD_LARGE_SIZE


def test_a_missing_remote_file_is_enoent(pod: Pod) -> None:  # noqa: F811
    seen = probe(pod, "--fs", "read")
    assert seen["missing"] == "ENOENT"
    assert seen["missing_stat"] == "ENOENT"


@pytest.mark.parametrize("options", [(), ("--fs", "local"), ("--no-fs",)])
def test_pod_only_files_are_absent_by_default(pod: Pod, options: tuple[str, ...]) -> None:  # noqa: F811
    seen = probe(pod, *options)
    for key in ("read", "stat", "listdir", "large", "relative"):
        assert seen[key] == "ENOENT", key
    assert seen["exists"] is False


def test_fs_local_keeps_a_remote_path_here(pod: Pod) -> None:  # noqa: F811
    seen = probe(pod, "--fs", "read", "--fs-local", "^/srv/podside-config/app")
    assert seen["read"] == "ENOENT"
    assert seen["relative"] == "production\n"


def test_fs_remote_wins_over_a_local_copy(pod: Pod, tmp_path: Path) -> None:  # noqa: F811
    # /srv exists here too (empty); --fs-remote makes the pod's /srv the one the program sees,
    # even for a path the defaults would keep here.
    result = podside_exec(
        pod,
        PYTHON,
        "-c",
        "import os; print(sorted(os.listdir('/srv')))",
        options=("-q", "--fs", "read", "--fs-remote", "^/srv$"),
    )
    assert (result.returncode, result.stdout) == (0, "['podside-config', 'podside-data']\n"), (
        result.stderr
    )


def test_a_bad_regex_is_one_line(pod: Pod) -> None:  # noqa: F811
    result = podside_exec(pod, "true", options=("--fs", "read", "--fs-remote", "^/etc/(app"))
    assert result.returncode == 2
    assert result.stderr.startswith("podside: --fs-remote '^/etc/(app': not a regular expression")


def test_chdir_into_a_remote_folder_fails_clearly(pod: Pod) -> None:  # noqa: F811
    script = textwrap.dedent(
        f"""
        import errno, json, os
        result = {{}}
        for name, path in (("folder", {POD_CONFIG!r}), ("file", {POD_CONFIG + "/mode"!r}),
                           ("missing", "/srv/podside-nothing"), ("again", {POD_CONFIG!r})):
            try:
                os.chdir(path)
                result[name] = os.getcwd()
            except OSError as error:
                result[name] = errno.errorcode[error.errno]
        os.chdir("/tmp")
        result["local"] = os.getcwd()
        # A descriptor of the remote folder is a folder here: fchdir works, and relative
        # opens from there are the pod's.
        os.chdir(os.open({POD_CONFIG!r}, os.O_RDONLY | os.O_DIRECTORY))
        result["relative_after_fchdir"] = open("mode").read()
        print(json.dumps(result))
        """
    )
    result = podside_exec(pod, PYTHON, "-c", script, options=("-q", "--fs", "read"))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "folder": errno.errorcode[errno.EOPNOTSUPP],
        "file": "ENOTDIR",
        "missing": "ENOENT",
        "again": errno.errorcode[errno.EOPNOTSUPP],
        "local": "/tmp",
        "relative_after_fchdir": "production\n",
    }
    # One line, once per folder, says why.
    assert result.stderr.count(f"chdir into {POD_CONFIG}, a folder of the pod") == 1
