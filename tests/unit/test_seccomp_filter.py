"""The seccomp program the layer installs, run by a classic-BPF interpreter over `struct
seccomp_data` (the kernel's semantics for the instructions it uses): which calls stop in the
supervisor, for each set of features (`filter_rules`)."""

from __future__ import annotations

import errno
import struct

from podside.layer import seccomp
from podside.layer.supervisor import filter_rules

AT_EMPTY_PATH = 0x1000
NOTIFY, ALLOW = seccomp.SECCOMP_RET_USER_NOTIF, seccomp.SECCOMP_RET_ALLOW
ENOSYS = seccomp.SECCOMP_RET_ERRNO | errno.ENOSYS


def run(rules: seccomp.FilterRules, nr: int | str, *args: int, arch: int | None = None) -> int:
    """What the filter returns for one call: struct seccomp_data is nr, arch (u32), ip, args[6]
    (u64), in the machine's byte order."""
    number = seccomp.SYSCALLS[nr] if isinstance(nr, str) else nr
    padded = [*args, *[0] * (6 - len(args))]
    data = struct.pack("=IIQ6Q", number, seccomp.AUDIT_ARCH if arch is None else arch, 0, *padded)
    program = seccomp.build_filter(rules)
    pc = 0
    a = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0x20:  # ld [k]
            a = struct.unpack_from("=I", data, k)[0]
        elif code in (0x15, 0x35, 0x45):
            taken = {0x15: a == k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"instruction {code:#x} not interpreted")


def test_no_feature_stops_nothing_but_io_uring_fails_at_once() -> None:
    rules = filter_rules(network=False, udp=False, files=False)
    for name in ("connect", "openat", "sendto", "newfstatat", "bind"):
        assert run(rules, name, 3, 1, 1, 1, 1) == ALLOW
    # io_uring would do a program's I/O where the filter cannot see it.
    assert run(rules, "io_uring_setup") == ENOSYS


def test_another_architecture_is_let_through() -> None:
    rules = filter_rules(network=True, udp=True, files=True, stats=True)
    assert run(rules, "connect", arch=seccomp.AUDIT_ARCH ^ 1) == ALLOW


def test_x32_numbers_fail_on_x86_64() -> None:
    rules = filter_rules(network=True, udp=False, files=False)
    x32_connect = 0x40000000 + seccomp.SYSCALLS["connect"]
    expected = ENOSYS if seccomp.MACHINE == "x86_64" else ALLOW
    assert run(rules, x32_connect) == expected


def test_network_stops_connect_getpeername_and_listen_only() -> None:
    rules = filter_rules(network=True, udp=False, files=False)
    for name in ("connect", "getpeername", "listen"):
        assert run(rules, name) == NOTIFY
    assert run(rules, "sendto", 3, 0, 0, 0, 0x7FFF0000) == ALLOW
    assert run(rules, "openat") == ALLOW


def test_udp_stops_sendto_and_recvfrom_only_with_an_address() -> None:
    rules = filter_rules(network=False, udp=True, files=False)
    for name in ("sendto", "recvfrom"):
        assert run(rules, name, 3, 0, 0, 0, 0) == ALLOW  # connected socket: no address
        assert run(rules, name, 3, 0, 0, 0, 0x1000) == NOTIFY
        assert run(rules, name, 3, 0, 0, 0, 0x7F00_0000_0000) == NOTIFY  # the upper half only
    # Their address sits inside struct msghdr, out of the filter's sight.
    assert run(rules, "sendmsg") == NOTIFY
    assert run(rules, "recvmsg") == NOTIFY
    assert run(rules, "connect") == ALLOW


def test_files_stop_the_opens_but_not_the_stats() -> None:
    rules = filter_rules(network=False, udp=False, files=True)
    for name in ("open", "openat", "openat2"):
        assert run(rules, name) == NOTIFY
    assert run(rules, "newfstatat", 3, 0, 0, 0) == ALLOW
    assert run(rules, "unlink") == ALLOW


def test_stats_stop_path_stats_and_changes_but_not_fstat() -> None:
    rules = filter_rules(network=False, udp=False, files=False, stats=True)
    for name in ("openat", "stat", "lstat", "access", "unlinkat", "renameat2", "mkdir"):
        assert run(rules, name) == NOTIFY
    for name in ("getxattr", "readlinkat", "chdir"):
        assert run(rules, name) == NOTIFY
    # newfstatat(fd, "", buf, AT_EMPTY_PATH) and statx(fd, "", AT_EMPTY_PATH, ...) are fstat.
    assert run(rules, "newfstatat", 3, 0, 0, AT_EMPTY_PATH) == ALLOW
    assert run(rules, "newfstatat", 3, 0, 0, 0x100) == NOTIFY  # AT_SYMLINK_NOFOLLOW only
    assert run(rules, "statx", 3, 0, AT_EMPTY_PATH | 0x100) == ALLOW
    assert run(rules, "statx", 3, 0, 0) == NOTIFY
    assert run(rules, "bind") == ALLOW


def test_calls_this_machine_does_not_have_are_left_out() -> None:
    rules = seccomp.FilterRules(
        always=frozenset({"no_such_call", "connect"}),
        when_arg_set=(("no_such_call", 1),),
        unless_flag=(("no_such_call", 1, 1),),
    )
    assert run(rules, "connect") == NOTIFY
    assert run(rules, "openat") == ALLOW
