"""Mirror and steal on one port: a mirror subscriber gets each request that reached the pod's
app exactly once, and never a request another client stole."""

from __future__ import annotations

import hashlib
import http.client
import json
import os

from tests.core.agent_client import MirroredCopy, mirror_recorder
from tests.steal.conftest import agent_status, ask, redirected_ports, stealing
from tests.topology import PYTHON, SERVERS, Pod, free_port, run, wait_for

SECRET = b"alice's stolen body 7f3a"


def _until_all_copied(pod: Pod, copies: list[MirroredCopy]) -> list[MirroredCopy]:
    """The copies made before now, without the marker that shows they are all there.

    The marker is a request from inside the pod over loopback (never redirected, so the
    sniffer copies it). The agent reads every packet in arrival order and copies what it
    passes to the app before the app answers, so once the marker's copy has ended, every copy
    of what came before it has been opened and has its bytes.
    """
    inside = run(*pod.in_pod("curl", "-sS", "-m", "10", "http://127.0.0.1:8080/marker")).stdout
    assert json.loads(inside)["server"] == "pod-app"

    def marker() -> MirroredCopy | None:
        return next((c for c in copies if "GET /marker" in c.requests()), None)

    wait_for(lambda: (found := marker()) is not None and found.ended, what="the marker's copy")
    found = marker()
    return [copy for copy in copies if copy is not found]


def test_a_filtered_steal_leaves_the_mirror_each_request_the_app_got_once(pod: Pod) -> None:
    with (
        mirror_recorder(pod, 8080) as copies,
        stealing(pod, "--http-filter", "X-Dev: ^alice$", port=free_port()),
    ):
        for index, who in enumerate(("bob", "alice", "carol")):
            answer = ask(pod, f"/r/{index}", headers={"X-Dev": who})
            assert answer["server"] == ("local" if who == "alice" else "pod-app")
        made = _until_all_copied(pod, copies)
    assert [copy.requests() for copy in made] == [["GET /r/0"], ["GET /r/2"]]
    assert {copy.source[0] for copy in made} == {pod.host_ip}  # the real client, not the agent


def test_a_mirror_never_sees_what_another_client_stole_on_a_keep_alive_connection(
    pod: Pod,
) -> None:
    with (
        mirror_recorder(pod, 8080) as copies,
        stealing(pod, "--http-filter", "X-Dev: ^alice$", port=free_port()),
    ):
        connection = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
        assert ask(pod, "/k/0", connection=connection)["server"] == "pod-app"
        stolen = ask(
            pod,
            "/k/1/alice-only",
            method="POST",
            body=SECRET,
            headers={"X-Dev": "alice"},
            connection=connection,
        )
        assert stolen["server"] == "local"
        assert ask(pod, "/k/2", connection=connection)["server"] == "pod-app"
        connection.close()
        made = _until_all_copied(pod, copies)
    assert [copy.requests() for copy in made] == [["GET /k/0", "GET /k/2"]]
    assert SECRET not in made[0].data and b"alice-only" not in made[0].data


def test_a_port_stolen_whole_leaves_the_mirror_only_what_still_reaches_the_app(pod: Pod) -> None:
    with mirror_recorder(pod, 8080) as copies:
        with stealing(pod, port=free_port()):
            assert ask(pod, "/stolen/whole")["server"] == "local"
            probe = ask(pod, "/healthz", headers={"User-Agent": "kube-probe/1.36"})
            assert probe["server"] == "pod-app"
            made = _until_all_copied(pod, copies)
            assert [copy.requests() for copy in made] == [["GET /healthz"]]
            assert not any(b"/stolen/whole" in copy.data for copy in copies)
        wait_for(lambda: not redirected_ports(pod), what="the steal to end")
        del copies[:]
        assert ask(pod, "/after/the/steal")["server"] == "pod-app"
        made = _until_all_copied(pod, copies)
    assert [copy.requests() for copy in made] == [["GET /after/the/steal"]]


def test_a_connection_open_before_a_steal_is_still_mirrored_to_its_end(pod: Pod) -> None:
    """Connections already open keep reaching the app when a steal starts: so do their copies."""
    with mirror_recorder(pod, 8080) as copies:
        connection = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
        assert ask(pod, "/before", connection=connection)["server"] == "pod-app"
        with stealing(pod, port=free_port()):
            assert ask(pod, "/new/connection")["server"] == "local"
            assert ask(pod, "/same/connection", connection=connection)["server"] == "pod-app"
            connection.close()
            made = _until_all_copied(pod, copies)
    assert [copy.requests() for copy in made] == [["GET /before", "GET /same/connection"]]


def test_a_connection_the_router_still_holds_after_the_steal_is_copied_once(pod: Pod) -> None:
    """The port given back, the router keeps passing its open connections to the app and
    copies them; the sniffer sees their segments again and must not copy them a second time."""
    with mirror_recorder(pod, 8080) as copies:
        connection = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
        with stealing(pod, "--http-filter", "X-Dev: ^alice$", port=free_port()):
            assert ask(pod, "/routed/0", connection=connection)["server"] == "pod-app"
        wait_for(lambda: not redirected_ports(pod), what="the steal to end")
        assert ask(pod, "/routed/1", connection=connection)["server"] == "pod-app"
        connection.close()
        made = _until_all_copied(pod, copies)
    assert [copy.requests() for copy in made] == [["GET /routed/0", "GET /routed/1"]]


def test_a_subscriber_that_stops_reading_loses_its_copy_and_the_app_still_gets_it_all(
    pod: Pod,
) -> None:
    body = os.urandom(24 * 1024 * 1024)  # past the 16 MiB a subscriber may fall behind
    with (
        mirror_recorder(pod, 8080, acknowledge=False) as copies,
        stealing(pod, "--http-filter", "X-Dev: ^alice$", port=free_port()),
    ):
        answer = ask(pod, "/upload", method="POST", body=body)
        assert answer["server"] == "pod-app"
        assert answer["sha256"] == hashlib.sha256(body).hexdigest()
        wait_for(lambda: copies and copies[0].reset, what="the copy to be dropped")
        assert len(copies) == 1 and len(copies[0].data) < len(body)
        assert agent_status(pod)["clients"] == 2  # the slow subscriber itself is still served


def test_ipv6_clients_of_a_filtered_steal_are_copied_once_too(pod: Pod) -> None:
    pod.spawn(
        pod.in_pod(PYTHON, str(SERVERS / "echo_http.py"), "::", "8080", "pod-app-v6"),
        "pod-app-v6.log",
    )
    wait_for(lambda: "listening" in pod.log("pod-app-v6.log"), what="the pod's IPv6 app")
    with (
        mirror_recorder(pod, 8080) as copies,
        stealing(pod, "--http-filter", "X-Dev: ^alice$", port=free_port()),
    ):
        assert "ip6" in redirected_ports(pod)
        connection = http.client.HTTPConnection(pod.pod_ip6, 8080, timeout=10)
        for index, who in enumerate(("bob", "alice", "carol")):
            answer = ask(pod, f"/v6/{index}", headers={"X-Dev": who}, connection=connection)
            assert answer["server"] == ("local" if who == "alice" else "pod-app-v6")
        connection.close()
        made = _until_all_copied(pod, copies)
    assert [copy.requests() for copy in made] == [["GET /v6/0", "GET /v6/2"]]
    assert {copy.source[0] for copy in made} == {pod.host_ip6}
