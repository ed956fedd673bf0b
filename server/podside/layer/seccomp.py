"""Thin ctypes bindings for seccomp user notification and the process calls the layer needs.

Everything here is a direct wrapper of one kernel interface (seccomp(2), its notification
ioctls, pidfd_open/pidfd_getfd, process_vm_readv/writev, raw socket calls on duplicated
descriptors). Decisions about what to do with a notification live in `supervisor.py`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import platform
import struct
import threading
from dataclasses import dataclass

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# --- syscall numbers per architecture --------------------------------------------------------

_SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {
        "open": 2,
        "connect": 42,
        "sendto": 44,
        "recvfrom": 45,
        "sendmsg": 46,
        "recvmsg": 47,
        "bind": 49,
        "listen": 50,
        "getpeername": 52,
        "uname": 63,
        "stat": 4,
        "lstat": 6,
        "access": 21,
        "chdir": 80,
        "openat": 257,
        "newfstatat": 262,
        "faccessat": 269,
        "statx": 332,
        "faccessat2": 439,
        "getxattr": 191,
        "lgetxattr": 192,
        "listxattr": 194,
        "llistxattr": 195,
        "readlink": 89,
        "readlinkat": 267,
        "rename": 82,
        "mkdir": 83,
        "rmdir": 84,
        "unlink": 87,
        "mkdirat": 258,
        "unlinkat": 263,
        "renameat": 264,
        "renameat2": 316,
        "seccomp": 317,
        "io_uring_setup": 425,
        "pidfd_open": 434,
        "openat2": 437,
        "pidfd_getfd": 438,
    },
    "aarch64": {
        "bind": 200,
        "listen": 201,
        "connect": 203,
        "getpeername": 205,
        "uname": 160,
        "sendto": 206,
        "recvfrom": 207,
        "sendmsg": 211,
        "recvmsg": 212,
        "openat": 56,
        "chdir": 49,
        "faccessat": 48,
        "newfstatat": 79,
        "statx": 291,
        "faccessat2": 439,
        "getxattr": 8,
        "lgetxattr": 9,
        "listxattr": 11,
        "llistxattr": 12,
        "readlinkat": 78,
        "mkdirat": 34,
        "unlinkat": 35,
        "renameat": 38,
        "renameat2": 276,
        "seccomp": 277,
        "io_uring_setup": 425,
        "pidfd_open": 434,
        "openat2": 437,
        "pidfd_getfd": 438,
    },
}
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}

MACHINE = platform.machine()
if MACHINE not in _SYSCALLS:  # pragma: no cover - checked by `podside doctor` too
    raise ImportError(f"podside's layer supports x86_64 and aarch64, not {MACHINE}")
SYSCALLS = _SYSCALLS[MACHINE]
SYSCALL_NAMES = {number: name for name, number in SYSCALLS.items()}
AUDIT_ARCH = _AUDIT_ARCH[MACHINE]

# --- seccomp constants (include/uapi/linux/seccomp.h) -------------------------------------------

SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_USER_NOTIF_FLAG_CONTINUE = 1
SECCOMP_ADDFD_FLAG_SEND = 1 << 1
SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP = 1

PR_SET_NO_NEW_PRIVS = 38
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
PIDFD_THREAD = os.O_EXCL


def _ioc(direction: int, number: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (ord("!") << 8) | number


_IOC_WRITE, _IOC_READ = 1, 2


class SeccompData(ctypes.Structure):
    _fields_ = [
        ("nr", ctypes.c_int32),
        ("arch", ctypes.c_uint32),
        ("instruction_pointer", ctypes.c_uint64),
        ("args", ctypes.c_uint64 * 6),
    ]


class SeccompNotif(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("data", SeccompData),
    ]


class SeccompNotifResp(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("val", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
    ]


class SeccompNotifAddfd(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("srcfd", ctypes.c_uint32),
        ("newfd", ctypes.c_uint32),
        ("newfd_flags", ctypes.c_uint32),
    ]


NOTIF_RECV = _ioc(_IOC_READ | _IOC_WRITE, 0, ctypes.sizeof(SeccompNotif))
NOTIF_SEND = _ioc(_IOC_READ | _IOC_WRITE, 1, ctypes.sizeof(SeccompNotifResp))
NOTIF_ID_VALID = _ioc(_IOC_WRITE, 2, 8)
NOTIF_ADDFD = _ioc(_IOC_WRITE, 3, ctypes.sizeof(SeccompNotifAddfd))
NOTIF_SET_FLAGS = _ioc(_IOC_WRITE, 4, 8)

# --- libc prototypes -------------------------------------------------------------------------

_syscall = libc.syscall
_syscall.restype = ctypes.c_long
_ioctl = libc.ioctl
_ioctl.restype = ctypes.c_int
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_prctl = libc.prctl
_prctl.restype = ctypes.c_int
_prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_process_vm_readv = libc.process_vm_readv
_process_vm_readv.restype = ctypes.c_ssize_t
_process_vm_readv.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.POINTER(IoVec),
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_process_vm_writev = libc.process_vm_writev
_process_vm_writev.restype = ctypes.c_ssize_t
_process_vm_writev.argtypes = _process_vm_readv.argtypes

_connect = libc.connect
_connect.restype = ctypes.c_int
_connect.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
_bind = libc.bind
_bind.restype = ctypes.c_int
_bind.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint32]
_sendto = libc.sendto
_sendto.restype = ctypes.c_ssize_t
_sendto.argtypes = [
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_uint32,
]
_recvfrom = libc.recvfrom
_recvfrom.restype = ctypes.c_ssize_t
_recvfrom.argtypes = [
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint32),
]
_getsockname = libc.getsockname
_getsockname.restype = ctypes.c_int
_getsockname.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]


_getsockopt = libc.getsockopt
_getsockopt.restype = ctypes.c_int
_getsockopt.argtypes = [
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint32),
]


def _check(result: int) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


# --- BPF ---------------------------------------------------------------------------------------


class SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]


_BPF_LD_W_ABS = 0x20
_BPF_JEQ_K = 0x15
_BPF_JGE_K = 0x35
_BPF_JSET_K = 0x45
_BPF_RET_K = 0x06
_ARGS_OFFSET = 16


@dataclass(frozen=True)
class FilterRules:
    """Which syscalls stop in the supervisor.

    `always` notify on every call; `when_arg_set` notify only when the given argument is
    non-NULL (sendto/recvfrom with an address); `unless_flag` (name, argument, mask) notify
    unless the argument has one of the mask's bits (newfstatat/statx with AT_EMPTY_PATH: an
    fstat of a descriptor); `enosys` fail at once without a round trip.
    """

    always: frozenset[str]
    when_arg_set: tuple[tuple[str, int], ...] = ()
    unless_flag: tuple[tuple[str, int, int], ...] = ()
    enosys: frozenset[str] = frozenset({"io_uring_setup"})


def build_filter(rules: FilterRules) -> list[tuple[int, int, int, int]]:
    """Assemble the classic-BPF program for `rules` as (code, jt, jf, k) tuples."""
    program: list[tuple[int, int, int, int] | tuple[str, str, str, int]] = []
    allow, notify, enosys = "allow", "notify", "enosys"

    def jump_if_equal(value: int, target: str) -> None:
        program.append(("jeq", target, "", value))

    program.append((_BPF_LD_W_ABS, 0, 0, 4))  # arch
    program.append(("jne", allow, "", AUDIT_ARCH))
    program.append((_BPF_LD_W_ABS, 0, 0, 0))  # syscall number
    if MACHINE == "x86_64":
        program.append(("jge", enosys, "", 0x40000000))  # x32 ABI would bypass the numbers below
    for name in sorted(rules.always):
        if name in SYSCALLS:
            jump_if_equal(SYSCALLS[name], notify)
    for name, _ in rules.when_arg_set:
        if name in SYSCALLS:
            jump_if_equal(SYSCALLS[name], f"arg:{name}")
    for name, _, _ in rules.unless_flag:
        if name in SYSCALLS:
            jump_if_equal(SYSCALLS[name], f"flag:{name}")
    for name in sorted(rules.enosys):
        if name in SYSCALLS:
            jump_if_equal(SYSCALLS[name], enosys)
    labels: dict[str, int] = {}
    program.append(("label", allow, "", 0))
    program.append((_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    for name, index in rules.when_arg_set:
        if name not in SYSCALLS:
            continue
        offset = _ARGS_OFFSET + 8 * index
        program.append(("label", f"arg:{name}", "", 0))
        program.append((_BPF_LD_W_ABS, 0, 0, offset))
        program.append(("jne", notify, "", 0))
        program.append((_BPF_LD_W_ABS, 0, 0, offset + 4))
        program.append(("jne", notify, "", 0))
        program.append((_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    for name, index, mask in rules.unless_flag:
        if name not in SYSCALLS:
            continue
        program.append(("label", f"flag:{name}", "", 0))
        program.append((_BPF_LD_W_ABS, 0, 0, _ARGS_OFFSET + 8 * index))  # flags: a C int
        program.append((_BPF_JSET_K, 1, 0, mask))  # a bit set: skip to the allow below
        program.append((_BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF))
        program.append((_BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW))
    program.append(("label", notify, "", 0))
    program.append((_BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF))
    program.append(("label", enosys, "", 0))
    program.append((_BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS))

    # Resolve labels: a label names the index of the instruction that follows it.
    instructions: list[tuple[int | str, str | int, str | int, int]] = []
    for entry in program:
        if entry[0] == "label":
            labels[str(entry[1])] = len(instructions)
        else:
            instructions.append(entry)
    assembled: list[tuple[int, int, int, int]] = []
    for position, (code, first, _second, k) in enumerate(instructions):
        if isinstance(code, int):
            assembled.append((code, int(first), 0, k))
            continue
        offset = labels[str(first)] - position - 1
        if not 0 <= offset <= 255:
            raise ValueError("seccomp filter jump out of range")
        if code == "jeq":
            assembled.append((_BPF_JEQ_K, offset, 0, k))
        elif code == "jne":
            assembled.append((_BPF_JEQ_K, 0, offset, k))
        elif code == "jge":
            assembled.append((_BPF_JGE_K, offset, 0, k))
    return assembled


class PreparedFilter:
    """A filter program ready to install: built before fork so the child only makes syscalls."""

    def __init__(self, rules: FilterRules) -> None:
        instructions = build_filter(rules)
        self._array = (SockFilter * len(instructions))(*[SockFilter(*i) for i in instructions])
        self._fprog = SockFprog(len(instructions), self._array)
        self._no_new_privs = os.geteuid() != 0

    def install(self) -> int:
        """Install in the calling process and return the listener fd (close-on-exec)."""
        if self._no_new_privs:
            _check(_prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        flags = SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        result = _syscall(
            ctypes.c_long(SYSCALLS["seccomp"]),
            ctypes.c_long(SECCOMP_SET_MODE_FILTER),
            ctypes.c_long(flags),
            ctypes.byref(self._fprog),
        )
        if result < 0 and ctypes.get_errno() == errno.EINVAL:
            # Kernels before 5.19 lack WAIT_KILLABLE_RECV; signals then restart syscalls, which
            # the supervisor tolerates by answering the repeated notification again.
            result = _syscall(
                ctypes.c_long(SYSCALLS["seccomp"]),
                ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                ctypes.c_long(SECCOMP_FILTER_FLAG_NEW_LISTENER),
                ctypes.byref(self._fprog),
            )
        return _check(result)


# --- notifications -----------------------------------------------------------------------------


class Listener:
    """The supervisor's end of a seccomp filter: receive and answer notifications.

    Two threads use it at once: the supervisor's, which receives and answers most
    notifications, and the event loop's, which answers those it finished (a tunnelled connect,
    a file from the pod). So every call passes the kernel an argument of its own — a buffer
    shared between calls lets one thread's id replace the other's between the write and the
    ioctl, and `is_valid` then judges the wrong notification (a lost answer, a program stuck in
    its syscall for ever). `close` and the ioctls share a lock: an answer that comes after the
    session closed the descriptor is refused instead of reaching whatever reused its number.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    @property
    def fd(self) -> int:
        """The descriptor to poll; -1 once closed."""
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _ioctl(self, request: int, argument: int | None) -> int:
        """0, or the errno the ioctl failed with (EBADF once closed)."""
        with self._lock:
            if self._fd < 0:
                return errno.EBADF
            if _ioctl(self._fd, request, argument) == 0:
                return 0
            return ctypes.get_errno()

    def enable_sync_wakeup(self) -> bool:
        """Ask the kernel to hand notifications over on the same CPU (Linux ≥ 6.6)."""
        # Unlike the other notification ioctls, this one takes its argument by value.
        return self._ioctl(NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) == 0

    def receive(self) -> SeccompNotif | None:
        """The next notification (call once the descriptor polls readable, so this does not
        block); None if its caller went away first or the listener is closed."""
        request = SeccompNotif()  # zeroed, as the kernel requires
        code = self._ioctl(NOTIF_RECV, ctypes.addressof(request))
        if code == 0:
            return request
        if code in (errno.ENOENT, errno.EINTR) or self._fd < 0:
            return None
        raise OSError(code, os.strerror(code))

    def is_valid(self, notification_id: int) -> bool:
        """Whether the notification still waits for its answer."""
        argument = ctypes.c_uint64(notification_id)
        return self._ioctl(NOTIF_ID_VALID, ctypes.addressof(argument)) == 0

    def respond(self, notification_id: int, value: int = 0, error: int = 0) -> bool:
        """Answer with a result (`value`) or a failure (`error` is a positive errno)."""
        response = SeccompNotifResp(notification_id, value, -error if error else 0, 0)
        return self._ioctl(NOTIF_SEND, ctypes.addressof(response)) == 0

    def allow(self, notification_id: int) -> bool:
        """Let the kernel run the syscall as the program asked."""
        response = SeccompNotifResp(notification_id, 0, 0, SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        return self._ioctl(NOTIF_SEND, ctypes.addressof(response)) == 0

    def respond_with_fd(self, notification_id: int, source_fd: int, cloexec: bool) -> int:
        """Install `source_fd` in the caller and return it as the syscall's result."""
        request = SeccompNotifAddfd(
            notification_id, SECCOMP_ADDFD_FLAG_SEND, source_fd, 0, os.O_CLOEXEC if cloexec else 0
        )
        with self._lock:
            if self._fd < 0:
                raise OSError(errno.EBADF, "the seccomp listener is closed")
            return _check(_ioctl(self._fd, NOTIF_ADDFD, ctypes.addressof(request)))


# --- other processes ---------------------------------------------------------------------------


def pidfd_open(pid: int, flags: int = 0) -> int:
    return _check(
        _syscall(ctypes.c_long(SYSCALLS["pidfd_open"]), ctypes.c_long(pid), ctypes.c_long(flags))
    )


def pidfd_getfd(pidfd: int, target_fd: int) -> int:
    return _check(
        _syscall(
            ctypes.c_long(SYSCALLS["pidfd_getfd"]),
            ctypes.c_long(pidfd),
            ctypes.c_long(target_fd),
            ctypes.c_long(0),
        )
    )


def set_child_subreaper() -> None:
    _check(_prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))


