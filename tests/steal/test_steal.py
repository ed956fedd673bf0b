"""Steal: the local program answers the pod's traffic; the pod is never left unreachable."""

from __future__ import annotations

import http.client

from tests.steal.conftest import agent_status, ask, nft_tables, redirected_ports, stealing
from tests.topology import Pod, wait_for


def test_whole_port_steal_answers_with_the_program_and_gives_the_port_back(pod: Pod) -> None:
    assert ask(pod)["server"] == "pod-app"
    with stealing(pod) as program:
        assert "podside_steal" in nft_tables(pod)
        for index in range(3):
            answer = ask(pod, f"/hello/{index}", method="POST", body=b"x" * index)
            assert answer["server"] == "local"
            assert answer["path"] == f"/hello/{index}"
            assert answer["length"] == index
        connection = http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
        for _ in range(3):
            assert ask(pod, connection=connection)["server"] == "local"
        connection.close()
        assert "local POST /hello/2" in program.output()
    wait_for(lambda: not redirected_ports(pod), what="the redirect to go")
    assert ask(pod)["server"] == "pod-app"
    assert agent_status(pod)["stolen_ports"] == {}
