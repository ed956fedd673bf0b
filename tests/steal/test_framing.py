"""The steal filter frames HTTP/1 as RFC 9112 tells an intermediary to, or refuses: a request
it cannot frame without doubt (Content-Length with Transfer-Encoding, a bad chunk) gets
`400 Bad Request` with `Connection: close` (`431` for a head or trailer section over the
limit), and neither the local program nor the pod's app gets any of it; an answer it cannot
frame (the local program's or the app's) is replaced by `502 Bad Gateway` while none of it
went out, else the connection ends where the answer went bad."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from podside_agent.http1 import MAX_HEAD
from tests.servers.echo_http import LATE_BEGINNING
from tests.steal.conftest import ask, stealing
from tests.topology import Pod, make_pod, wait_for


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


def _refused(answer: bytes, status: bytes = b"400 bad request") -> bool:
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    return head.startswith(b"http/1.1 %s\r\n" % status) and b"\r\nconnection: close" in head


def _get(path: str) -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode()


def _wait_for_log_lines(pod: Pod, text: str, count: int) -> None:
    wait_for(lambda: pod.log("agent.log").count(text) >= count, what=f"{count} x {text!r}")
    assert pod.log("agent.log").count(text) == count


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


@pytest.mark.parametrize("answerer", ["the local program", "the pod's app"])
def test_an_answer_that_cannot_be_framed_becomes_a_502(pod: Pod, answerer: str) -> None:
    # The local program steals /bad; the app, the same server, answers what is not stolen.
    steals = "^/bad" if answerer == "the local program" else "^/mine"
    with stealing(pod, "--path-filter", steals) as program:
        logs_before = pod.log("agent.log").count(f"a bad answer from {answerer}")
        kinds = ["chunk", "length-and-chunked", "status"]
        for kind in kinds:
            answer = _exchange(pod, _get(f"/bad/{kind}"))
            assert _refused(answer, b"502 bad gateway"), (kind, answer)
            assert answer.count(b"HTTP/1.") == 1, (kind, answer)  # none of the bad one passed
        # Trailers over the limit: a 502 if they came with the rest, else cut off there.
        answer = _exchange(pod, _get("/bad/trailers"))
        assert b"X-Trailer-69" not in answer, answer
        assert _refused(answer, b"502 bad gateway") or answer.startswith(b"HTTP/1.1 200 OK\r\n")
        _wait_for_log_lines(pod, f"a bad answer from {answerer}", logs_before + len(kinds) + 1)
        who = program.output() if answerer == "the local program" else pod.log("pod-app.log")
        for kind in [*kinds, "trailers"]:
            assert f"bad answer to /bad/{kind}" in who, kind
        # And the next request is answered by the same upstream as before.
        expected = "local" if answerer == "the local program" else "pod-app"
        assert ask(pod, "/bad/resume")["server"] == expected


def test_an_answer_that_goes_bad_once_begun_ends_the_connection_there(pod: Pod) -> None:
    with stealing(pod, "--path-filter", "^/bad"):
        logs_before = pod.log("agent.log").count("closed it mid-answer")
        with socket.create_connection((pod.pod_ip, 8080), timeout=10) as client:
            client.sendall(_get("/bad/late"))
            answer = b""
            while len(answer) < len(LATE_BEGINNING):
                answer += client.recv(65536)
            assert ask(pod, "/bad/resume")["server"] == "local"  # now the bad rest follows
            while chunk := client.recv(65536):
                answer += chunk
        assert answer == LATE_BEGINNING  # no 502 after a beginning already sent
        _wait_for_log_lines(pod, "closed it mid-answer", logs_before + 1)


@pytest.mark.parametrize("where", ["head", "trailers"])
def test_a_request_over_the_size_limit_is_refused_with_431(pod: Pod, where: str) -> None:
    fields = b"".join(b"X-Field-%d: %s\r\n" % (n, b"f" * 1000) for n in range(MAX_HEAD // 1000))
    if where == "head":
        payload = b"GET /mine HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"
    else:
        payload = (
            b"POST /mine HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\n" + fields + b"\r\n"
        )
    with stealing(pod, "--path-filter", "^/mine") as program:
        before = pod.log("pod-app.log")
        answer = _exchange(pod, payload)
        assert _refused(answer, b"431 request header fields too large"), answer
        assert "/mine" not in program.output()
        assert pod.log("pod-app.log") == before
