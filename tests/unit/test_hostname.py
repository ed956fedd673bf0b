"""The pod's hostname in the layer: uname's answer, the filter and the launch field."""

from __future__ import annotations

import ctypes
import json
import os
from pathlib import Path

from podside.layer import seccomp
from podside.layer.supervisor import filter_rules, utsname_with
from podside.lsp import launch


class Utsname(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_char * 65)
        for name in ("sysname", "nodename", "release", "version", "machine", "domainname")
    ]


def test_utsname_has_the_pods_nodename_and_this_machines_kernel() -> None:
    names = Utsname.from_buffer_copy(utsname_with("web-7d9f-abcde"))
    local = os.uname()
    assert names.nodename == b"web-7d9f-abcde"
    assert (names.sysname, names.release, names.version, names.machine) == (
        local.sysname.encode(),
        local.release.encode(),
        local.version.encode(),
        local.machine.encode(),
    )
    # uname(2) itself, for the domainname
    assert names.domainname == Path("/proc/sys/kernel/domainname").read_bytes().rstrip(b"\n")


def test_a_nodename_longer_than_the_field_is_cut_and_still_terminated() -> None:
    raw = utsname_with("x" * 100)
    assert len(raw) == ctypes.sizeof(Utsname)
    assert Utsname.from_buffer_copy(raw).nodename == b"x" * 64
    assert raw[65 + 64] == 0


def test_uname_stops_only_with_the_hostname_feature() -> None:
    on = filter_rules(network=True, udp=True, files=True, hostname=True)
    off = filter_rules(network=True, udp=True, files=True)
    assert "uname" in on.always and "uname" not in off.always
    assert "uname" in seccomp.SYSCALLS


def test_launch_hostname_false_is_no_hostname() -> None:
    assert "--no-hostname" in launch.exec_argv({"target": "pod/web", "hostname": False}, ["p"])
    assert "--no-hostname" not in launch.exec_argv({"target": "pod/web", "hostname": True}, ["p"])
    manifest = json.loads((Path(__file__).parents[2] / "editor-extension/package.json").read_text())
    properties = manifest["contributes"]["debuggers"][0]["configurationAttributes"]["launch"]
    assert properties["properties"]["hostname"]["type"] == "boolean"
