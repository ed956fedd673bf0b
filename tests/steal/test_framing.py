"""The steal filter frames HTTP/1 as RFC 9112 tells an intermediary to, or refuses: a request
it cannot frame without doubt (Content-Length with Transfer-Encoding, a bad chunk) gets
`400 Bad Request` with `Connection: close`, and neither the local program nor the pod's app
gets any of it."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.steal.conftest import ask, stealing
from tests.topology import Pod, make_pod


@pytest.fixture(scope="module")
def pod() -> Iterator[Pod]:
    with make_pod() as pod:
        pod.start_agent()
        yield pod


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def _exchange(pod: Pod, payload: bytes) -> bytes:
    """Send `payload` on one connection; all the pod answers until it closes the connection."""
    with socket.create_connection((pod.pod_ip, 8080), timeout=10) as client:
        client.sendall(payload)
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
    return answer


def _refused(answer: bytes) -> bool:
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(b"http/1.1 400 bad request\r\n") and b"\r\nconnection: close" in head


def test_a_request_smuggled_past_content_length_never_reaches_the_program(pod: Pod) -> None:
    # A front proxy framing by Content-Length sees one POST whose body holds the GET; framed by
    # Transfer-Encoding, the GET is a request of its own that the filter would steal.
    body = b"0\r\n\r\n" + SMUGGLED
    payload = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" % len(body)
    ) + body
    with stealing(pod, "--path-filter", "^/smuggled") as program:
        before = pod.log("pod-app.log")
        answer = _exchange(pod, payload)
        assert _refused(answer), answer
        assert answer.count(b"HTTP/1.1") == 1, answer  # nothing else was answered
        assert ask(pod, "/smuggled")["server"] == "local"  # the filter does steal that path
        assert program.output().count("local GET /smuggled") == 1  # only that one reached it
        assert pod.log("pod-app.log") == before  # and the app got no part of the bad one


@pytest.mark.parametrize(
    "chunked",
    [
        b"0x3\r\nabc\r\n0\r\n\r\n",  # chunk-size is 1*HEXDIG
        b"+3\r\nabc\r\n0\r\n\r\n",
        b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n",
        b"-1\r\nabc\r\n0\r\n\r\n",
        b" 3\r\nabc\r\n0\r\n\r\n",
        b"3\r\nabcXY0\r\n\r\n",  # no CRLF after the chunk's data
        b"3;\r\nabc\r\n0\r\n\r\n",  # a chunk-ext without a name
        b"3\r\nabc\r\n0\r\nBad Trailer: x\r\n\r\n",
    ],
)
@pytest.mark.parametrize("path", ["/mine", "/theirs"])
def test_a_bad_chunk_is_refused_before_anything_of_it_is_forwarded(
    pod: Pod, chunked: bytes, path: str
) -> None:
    payload = (
        b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" % path.encode()
    ) + chunked
    with stealing(pod, "--path-filter", "^/mine") as program:
        before = pod.log("pod-app.log")
        assert _refused(_exchange(pod, payload))
        assert ask(pod, "/mine")["server"] == "local"
        assert "local POST" not in program.output()
        assert pod.log("pod-app.log") == before
