"""The program's environment: this machine's, with the target process's merged in."""

from __future__ import annotations

import fnmatch

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
            raise PodsideError(f"--env {value!r}: expected NAME=VALUE")
        result[name] = content
    return result


def merge(
    local: dict[str, str],
    remote: dict[str, str],
    *,
    exclude: list[str],
    include: list[str],
    overrides: dict[str, str],
) -> dict[str, str]:
    """Local, then the remote values that pass the filters, then `overrides` (which win)."""
    skipped = list(exclude) if include else [*LOCAL_ONLY, *exclude]
    merged = dict(local)
    for name, value in remote.items():
        if include and not any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in skipped):
            continue
        merged[name] = value
    merged.update(overrides)
    return merged
