"""--fs's pure decisions: which paths are the pod's (`PathPolicy`) and the `struct stat` /
`struct statx` bytes written into the program for the agent's stat (offsets from the kernel's
uapi headers, checked field by field)."""

from __future__ import annotations

import struct

from podside.layer import seccomp
from podside.layer.remote_files import PathPolicy, Place, pack_stat, pack_statx

FIELDS = {
    "dev": (8 << 8) | 3,  # major 8, minor 3
    "ino": 0x1_0000_0002,
    "nlink": 3,
    "mode": 0o100644,
    "uid": 1000,
    "gid": 1001,
    "size": 5_000_000_000,
    "blksize": 4096,
    "blocks": 9_765_632,
    "atime_ns": 1_700_000_000_123_456_789,
    "mtime_ns": 1_600_000_000_000_000_001,
    "ctime_ns": 999_999_999,
}


def test_local_patterns_win_over_remote_ones_and_remote_over_the_system_folders() -> None:
    policy = PathPolicy(
        remote=[r"^/etc/", r"^/usr/share/app"], local=[r"^/etc/hosts$"], local_roots=[]
    )
    assert policy.place("/etc/hosts") is Place.LOCAL
    assert policy.place("/etc/app.conf") is Place.REMOTE
    assert policy.place("/usr/share/app/x") is Place.REMOTE  # asked for, though under /usr
    assert policy.place("/usr/share/other") is Place.LOCAL


def test_system_and_runtime_folders_are_always_local_whole_components_only() -> None:
    policy = PathPolicy(remote=[], local=[], local_roots=[])
    for path in ("/usr", "/usr/lib/x.so", "/proc/self/maps", "/dev/null", "/tmp/a", "/var/lib/x"):
        assert policy.place(path) is Place.LOCAL, path
    for path in ("/usrx", "/var/log/app.log", "/etc/config.yaml", "/data", "/tmpfile"):
        assert policy.place(path) is Place.PROBE, path


def test_local_roots_are_local_escaped_and_the_root_folder_is_ignored() -> None:
    policy = PathPolicy(remote=[], local=[], local_roots=["/home/me/", "/srv/a.b", "/", ""])
    assert policy.place("/home/me") is Place.LOCAL
    assert policy.place("/home/me/project/main.py") is Place.LOCAL
    assert policy.place("/home/meow") is Place.PROBE
    assert policy.place("/srv/a.b/x") is Place.LOCAL
    assert policy.place("/srv/aXb/x") is Place.PROBE  # the dot is not a regex wildcard
    assert policy.place("/config") is Place.PROBE  # "/" as a root would make everything local


def test_remote_patterns_are_searched_not_anchored() -> None:
    policy = PathPolicy(remote=[r"\.yaml$"], local=[], local_roots=["/home/me"])
    assert policy.place("/tmp/x.yaml") is Place.REMOTE
    assert policy.place("/home/me/x.yaml") is Place.REMOTE
    assert policy.place("/home/me/x.yml") is Place.LOCAL


def test_pack_stat_writes_the_kernels_struct_stat() -> None:
    packed = pack_stat(FIELDS)
    if seccomp.MACHINE == "x86_64":
        # arch/x86/include/uapi/asm/stat.h: struct stat (64-bit)
        size, layout = 144, {
            "dev": (0, "Q"), "ino": (8, "Q"), "nlink": (16, "Q"), "mode": (24, "I"),
            "uid": (28, "I"), "gid": (32, "I"), "rdev": (40, "Q"), "size": (48, "q"),
            "blksize": (56, "q"), "blocks": (64, "q"), "atime": (72, "q"),
            "atime_nsec": (80, "q"), "mtime": (88, "q"), "mtime_nsec": (96, "q"),
            "ctime": (104, "q"), "ctime_nsec": (112, "q"),
        }  # fmt: skip
    else:
        # include/uapi/asm-generic/stat.h
        size, layout = 128, {
            "dev": (0, "Q"), "ino": (8, "Q"), "mode": (16, "I"), "nlink": (20, "I"),
            "uid": (24, "I"), "gid": (28, "I"), "rdev": (32, "Q"), "size": (48, "q"),
            "blksize": (56, "i"), "blocks": (64, "q"), "atime": (72, "q"),
            "atime_nsec": (80, "q"), "mtime": (88, "q"), "mtime_nsec": (96, "q"),
            "ctime": (104, "q"), "ctime_nsec": (112, "q"),
        }  # fmt: skip
    assert len(packed) == size

    def at(name: str) -> int:
        offset, kind = layout[name]
        return int(struct.unpack_from("=" + kind, packed, offset)[0])

    for name in ("dev", "ino", "nlink", "mode", "uid", "gid", "size", "blksize", "blocks"):
        assert at(name) == FIELDS[name], name
    assert at("rdev") == 0
    assert (at("atime"), at("atime_nsec")) == (1_700_000_000, 123_456_789)
    assert (at("mtime"), at("mtime_nsec")) == (1_600_000_000, 1)
    assert (at("ctime"), at("ctime_nsec")) == (0, 999_999_999)


def test_pack_statx_writes_the_kernels_struct_statx() -> None:
    packed = pack_statx(FIELDS)
    assert len(packed) == 256  # include/uapi/linux/stat.h: struct statx

    def u32(offset: int) -> int:
        return int(struct.unpack_from("=I", packed, offset)[0])

    def u64(offset: int) -> int:
        return int(struct.unpack_from("=Q", packed, offset)[0])

    def timestamp(offset: int) -> tuple[int, int]:
        seconds, nanoseconds, _reserved = struct.unpack_from("=qIi", packed, offset)
        return seconds, nanoseconds

    assert u32(0) == 0x7FF  # stx_mask: STATX_BASIC_STATS, no birth time claimed
    assert u32(4) == 4096
    assert u64(8) == 0  # stx_attributes
    assert (u32(16), u32(20), u32(24)) == (3, 1000, 1001)
    assert struct.unpack_from("=H", packed, 28)[0] == 0o100644
    assert (u64(32), u64(40), u64(48)) == (0x1_0000_0002, 5_000_000_000, 9_765_632)
    assert timestamp(64) == (1_700_000_000, 123_456_789)  # stx_atime
    assert timestamp(96) == (0, 999_999_999)  # stx_ctime
    assert timestamp(112) == (1_600_000_000, 1)  # stx_mtime
    assert (u32(128), u32(132)) == (0, 0)  # stx_rdev
    assert (u32(136), u32(140)) == (8, 3)  # stx_dev major, minor
    assert packed[144:] == bytes(112)
