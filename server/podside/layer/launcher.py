"""Starts the program under the layer's seccomp filter.

The child is forked first, before podside starts any thread or connects anywhere, so the
fork copies a quiet single-threaded process. The child installs the filter, reports the
listener's fd number, then waits on a pipe for what to execute (the command, the merged
environment) — known only once the agent answered. The parent takes the listener with
pidfd_getfd. If the set-up fails, the parent closes the pipe and the child exits unseen.
"""

from __future__ import annotations

import errno
import os
import pickle
import signal
import struct
import sys
from dataclasses import dataclass

from podside.errors import PodsideError
from podside.layer import seccomp

_SIGNALS_RESET = (signal.SIGPIPE, signal.SIGXFSZ)


@dataclass(frozen=True)
class ExecSpec:
    path: str
    argv: list[str]
    env: dict[str, str]


def _child(
    prepared: seccomp.PreparedFilter,
    parent: int,
    report_fd: int,
    spec_fd: int,
    exec_error_fd: int,
) -> None:
    """Runs in the forked child; never returns."""
    try:
        # If podside dies (even by SIGKILL) the program's intercepted calls can only fail:
        # end the program with it rather than leave it running broken.
        seccomp.set_parent_death_signal(signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        for signum in _SIGNALS_RESET:
            signal.signal(signum, signal.SIG_DFL)
        try:
            listener_fd = prepared.install()
        except OSError as error:
            os.write(report_fd, struct.pack("=ii", -1, error.errno or errno.EINVAL))
            os._exit(126)
        os.write(report_fd, struct.pack("=ii", listener_fd, 0))
        os.close(report_fd)
        chunks = []
        while chunk := os.read(spec_fd, 65536):
            chunks.append(chunk)
        if not chunks:
            os._exit(0)  # the parent gave up before starting the program
        spec: ExecSpec = pickle.loads(b"".join(chunks))
        os.close(listener_fd)
        os.close(spec_fd)
        try:
            os.execve(spec.path, spec.argv, spec.env)
        except OSError as error:
            os.write(exec_error_fd, struct.pack("=i", error.errno or errno.ENOEXEC))
            os._exit(127 if error.errno == errno.ENOENT else 126)
    except BaseException:
        os._exit(127)


class LayeredProcess:
    """The forked child, its seccomp listener, and the pipe that starts it."""

    def __init__(self, rules: seccomp.FilterRules) -> None:
        prepared = seccomp.PreparedFilter(rules)
        report_read, report_write = os.pipe()
        spec_read, spec_write = os.pipe()
        error_read, error_write = os.pipe()  # close-on-exec: EOF means the exec succeeded
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(report_read)
            os.close(spec_write)
            os.close(error_read)
            _child(prepared, parent, report_write, spec_read, error_write)
        os.close(report_write)
        os.close(spec_read)
        os.close(error_write)
        self.pid = pid
        self._spec_fd: int | None = spec_write
        self._error_fd = error_read
        self.exit_status: int | None = None
        try:
            report = _read_exactly(report_read, 8)
        finally:
            os.close(report_read)
        listener_fd, failure = struct.unpack("=ii", report) if len(report) == 8 else (-1, 0)
        if listener_fd < 0:
            self._reap()
            raise PodsideError(_filter_failure_message(failure))
        try:
            pidfd = seccomp.pidfd_open(pid)
            try:
                self.listener = seccomp.Listener(seccomp.pidfd_getfd(pidfd, listener_fd))
            finally:
                os.close(pidfd)
        except OSError as error:
            self.abandon()
            if error.errno == errno.ENOSYS:
                raise PodsideError(
                    f"this kernel ({os.uname().release}) lacks pidfd_getfd, which podside's "
                    "layer needs (Linux 5.6 or newer)"
                ) from None
            raise PodsideError(
                f"cannot take the seccomp listener from the child: {error}"
            ) from None
        self.listener.enable_sync_wakeup()

    def start(self, spec: ExecSpec) -> None:
        """Exec the program; raises PodsideError if the exec itself fails."""
        assert self._spec_fd is not None
        try:
            os.write(self._spec_fd, pickle.dumps(spec))
        finally:
            os.close(self._spec_fd)
            self._spec_fd = None
        failure = _read_exactly(self._error_fd, 4)
        os.close(self._error_fd)
        if failure:
            (code,) = struct.unpack("=i", failure)
            self._reap()
            if code == errno.ENOENT:
                raise PodsideError(f"command not found: {spec.argv[0]}", exit_code=127)
            raise PodsideError(f"cannot run {spec.argv[0]}: {os.strerror(code)}", exit_code=126)

    def abandon(self) -> None:
        """Set-up failed: the child exits without running anything."""
        if self._spec_fd is not None:
            os.close(self._spec_fd)
            self._spec_fd = None
        self._reap()

    def _reap(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
            self.exit_status = status
        except ChildProcessError:
            pass


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _filter_failure_message(code: int) -> str:
    release = os.uname().release
    if code in (errno.EINVAL, errno.ENOSYS):
        return (
            f"this kernel ({release}) lacks seccomp user notification, which podside's layer "
            "needs (Linux 5.9 or newer with CONFIG_SECCOMP_FILTER)"
        )
    if code == errno.EACCES:
        return "the kernel refused the seccomp filter (no_new_privs could not be set)"
    return f"cannot install the seccomp filter: {os.strerror(code)}"
