"""The files feature's typed requests: what a client sends is what the agent rebuilds, and
missing or mistyped parameters are refused before anything touches the pod."""

from __future__ import annotations

from typing import Any

import pytest

from podside_protocol import files


@pytest.mark.parametrize(
    "request_",
    [
        files.Read("/etc/hosts"),
        files.Open("/data/x"),
        files.ReadChunk("/data/x", 1 << 20, files.CHUNK),
        files.Stat("/data/link", follow=False),
        files.List("/data"),
        files.CheckWrite("/data/x", 0o1101),
        files.Replace("/data/x", 0o640, exclusive=True),
        files.Write(3, 0, b"\x00bytes"),
        files.Commit(3, 6),
        files.Abort(3),
        files.Unlink("/data/d", directory=True),
        files.Mkdir("/data/d", 0o750),
        files.Rename("/data/a", "/data/b", 1),
        files.Access("/data/x", 4),
        files.Readlink("/data/link"),
    ],
)
def test_every_request_survives_the_round_trip(request_: files.FileRequest) -> None:
    method, params = request_.message()
    assert method == request_.METHOD
    assert files.parse_request(method, params) == request_


def test_defaults_fill_what_a_client_left_out() -> None:
    assert files.parse_request(files.STAT, {"path": "/x"}) == files.Stat("/x", follow=True)
    assert files.parse_request(files.MKDIR, {"path": "/d"}) == files.Mkdir("/d", 0o777)
    assert files.parse_request(files.REPLACE, {"path": "/x"}) == files.Replace("/x", 0o666)


@pytest.mark.parametrize(
    ("method", "params", "says"),
    [
        (files.STAT, {}, "file.stat needs path"),
        (files.STAT, {"path": b"/x"}, "path must be str"),
        (files.STAT, {"path": "/x", "follow": 1}, "follow must be bool"),
        (files.MKDIR, {"path": "/d", "mode": "0755"}, "mode must be int"),
        (files.ACCESS, {"path": "/x", "mode": True}, "mode must be int"),  # bool is no int here
        (files.READ_CHUNK, {"path": "/x", "offset": -1, "length": 1}, "offset must not be"),
        (files.COMMIT, {"handle": 1, "size": -5}, "size must not be negative"),
        (files.WRITE, {"handle": 1, "offset": 0, "data": "text"}, "data must be bytes"),
        ("file.delete_everything", {"path": "/"}, "unknown request"),
    ],
)
def test_bad_parameters_are_refused_with_what_is_wrong(
    method: str, params: dict[str, Any], says: str
) -> None:
    with pytest.raises(files.InvalidRequest, match=says):
        files.parse_request(method, params)


def test_the_fs_methods_are_every_request_but_the_resolvers_whole_read() -> None:
    assert set(files.REQUESTS) - {files.READ} == files.FILE_METHODS
    assert len(files.REQUESTS) == 15
