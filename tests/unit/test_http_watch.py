"""The HTTP watcher frames requests and responses on a delivered connection."""

from __future__ import annotations

from podside.layer.http_watch import Exchange, HttpWatch


def _watch() -> tuple[HttpWatch, list[Exchange]]:
    seen: list[Exchange] = []
    return HttpWatch(seen.append), seen


def test_keep_alive_exchanges_with_bodies_split_anywhere() -> None:
    watch, seen = _watch()
    requests = b"POST /posts HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\n\r\n"
    for index in range(0, len(requests), 7):
        watch.to_program(requests[index : index + 7])
    watch.from_program(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    watch.from_program(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    assert [(e.method, e.path, e.status) for e in seen] == [
        ("POST", "/posts", 201),
        ("GET", "/next", 404),
    ]
    assert seen[0].request == b"POST /posts HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    assert seen[1].request == b"GET /next HTTP/1.1\r\n\r\n"
    assert all(e.duration is not None and e.duration >= 0 for e in seen)


def test_chunked_request_and_interim_response() -> None:
    watch, seen = _watch()
    watch.to_program(
        b"PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"GET / HTTP/1.1\r\n\r\n"
    )
    watch.from_program(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    watch.from_program(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert [(e.method, e.status) for e in seen] == [("PUT", 200), ("GET", 204)]
    assert seen[0].request is not None and seen[0].request.endswith(b"0\r\n\r\n")


def test_not_http_is_left_alone() -> None:
    watch, seen = _watch()
    watch.to_program(b"\x16\x03\x01 binary TLS hello\r\n\r\n")
    watch.from_program(b"whatever")
    assert seen == []
