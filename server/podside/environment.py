"""The program's environment: this machine's, with the target process's merged in.

The order, after mirrord's (`feature.env`): this machine's variables; the pod's that pass
`--exclude-env`/`--include-env`, renamed by `--env-map`; `--env-file`'s; then `--unset-env`
removes names from all of these, and `--env NAME=VALUE` is set whatever came before.
"""

from __future__ import annotations

import errno
import fnmatch
import io
import os
import re
import select
import stat
import time
from dataclasses import dataclass

from dotenv.parser import parse_stream

from podside.errors import PodsideError

# Variables that describe this machine, not the pod: the pod's values would break the program
# here (its PATH names the container's directories, its HOME is not ours). `--include-env`
# replaces this list; `--exclude-env` adds to it.
LOCAL_ONLY = (
    "PATH",
    "HOME",
    "PWD",
    "OLDPWD",
    "SHELL",
    "SHLVL",
    "TERM",
    "USER",
    "LOGNAME",
    "TMPDIR",
    "LANG",
    "LC_*",
    "DISPLAY",
    "SSH_*",
    "XDG_*",
    "LD_*",
    "PYTHONHOME",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "GOPATH",
    "GOROOT",
    "GOCACHE",
    "NODE_PATH",
    "NODE_OPTIONS",
    "JAVA_HOME",
    "_",
)


def parse_assignments(values: list[str]) -> dict[str, str]:
    result = {}
    for value in values:
        name, separator, content = value.partition("=")
        if not separator or not name:
            raise PodsideError(f"--env {value!r}: expected NAME=VALUE", exit_code=2)
        if "\0" in value:  # a config file's "\u0000": execve would refuse the environment
            raise PodsideError(f"--env {value!r}: a NUL byte is in no variable", exit_code=2)
        result[name] = content
    return result


@dataclass(frozen=True)
class Mapping:
    """`--env-map PATTERN=NAME`: a pod variable whose whole name matches PATTERN (a regex)
    reaches the program as NAME, which may use the match's groups (`\\1`, `\\g<name>`)."""

    pattern: re.Pattern[str]
    name: str

    def renamed(self, name: str) -> str | None:
        match = self.pattern.fullmatch(name)
        if match is None:
            return None
        try:
            new_name = match.expand(self.name)
        except (re.error, IndexError) as error:
            raise PodsideError(
                f"--env-map {self.pattern.pattern}={self.name}: {error}", 2
            ) from None
        if not new_name or "=" in new_name or "\0" in new_name:
            raise PodsideError(
                f"--env-map {self.pattern.pattern}={self.name}: {name} would be named "
                f"{new_name!r}, which is not a variable name",
                exit_code=2,
            )
        return new_name


# A dotenv file is small; a pipe (`--env-file <(sops -d app.env)`) must write it soon.
ENV_FILE_LIMIT = 16 * 1024 * 1024
ENV_PIPE_SECONDS = 10.0


def _read_env_bytes(path: str) -> bytes:
    """The file's bytes: a regular file, or a pipe that is written within ENV_PIPE_SECONDS
    (a FIFO nobody writes to must not hang podside); anything else is refused."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind) and not stat.S_ISFIFO(kind):
            what = "a folder" if stat.S_ISDIR(kind) else "not a regular file or a pipe"
            raise OSError(errno.EINVAL, f"{what}: expected a dotenv file")
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + ENV_PIPE_SECONDS
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            left = deadline - time.monotonic()
            if stat.S_ISFIFO(kind) and (left <= 0 or not poller.poll(left * 1000)):
                raise OSError(errno.ETIMEDOUT, f"nothing ended it in {ENV_PIPE_SECONDS:.0f} s")
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > ENV_FILE_LIMIT:
                raise OSError(errno.EFBIG, f"larger than {ENV_FILE_LIMIT >> 20} MiB")
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_env_file(path: str) -> dict[str, str]:
    """The variables of a dotenv file (`NAME=VALUE`, `export NAME=...`, quotes, `#` comments),
    taken literally: `$NAME` is not expanded, so what `podside env -o dotenv` wrote reads back
    the same. A file that cannot be read or a line that is not an assignment is one error."""
    try:
        text = _read_env_bytes(path).decode("utf-8")
    except OSError as error:
        raise PodsideError(f"--env-file {path}: {error.strerror}", exit_code=2) from None
    except UnicodeDecodeError:
        raise PodsideError(f"--env-file {path}: not UTF-8 text", exit_code=2) from None
    variables: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        # the parser counts a statement from the blank lines before it
        line = binding.original.line + original[: len(original) - len(original.lstrip())].count(
            "\n"
        )
        if binding.error or (binding.key is not None and binding.value is None):
            shown = original.strip().splitlines()[0] if original.strip() else original
            raise PodsideError(
                f"--env-file {path}:{line}: expected NAME=VALUE, got {shown[:60]!r}",
                exit_code=2,
            )
        if binding.key is not None and binding.value is not None:
            # execve refuses these: say it here, in one line, not when the program starts
            if "=" in binding.key or "\0" in binding.key or "\0" in binding.value:
                raise PodsideError(
                    f"--env-file {path}:{line}: {binding.key[:60]!r}: a variable name holds "
                    "no = or NUL byte and a value no NUL byte",
                    exit_code=2,
                )
            variables[binding.key] = binding.value
    return variables


_PLAIN_NAME = re.compile(r"[^=#\s'][^=#\s]*")


def dotenv_line(name: str, value: str) -> str | None:
    """`NAME="VALUE"` that `read_env_file` reads back as `value` (newlines included); a name
    with spaces or `#`, or starting with `'`, is quoted (`'NAME'`). None for a name a dotenv
    file cannot hold (a line break in it, or a `'` where it needs quotes)."""
    if _PLAIN_NAME.fullmatch(name):
        key = name
    elif not {"'", "=", "\n", "\r"} & set(name):
        key = f"'{name}'"
    else:
        return None
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'{key}="{escaped}"'


def pod_variables(
    remote: dict[str, str],
    *,
    exclude: list[str],
    include: list[str],
    mappings: list[Mapping] | None = None,
) -> dict[str, str]:
    """The pod's variables the program takes: those that pass the filters, renamed."""
    skipped = list(exclude) if include else [*LOCAL_ONLY, *exclude]
    taken: dict[str, str] = {}
    for name, value in remote.items():
        if include and not any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in skipped):
            continue
        renamed = next(
            (new for mapping in mappings or () if (new := mapping.renamed(name)) is not None),
            name,
        )
        taken[renamed] = value
    return taken


def unset(env: dict[str, str], patterns: list[str]) -> dict[str, str]:
    """`env` without the names matching `patterns` (globs, any case, as mirrord's `unset`)."""
    lowered = [pattern.lower() for pattern in patterns]
    return {
        name: value
        for name, value in env.items()
        if not any(fnmatch.fnmatchcase(name.lower(), pattern) for pattern in lowered)
    }


def merge(
    local: dict[str, str],
    remote: dict[str, str],
    *,
    exclude: list[str],
    include: list[str],
    overrides: dict[str, str],
    mappings: list[Mapping] | None = None,
    from_file: dict[str, str] | None = None,
    unset_names: list[str] | None = None,
) -> dict[str, str]:
    """Local, then the remote values that pass the filters (renamed), then the env file's;
    without the unset names; then `overrides` (which win)."""
    merged = dict(local)
    merged.update(pod_variables(remote, exclude=exclude, include=include, mappings=mappings))
    merged.update(from_file or {})
    merged = unset(merged, unset_names or [])
    merged.update(overrides)
    return merged
