"""The program's process tree: signals in, exit status out, nothing left behind.

podside is a child subreaper, so processes the program leaves behind (daemons, orphans) become
podside's children; they all run under the layer's filter and would fail once podside exits,
so they are terminated when the program ends.

Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT are received by one thread with sigwaitinfo. One
that the terminal sent (si_code SI_KERNEL) already reached the program, which shares podside's
process group, so it is not sent twice; one sent to podside alone (kill, a supervisor, an
editor stopping the session) is forwarded to the program.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import os
import signal
import threading

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_SI_KERNEL = 0x80


def block_forwarded_signals() -> None:
    """Call before any thread starts (the kubernetes client and the port-forward start some):
    threads inherit the mask, so only the forwarder sees these signals. A thread that left
    them unblocked would take SIGTERM's default action and end podside at once, without
    forwarding it, leaving the program and what it started behind."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


class SignalForwarder:
    """Until the program runs, a signal interrupts podside (as Ctrl-C does: it stops connecting
    and cleans up); once it runs, signals go to the program."""

    def __init__(self) -> None:
        self._pid: int | None = None
        self._thread = threading.Thread(target=self._run, name="podside-signals", daemon=True)
        # The loop podside runs, to wake: the interrupt is only seen when it runs Python code.
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._thread.start()

    def forward_to(self, pid: int) -> None:
        self._pid = pid

    def _run(self) -> None:
        while True:
            info = signal.sigwaitinfo(FORWARDED)
            if self._pid is None:
                _thread.interrupt_main()
                if self.loop is not None:
                    with contextlib.suppress(RuntimeError):  # closed already
                        self.loop.call_soon_threadsafe(lambda: None)
                continue
            if info.si_code == _SI_KERNEL:
                continue  # from the terminal: the program's process group got it already
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, info.si_signo)


class ChildWatcher:
    """Reaps every child on SIGCHLD and resolves `exited` with the program's wait status."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = self._loop.create_future()
        self._loop.add_signal_handler(signal.SIGCHLD, self.reap)
        self.reap()  # the program may have exited before the handler was in place

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self._pid and not self.exited.done():
                self.exited.set_result(status)

    def close(self) -> None:
        self._loop.remove_signal_handler(signal.SIGCHLD)


def descendants(root: int) -> list[int]:
    """Every live process below `root`, found through /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


async def terminate_descendants(watcher: ChildWatcher, grace: float = 2.0) -> None:
    """SIGTERM what the program left behind, then SIGKILL what is still there after `grace`."""
    own = os.getpid()
    remaining = descendants(own)
    if not remaining:
        return
    for pid in remaining:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        watcher.reap()
        if not descendants(own):
            return
    for pid in descendants(own):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(40):
        watcher.reap()
        if not descendants(own):
            return
        await asyncio.sleep(0.05)


def exit_code(status: int) -> int:
    """The shell's convention: the exit code, or 128 + the signal that killed the program."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
