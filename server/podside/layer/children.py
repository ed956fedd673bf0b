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

import asyncio
import contextlib
import os
import signal
import threading

import psutil

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
_SI_KERNEL = 0x80


def block_forwarded_signals() -> None:
    """Call before any thread starts (the kubernetes client and the port-forward start some):
    threads inherit the mask, so only the forwarder sees these signals. A thread that left
    them unblocked would take SIGTERM's default action and end podside at once, without
    forwarding it, leaving the program and what it started behind."""
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)


class SignalForwarder:
    """Until the program runs, a signal stops podside: the session's task is cancelled, so it
    stops connecting and cleans up, and exits with 128+N; should a thread stuck in a Kubernetes
    call hold the exit up, podside leaves anyway after GRACE_SECONDS. Once the program runs,
    signals go to it."""

    GRACE_SECONDS = 5.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._task: asyncio.Task[int] | None = None
        self.received: int | None = None  # the signal that stopped podside before the program
        self._thread = threading.Thread(target=self._run, name="podside-signals", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def attach(self, task: asyncio.Task[int]) -> None:
        """The session's task: the one a signal before the program cancels."""
        with self._lock:
            self._task = task
            stopped = self.received is not None
        if stopped:
            self._cancel()

    def forward_to(self, pid: int) -> bool:
        """Signals go to `pid` from now on; False when podside was told to stop already."""
        with self._lock:
            if self.received is not None:
                return False
            self._pid = pid
            return True

    def _run(self) -> None:
        while True:
            info = signal.sigwaitinfo(FORWARDED)
            with self._lock:
                pid, first = self._pid, self.received is None
                if pid is None and first:
                    self.received = info.si_signo
            if pid is None:
                if first:
                    self._cancel()
                    leave = threading.Timer(self.GRACE_SECONDS, os._exit, [128 + info.si_signo])
                    leave.daemon = True
                    leave.start()
                continue
            if info.si_code == _SI_KERNEL:
                continue  # from the terminal: the program's process group got it already
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, info.si_signo)

    def _cancel(self) -> None:
        task = self._task
        if task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: podside is leaving
                task.get_loop().call_soon_threadsafe(task.cancel)


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


def descendants(root: int) -> list[psutil.Process]:
    """Every live process below `root`."""
    try:
        return psutil.Process(root).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal_all(processes: list[psutil.Process], signo: int) -> None:
    for process in processes:
        # psutil checks the pid was not reused by an unrelated process before signalling.
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signo)


async def terminate_descendants(watcher: ChildWatcher, grace: float = 2.0) -> None:
    """SIGTERM what the program left behind, then SIGKILL what is still there after `grace`."""
    own = os.getpid()
    remaining = descendants(own)
    if not remaining:
        return
    _signal_all(remaining, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        watcher.reap()
        if not descendants(own):
            return
    _signal_all(descendants(own), signal.SIGKILL)
    for _ in range(40):
        watcher.reap()
        if not descendants(own):
            return
        await asyncio.sleep(0.05)


def exit_code(status: int) -> int:
    """The shell's convention: the exit code, or 128 + the signal that killed the program."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
