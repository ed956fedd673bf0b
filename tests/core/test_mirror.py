"""Mirror: connections that reach the pod on a port the program listens on are copied to it;
the pod's own app still answers the real client."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.core.agent_client import agent_status
from tests.topology import PYTHON, SERVERS, Pod, free_port, wait_for


class LocalCopy:
    """The same echo server as the pod's app, run here under podside exec."""

    def __init__(self, log_path: str) -> None:
        self._log_path = log_path

    def output(self) -> list[str]:
        with open(self._log_path) as log:
            return log.read().splitlines()

    def requests(self) -> list[str]:
        return [
            line for line in self.output() if line.startswith("local-copy ") and " from " in line
        ]


@contextmanager
def local_copy(pod: Pod, port: int, *options: str) -> Iterator[LocalCopy]:
    with tempfile.NamedTemporaryFile("w+") as log:
        process = subprocess.Popen(
            [
                *pod.podside_exec("-v"),
                *options,
                "--",
                PYTHON,
                str(SERVERS / "echo_http.py"),
                "0.0.0.0",
                str(port),
                "local-copy",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        copy = LocalCopy(log.name)
        try:
            wait_for(
                lambda: any("local-copy listening" in line for line in copy.output()),
                what="the local copy to listen",
            )
            yield copy
        finally:
            process.terminate()
            process.wait(15)


def _subscribed(pod: Pod, port: int) -> bool:
    return port in agent_status(pod)["mirrored_ports"]


def test_requests_to_the_pod_are_mirrored_to_the_program(pod: Pod) -> None:
    with local_copy(pod, 8080) as copy:
        wait_for(lambda: _subscribed(pod, 8080), what="subscription")
        for index in range(3):
            answer = subprocess.run(
                ["curl", "-sS", "-m", "5", f"http://{pod.pod_ip}:8080/mirrored/{index}"],
                capture_output=True,
                text=True,
            )
            assert json.loads(answer.stdout)["server"] == "pod-app"  # the real client's answer
        wait_for(lambda: len(copy.requests()) >= 3, what="three mirrored requests")
        paths = [line.split()[2] for line in copy.requests()]
    assert paths == ["/mirrored/0", "/mirrored/1", "/mirrored/2"]
    assert "pod-app GET /mirrored/2" in pod.log("pod-app.log")


def test_keep_alive_requests_and_bodies_arrive_in_order(pod: Pod) -> None:
    body = os.urandom(3 * 1024 * 1024)
    with tempfile.NamedTemporaryFile() as upload, local_copy(pod, 8080) as copy:
        upload.write(body)
        upload.flush()
        wait_for(lambda: _subscribed(pod, 8080), what="subscription")
        result = subprocess.run(
            [
                "curl",
                "-sS",
                "-m",
                "20",
                f"http://{pod.pod_ip}:8080/first",
                "--data-binary",
                f"@{upload.name}",
                f"http://{pod.pod_ip}:8080/second",
                "-o",
                "/dev/null",
                "-o",
                "/dev/null",
            ],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
        wait_for(lambda: len(copy.requests()) >= 2, what="two mirrored requests")
        first, second = copy.requests()[:2]
    digest = hashlib.sha256(body).hexdigest()
    assert first.split()[1:3] == ["POST", "/first"] and first.endswith(f"body {len(body)} {digest}")
    assert second.split()[1:3] == ["POST", "/second"] and second.endswith(
        f"body {len(body)} {digest}"
    )


def test_port_map_mirrors_a_pod_port_to_another_local_port(pod: Pod) -> None:
    local_port = free_port()
    with local_copy(pod, local_port, "--port-map", f"{local_port}:8080") as copy:
        wait_for(lambda: _subscribed(pod, 8080), what="subscription")
        subprocess.run(
            ["curl", "-sS", "-m", "5", f"http://{pod.pod_ip}:8080/mapped"], capture_output=True
        )
        wait_for(lambda: len(copy.requests()) >= 1, what="a mirrored request")
        assert copy.requests()[0].split()[2] == "/mapped"


def test_mode_off_subscribes_nothing(pod: Pod) -> None:
    with local_copy(pod, 8080, "--mode", "off"):
        time.sleep(0.5)
        assert agent_status(pod)["mirrored_ports"] == []


def test_subscriptions_end_with_the_program(pod: Pod) -> None:
    with local_copy(pod, 8080):
        wait_for(lambda: _subscribed(pod, 8080), what="subscription")
    wait_for(lambda: agent_status(pod)["mirrored_ports"] == [], what="the subscription to end")


def test_requests_over_ipv6_are_mirrored_too(pod: Pod) -> None:
    """A dual-stack pod whose app also listens on IPv6: those clients are copied as well."""
    pod.spawn(
        pod.in_pod(PYTHON, str(SERVERS / "echo_http.py"), "::", "8080", "pod-app-v6"),
        "pod-app-v6.log",
    )
    wait_for(lambda: "listening" in pod.log("pod-app-v6.log"), what="the pod's IPv6 app")
    with local_copy(pod, 8080) as copy:
        wait_for(lambda: _subscribed(pod, 8080), what="subscription")
        answer = subprocess.run(
            ["curl", "-sS", "-m", "5", f"http://[{pod.pod_ip6}]:8080/over/ipv6"],
            capture_output=True,
            text=True,
        )
        assert json.loads(answer.stdout)["server"] == "pod-app-v6"  # the real client's answer
        wait_for(lambda: copy.requests(), what="the mirrored request")
        assert copy.requests()[0].split()[2] == "/over/ipv6"


def _get(client: http.client.HTTPConnection, path: str) -> str:
    client.request("GET", path)
    answer = client.getresponse()
    return str(json.loads(answer.read())["server"])


def _fresh_request(pod: Pod, path: str) -> None:
    subprocess.run(["curl", "-sS", "-m", "5", f"http://{pod.pod_ip}:8080{path}"], check=True)


def _paths(copy: LocalCopy) -> list[str]:
    return [line.split()[2] for line in copy.requests()]


def test_a_keep_alive_connection_from_before_the_session_is_copied_from_its_next_request(
    pod: Pod,
) -> None:
    wait_for(lambda: agent_status(pod)["mirrored_ports"] == [], what="no subscription")
    client = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=5)
    try:
        assert _get(client, "/before") == "pod-app"
        with local_copy(pod, 8080) as copy:
            wait_for(lambda: _subscribed(pod, 8080), what="subscription")
            assert _get(client, "/after") == "pod-app"  # the same connection
            _fresh_request(pod, "/fresh")
            wait_for(lambda: len(copy.requests()) >= 2, what="two mirrored requests")
            assert sorted(_paths(copy)) == ["/after", "/fresh"]
    finally:
        client.close()


def test_a_second_session_joins_an_open_connection_at_its_next_request(pod: Pod) -> None:
    client = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=5)
    local_port = free_port()
    try:
        with local_copy(pod, 8080) as first:
            wait_for(lambda: _subscribed(pod, 8080), what="subscription")
            assert _get(client, "/one") == "pod-app"
            wait_for(lambda: _paths(first) == ["/one"], what="the first copy")
            with local_copy(pod, local_port, "--port-map", f"{local_port}:8080") as second:
                # A new connection reaching the second session says it has subscribed.
                wait_for(
                    lambda: (_fresh_request(pod, "/hello"), "/hello" in _paths(second))[1],
                    what="the second session's subscription",
                )
                assert _get(client, "/two") == "pod-app"
                wait_for(lambda: "/two" in _paths(second), what="the open connection's copy")
                wait_for(lambda: "/two" in _paths(first), what="the first session's copy")
                assert "/one" not in _paths(second)
    finally:
        client.close()


def test_a_filter_mirrors_only_the_requests_it_matches(pod: Pod) -> None:
    """`--path-filter` in mirror mode: the program gets copies of matching requests only, on
    fresh connections and one by one on a keep-alive connection; the pod answers them all."""
    with local_copy(pod, 8080, "--path-filter", "^/api/") as copy:
        wait_for(lambda: _subscribed(pod, 8080), what="subscription")
        _fresh_request(pod, "/other")
        _fresh_request(pod, "/api/fresh")
        client = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=5)
        try:
            for path in ("/skip/1", "/api/1", "/skip/2", "/api/2"):
                assert _get(client, path) == "pod-app"  # the real client's answers
        finally:
            client.close()
        wait_for(lambda: len(copy.requests()) >= 3, what="three mirrored requests")
        time.sleep(0.5)  # a copy of a request that should not come would arrive by now
        assert sorted(_paths(copy)) == ["/api/1", "/api/2", "/api/fresh"]


