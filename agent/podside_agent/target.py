"""The target: the pod's main process, whose environment, root and credentials the agent uses.

It is found once at start — `--target-pid` (the sandbox passes the target container's
process), or else the oldest process sharing the agent's network namespace that is not the
agent, its ancestors or `pause` (`find_target_process`) — and remembered by what identifies it:
its pid with its start time (a pid reused by another process is not the target), its
executable and its command line. When the target is gone (the app container restarted), the
next request that needs it finds it again among the pod's processes: the oldest with the same
executable and command line, or, for a target the agent found by itself, by the same rule as
at start. A target given by pid is never swapped for an unrelated process.

Everything here reads /proc, which can block on a process stuck in the kernel: it runs on the
agent's worker threads (`workers.py`), never on the event loop.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass

_CLONE_NEWUTS = 0x04000000


@dataclass(frozen=True, slots=True)
class Process:
    """One process as /proc shows it: what tells a restarted target apart from the rest."""

    pid: int
    started: int  # clock ticks after boot: with the pid, one process for the machine's uptime
    executable: str
    command_line: bytes

    def same_program(self, other: Process) -> bool:
        return (self.executable, self.command_line) == (other.executable, other.command_line)


def _stat_fields(pid: int | str) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name, the first being field 3."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The command name may contain spaces and parentheses: parse after the last ')'.
        return stat.read().rsplit(b")", 1)[1].split()


def start_time(pid: int | str) -> int:
    """When `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat): with the
    pid, it names one process for the machine's uptime."""
    return int(_stat_fields(pid)[19])


def read_process(pid: int) -> Process:
    """`pid` as /proc shows it now; OSError when it is gone or not ours to look at."""
    started = start_time(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        command_line = cmdline.read()
    try:
        executable = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        executable = ""  # a kernel thread, or another user's process
    return Process(pid, started, executable, command_line)


def choose(candidates: Iterable[Process], previous: Process | None, pinned: bool) -> int | None:
    """The target among the pod's processes: the oldest running the previous target's
    program; without one, the oldest of all unless the target was given by pid."""
    ordered = sorted(candidates, key=lambda process: (process.started, process.pid))
    if previous is not None:
        for process in ordered:
            if process.same_program(previous):
                return process.pid
        if pinned:
            return None
    return ordered[0].pid if ordered else None


def netns_inode(pid: int | str) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def _parent_of(pid: int) -> int:
    return int(_stat_fields(pid)[1])


def pod_processes(namespace: int) -> list[Process]:
    """The processes in network namespace `namespace` (an inode) that may be the target:
    not the agent, its ancestors (a shell or `ip netns exec` that started it), its children,
    nor the pod's `pause` process."""
    own_pid = os.getpid()
    ancestors = {own_pid}
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = own_pid
        while pid > 1:
            pid = _parent_of(pid)
            ancestors.add(pid)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in ancestors:
            continue
        pid = int(entry.name)
        try:
            if netns_inode(pid) != namespace or _parent_of(pid) == own_pid:
                continue
            with open(f"/proc/{pid}/comm", "rb") as comm:
                if comm.read().strip() == b"pause":
                    continue
            found.append(read_process(pid))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to look at
    return found


def find_target_process() -> int | None:
    """The pod's main process: the oldest one sharing our network namespace."""
    return choose(pod_processes(netns_inode("self")), None, pinned=False)


class TargetProcess:
    """The target, found again whenever it is gone. `pid` is the last one known (None: no
    target, as in a targetless agent pod)."""

    def __init__(self, pid: int | None, *, pinned: bool) -> None:
        self.pid = pid
        self._pinned = pinned
        self._lock = threading.Lock()
        self._known: Process | None = None
        self._namespace: int | None = None
        if pid is not None:
            self._known = read_process(pid)
            self._namespace = netns_inode(pid)

    def current(self) -> int:
        """The target's pid now (a blocking call: /proc). OSError(ESRCH) while there is none."""
        with self._lock:
            known = self._known
            if known is None or self._namespace is None:
                raise OSError(errno.ESRCH, "no target process (start the agent with --target-pid)")
            with contextlib.suppress(OSError, ValueError, IndexError):
                if read_process(known.pid).started == known.started:
                    return known.pid
            pid = choose(pod_processes(self._namespace), known, self._pinned)
            if pid is None:
                raise OSError(
                    errno.ESRCH,
                    f"the target process {known.pid} ({known.executable or 'unknown'}) has "
                    "exited and no process runs its program in the pod yet",
                )
            with contextlib.suppress(OSError, ValueError, IndexError):
                self._known = read_process(pid)
                self.pid = pid
            return pid

    def current_or_none(self) -> int | None:
        """The target's pid now, found again if it is gone; None while there is none (a
        blocking call: /proc)."""
        if self._known is None:
            return None
        try:
            return self.current()
        except OSError as error:
            if error.errno == errno.ESRCH:
                return None
            raise

    def files_owner(self) -> int:
        """Whose root and credentials the pod's files are used with: the target, or the agent
        itself when it has none (a targetless agent pod's root is the pod's)."""
        return os.getpid() if self.pid is None else self.current()

    def hostname(self) -> str | None:
        """The pod's hostname: the nodename of the target's UTS namespace (a blocking call:
        /proc). The agent shares that namespace in a pod (its containers share one), so its own
        uname answers; otherwise one short-lived thread enters the target's namespace to ask,
        which needs CAP_SYS_ADMIN; without it the answer is None (unknown), never a wrong name."""
        try:
            pid = os.getpid() if self.pid is None else self.current()
            theirs = os.stat(f"/proc/{pid}/ns/uts").st_ino
        except OSError:
            return None  # the target is gone: the next request finds it again
        if theirs == os.stat("/proc/self/ns/uts").st_ino:
            return os.uname().nodename
        from podside_agent.podnet import setns  # podnet imports this module

        answer: list[str] = []

        def ask() -> None:
            # setns changes only this thread's UTS namespace, and the thread ends right after.
            try:
                with open(f"/proc/{pid}/ns/uts", "rb") as namespace:
                    setns(namespace.fileno(), _CLONE_NEWUTS)
            except OSError:
                return
            answer.append(os.uname().nodename)

        thread = threading.Thread(target=ask, name="podside-uts")
        thread.start()
        thread.join()
        return answer[0] if answer else None

    def environment(self) -> dict[str, str]:
        """The target's environment variables, as its container started it."""
        with open(f"/proc/{self.current()}/environ", "rb") as file:
            raw = file.read()
        result: dict[str, str] = {}
        for entry in raw.split(b"\0"):
            name, separator, value = entry.partition(b"=")
            if separator and name:
                # Invalid UTF-8 cannot travel as msgpack text; replace rather than fail.
                result[name.decode(errors="replace")] = value.decode(errors="replace")
        return result
