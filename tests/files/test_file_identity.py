"""--fs read: a remote file's stat names the inode its open hands out, so programs that compare
the two (coreutils cp, shutil, rsync, tar) copy it: `cp` of a small and a multi-MiB pod file
gives an identical copy, and stat then open+fstat agree on dev, ino, size, mode and mtime."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import textwrap
from pathlib import Path

from tests.core.conftest import pod, podside_exec  # noqa: F401
from tests.topology import POD_CONFIG, POD_LARGE_FILE, PYTHON, Pod, pod_large_contents

SMALL = f"{POD_CONFIG}/app.json"  # a symlink into ..data, as in a ConfigMap
SMALL_CONTENTS = b'{"greeting": "hello from the pod"}\n'

AGREE = textwrap.dedent(
    """
    import json, os, stat, sys
    FIELDS = ("st_dev", "st_ino", "st_size", "st_mode", "st_mtime_ns")
    result = {}
    for path in sys.argv[1:]:
        before = os.stat(path)
        fd = os.open(path, os.O_RDONLY)
        opened = os.fstat(fd)
        again = os.open(path, os.O_RDONLY)
        os.lseek(fd, 5, os.SEEK_SET)  # each open has its own offset
        result[path] = {
            "stat": [getattr(before, name) for name in FIELDS],
            "fstat": [getattr(opened, name) for name in FIELDS],
            "second_open": [getattr(os.fstat(again), name) for name in FIELDS],
            "stat_after": [getattr(os.stat(path), name) for name in FIELDS],
            "own_offset": os.lseek(again, 0, os.SEEK_CUR),
            "regular": stat.S_ISREG(opened.st_mode),
        }
    print(json.dumps(result))
    """
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cp_copies_small_and_large_remote_files(pod: Pod, tmp_path: Path) -> None:  # noqa: F811
    small, large = tmp_path / "small", tmp_path / "large"
    script = f"cp {SMALL} {small} && cp {POD_LARGE_FILE} {large} && cp -p {SMALL} {small}.p"
    result = podside_exec(pod, "bash", "-c", script, options=("-q", "--fs", "read"))
    assert result.returncode == 0, result.stderr
    assert _sha256(small) == hashlib.sha256(SMALL_CONTENTS).hexdigest()
    assert _sha256(large) == hashlib.sha256(pod_large_contents()).hexdigest()
    # cp -p keeps the pod's mode and mtime (read from fstat of what it opened).
    pod_file = Path(f"/proc/{pod.app.pid}/root{POD_CONFIG}/..data/app.json")
    assert (
        small.with_name("small.p").stat().st_mtime_ns,
        small.with_name("small.p").stat().st_mode,
    ) == (
        pod_file.stat().st_mtime_ns,
        pod_file.stat().st_mode,
    )


def test_stat_then_open_and_fstat_agree(pod: Pod) -> None:  # noqa: F811
    result = podside_exec(
        pod, PYTHON, "-c", AGREE, SMALL, POD_LARGE_FILE, options=("-q", "--fs", "read")
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    for path in (SMALL, POD_LARGE_FILE):
        entry = seen[path]
        assert entry["stat"] == entry["fstat"] == entry["second_open"] == entry["stat_after"], path
        assert entry["own_offset"] == 0 and entry["regular"], path
        real = os.stat(f"/proc/{pod.app.pid}/root{path}")
        _dev, _ino, size, mode, mtime_ns = entry["stat"]
        assert (size, mode, mtime_ns) == (real.st_size, real.st_mode, real.st_mtime_ns), path


def test_statx_in_one_process_and_fstat_in_another_agree(pod: Pod) -> None:  # noqa: F811
    # coreutils stat uses statx; the later python process opens the same version of the file
    # in the same session, so it gets the same inode.
    fstat = (
        "import os, sys; s = os.fstat(os.open(sys.argv[1], os.O_RDONLY)); "
        "print(os.major(s.st_dev), os.minor(s.st_dev), s.st_ino, s.st_size, oct(s.st_mode & 0o7777))"
    )
    script = (
        f"stat -L -c '%Hd %Ld %i %s 0%a' {SMALL} && "
        f"{shlex.quote(PYTHON)} -c {shlex.quote(fstat)} {SMALL}"
    )
    result = podside_exec(pod, "bash", "-c", script, options=("-q", "--fs", "read"))
    assert result.returncode == 0, result.stderr
    from_stat, from_fstat = result.stdout.splitlines()
    assert from_stat.replace("0o", "0") == from_fstat.replace("0o", "0")


def test_shutil_copy2_copies_data_and_times(pod: Pod, tmp_path: Path) -> None:  # noqa: F811
    target = tmp_path / "large.copy"
    script = (
        "import shutil, sys; shutil.copy2(sys.argv[1], sys.argv[2]); "
        "shutil.copyfile(sys.argv[3], sys.argv[2] + '.small')"
    )
    result = podside_exec(
        pod,
        PYTHON,
        "-c",
        script,
        POD_LARGE_FILE,
        str(target),
        SMALL,
        options=("-q", "--fs", "read"),
    )
    assert result.returncode == 0, result.stderr
    assert _sha256(target) == hashlib.sha256(pod_large_contents()).hexdigest()
    assert Path(f"{target}.small").read_bytes() == SMALL_CONTENTS
    real = os.stat(f"/proc/{pod.app.pid}/root{POD_LARGE_FILE}")
    assert target.stat().st_mtime_ns == real.st_mtime_ns


def test_a_file_changed_in_the_pod_is_a_new_inode(pod: Pod, tmp_path: Path) -> None:  # noqa: F811
    # The same session stats a pod file, the pod rewrites it, and the next stat and open see
    # the new contents under a new identity, as a replaced file would be.
    pod_path = "/srv/podside-data/identity.txt"
    in_pod = Path(f"/proc/{pod.app.pid}/root{pod_path}")
    in_pod.write_text("first\n")
    flag = tmp_path / "changed"
    script = textwrap.dedent(
        f"""
        import json, os, time
        first = os.stat({pod_path!r})
        before = open({pod_path!r}).read()
        open({str(flag)!r}, "w").close()
        while os.path.exists({str(flag)!r}):
            time.sleep(0.02)
        second = os.stat({pod_path!r})
        fd = os.open({pod_path!r}, os.O_RDONLY)
        print(json.dumps([before, os.read(fd, 100).decode(), first.st_ino != second.st_ino,
                          second.st_ino == os.fstat(fd).st_ino]))
        """
    )
    import subprocess
    import time

    process = subprocess.Popen(
        [*pod.podside_exec(), "-q", "--fs", "read", "--", PYTHON, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        in_pod.write_text("second, longer\n")
        flag.unlink()
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
        in_pod.unlink()
    assert process.returncode == 0, stderr
    assert json.loads(stdout) == ["first\n", "second, longer\n", True, True]