def test_sessions_with_other_filters_on_one_agent_each_get_their_own(pod: Pod) -> None:
    api_port, all_port = free_port(), free_port()
    with (
        local_copy(pod, 8080, "--method-filter", "POST", "--http-filter", "X-Dev: ^me$") as mine,
        local_copy(
            pod, api_port, "--port-map", f"{api_port}:8080", "--path-filter", "^/api"
        ) as api,
        local_copy(pod, all_port, "--port-map", f"{all_port}:8080") as everything,
    ):
        wait_for(
            lambda: (_fresh_request(pod, "/hello"), "/hello" in _paths(everything))[1],
            what="the three subscriptions",
        )
        client = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=5)
        try:
            client.request("POST", "/api/mine", body=b"x=1", headers={"X-Dev": "me"})
            assert json.loads(client.getresponse().read())["server"] == "pod-app"
            client.request("POST", "/theirs", body=b"y=2", headers={"X-Dev": "you"})
            assert json.loads(client.getresponse().read())["server"] == "pod-app"
            assert _get(client, "/api/read") == "pod-app"
        finally:
            client.close()
        wait_for(lambda: "/api/read" in _paths(everything), what="the whole copy")
        wait_for(lambda: "/api/read" in _paths(api), what="the path-filtered copy")
        wait_for(lambda: "/api/mine" in _paths(mine), what="the header-filtered copy")
        time.sleep(0.5)
        assert _paths(mine) == ["/api/mine"]
        assert sorted(_paths(api)) == ["/api/mine", "/api/read"]
        assert {"/api/mine", "/theirs", "/api/read"} <= set(_paths(everything))


