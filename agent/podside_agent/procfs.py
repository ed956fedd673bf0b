"""/proc/PID/status read one way for both ends: the agent's credential checks and the layer's
per-thread questions (thread group, umask)."""

from __future__ import annotations


def status_fields(pid: int | str, names: tuple[str, ...]) -> dict[str, list[str]]:
    """The `names` fields of /proc/`pid`/status (a process or thread id), each value split on
    whitespace, e.g. {"Uid": ["0", "0", "0", "0"]}; a field the kernel does not show is absent.
    Reading stops at the last field asked for. OSError when the process is gone."""
    wanted = {name.encode(): name for name in names}
    fields: dict[str, list[str]] = {}
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            key, separator, value = line.partition(b":")
            name = wanted.get(key) if separator else None
            if name is not None:
                fields[name] = value.decode("latin-1").split()
                if len(fields) == len(wanted):
                    break
    return fields