def set_parent_death_signal(signum: int) -> None:
    _check(_prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0))


def read_memory(pid: int, address: int, length: int) -> bytes:
    """Read up to `length` bytes of another process; stops early at an unmapped page."""
    buffer = ctypes.create_string_buffer(length)
    local = IoVec(ctypes.addressof(buffer), length)
    remote = IoVec(address, length)
    count = _check(_process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))
    return buffer.raw[:count]


def write_memory(pid: int, address: int, data: bytes) -> None:
    buffer = ctypes.create_string_buffer(data, len(data))
    local = IoVec(ctypes.addressof(buffer), len(data))
    remote = IoVec(address, len(data))
    count = _check(_process_vm_writev(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0))
    if count != len(data):
        raise OSError(errno.EFAULT, "short write into the program's memory")


def read_c_string(pid: int, address: int, limit: int = 4096) -> bytes:
    """Read a NUL-terminated string, a page-sized piece at a time (paths rarely need two)."""
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        # Never read across a page boundary in one call: the next page may be unmapped.
        step = min(4096 - ((address + total) % 4096), limit - total)
        chunk = read_memory(pid, address + total, step)
        end = chunk.find(b"\0")
        if end >= 0:
            chunks.append(chunk[:end])
            return b"".join(chunks)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    raise OSError(errno.ENAMETOOLONG, "path too long or unterminated")