def test_filter_match_any_mirrors_a_request_one_condition_holds_for(pod: Pod) -> None:
    with local_copy(
        pod, 8080, "--path-filter", "^/api/", "--method-filter", "DELETE", "--filter-match", "any"
    ) as copy:
        wait_for(lambda: _subscribed(pod, 8080), what="subscription")
        _fresh_request(pod, "/nothing")
        subprocess.run(
            ["curl", "-sS", "-m", "5", "-X", "DELETE", f"http://{pod.pod_ip}:8080/gone"],
            check=True,
            capture_output=True,
        )
        _fresh_request(pod, "/api/x")
        wait_for(lambda: len(copy.requests()) >= 2, what="two mirrored requests")
        time.sleep(0.5)
        assert sorted(_paths(copy)) == ["/api/x", "/gone"]


def test_a_connection_that_is_not_http_on_a_filtered_port_is_not_copied(pod: Pod) -> None:
    """Bytes that do not frame as HTTP/1 end that connection's filtered copy there; the next
    connections are copied as before."""
    with local_copy(pod, 8080, "--path-filter", "^/api/") as copy:
        wait_for(lambda: _subscribed(pod, 8080), what="subscription")
        with socket.create_connection((pod.pod_ip, 8080), timeout=5) as raw:
            raw.sendall(b"GET /api/first HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
            raw.sendall(b"\x16\x03\x01 not HTTP at all\r\n\r\n")
            raw.sendall(b"GET /api/after-garbage HTTP/1.1\r\nHost: a\r\n\r\n")
            time.sleep(0.3)
        _fresh_request(pod, "/api/next")
        wait_for(lambda: "/api/next" in _paths(copy), what="the next connection's copy")
        assert "/api/after-garbage" not in _paths(copy)
        assert "/api/first" in _paths(copy)
        assert agent_status(pod)["mirrored_ports"] == [8080]
