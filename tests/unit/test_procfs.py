"""/proc/PID/status as both ends read it, checked against this test process's own ids."""

from __future__ import annotations

import os
import threading

import pytest

from podside_agent.procfs import status_fields


def test_the_fields_asked_for_are_split_and_the_rest_left_out() -> None:
    fields = status_fields(os.getpid(), ("Tgid", "Uid", "Gid", "Groups", "Umask"))
    assert set(fields) == {"Tgid", "Uid", "Gid", "Groups", "Umask"}
    assert fields["Tgid"] == [str(os.getpid())]
    uids, gids = os.getresuid(), os.getresgid()
    assert fields["Uid"][:3] == [str(uids[0]), str(uids[1]), str(uids[2])]
    assert fields["Gid"][:3] == [str(gids[0]), str(gids[1]), str(gids[2])]
    assert sorted(int(group) for group in fields["Groups"]) == sorted(set(os.getgroups()))
    umask = os.umask(0o027)
    try:
        assert status_fields("self", ("Umask",)) == {"Umask": ["0027"]}
    finally:
        os.umask(umask)


def test_a_thread_id_gives_its_thread_group() -> None:
    seen: list[dict[str, list[str]]] = []
    thread = threading.Thread(
        target=lambda: seen.append(status_fields(threading.get_native_id(), ("Tgid",)))
    )
    thread.start()
    thread.join()
    assert seen == [{"Tgid": [str(os.getpid())]}]


def test_a_field_the_kernel_does_not_show_is_absent() -> None:
    assert status_fields(os.getpid(), ("NoSuchField", "Tgid")) == {"Tgid": [str(os.getpid())]}


def test_a_gone_process_is_an_os_error() -> None:
    with pytest.raises(OSError):
        status_fields(2**22 + 1, ("Tgid",))  # above pid_max's largest value