# --- raw socket calls on duplicated descriptors -------------------------------------------------
# A Python socket object would switch O_NONBLOCK on the file the program shares with us, so the
# duplicates are driven with plain libc calls that leave the file's flags as the program set them.


def raw_connect(fd: int, address: bytes) -> int:
    """connect(2); returns 0 or a positive errno (EINPROGRESS for non-blocking sockets)."""
    buffer = ctypes.create_string_buffer(address, len(address))
    if _connect(fd, buffer, len(address)) == 0:
        return 0
    return ctypes.get_errno()


def raw_bind(fd: int, address: bytes) -> None:
    buffer = ctypes.create_string_buffer(address, len(address))
    _check(_bind(fd, buffer, len(address)))


def raw_getsockname(fd: int) -> bytes:
    buffer = ctypes.create_string_buffer(128)
    length = ctypes.c_uint32(128)
    _check(_getsockname(fd, buffer, ctypes.byref(length)))
    return buffer.raw[: length.value]


def raw_sendto(fd: int, data: bytes, flags: int, address: bytes) -> int:
    """sendto(2); returns the count sent or a negative errno."""
    address_buffer = ctypes.create_string_buffer(address, len(address))
    result = _sendto(fd, data, len(data), flags, address_buffer, len(address))
    if result < 0:
        return -ctypes.get_errno()
    return int(result)


def raw_recvfrom(fd: int, size: int, flags: int) -> tuple[int, bytes, bytes]:
    """recvfrom(2) → (result or negative errno, data, source address)."""
    buffer = ctypes.create_string_buffer(max(size, 1))
    address = ctypes.create_string_buffer(128)
    address_length = ctypes.c_uint32(128)
    result = _recvfrom(fd, buffer, size, flags, address, ctypes.byref(address_length))
    if result < 0:
        return -ctypes.get_errno(), b"", b""
    received = min(int(result), size)
    return int(result), buffer.raw[:received], address.raw[: address_length.value]


def raw_getsockopt(fd: int, level: int, option: int, size: int) -> bytes:
    buffer = ctypes.create_string_buffer(size)
    length = ctypes.c_uint32(size)
    _check(_getsockopt(fd, level, option, buffer, ctypes.byref(length)))
    return buffer.raw[: length.value]


def raw_getsockopt_int(fd: int, level: int, option: int) -> int:
    return int(struct.unpack("=i", raw_getsockopt(fd, level, option, 4))[0])
