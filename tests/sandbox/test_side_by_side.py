"""Two sandboxes with different state dirs run side by side: each serves its own pods through
its own API server, and `down` of one leaves the other whole (the session's sandbox is the
other one; test_zz_lifecycle takes it down last and checks that nothing is left)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from podside.sandbox import control, owners
from podside.sandbox.layout import CONTEXT_NAME, StateDir
from podside.sandbox.node import network
from tests.sandbox.conftest import pod_phase, run_pod, wait_for


@pytest.fixture
def second(tmp_path: Path, kubeconfig: Path) -> Iterator[StateDir]:
    """A second sandbox, writing its context into the session's kubeconfig as well."""
    state = StateDir(tmp_path / "second")
    try:
        assert control.up(state) == 0
        yield state
    finally:
        control.down(state)


def _core(kubeconfig: Path, context: str) -> Any:
    from kubernetes import client, config

    return client.CoreV1Api(
        config.new_client_from_config(config_file=str(kubeconfig), context=context)
    )


def _ready_blog(core: Any) -> str:
    def ready() -> str | None:
        for pod in core.list_namespaced_pod("default", label_selector="app=blog").items:
            conditions = (pod.status.conditions if pod.status else None) or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                return str(pod.metadata.name)
        return None

    return wait_for(ready, timeout=60, what="a ready blog pod")


def _post_through_port_forward(core: Any, pod: str) -> dict[str, Any]:
    """POST /posts to the blog through the kubernetes client's port-forward: the blog then
    calls http://auditor:9000, so the answer also proves the pod's DNS and service rules."""
    from kubernetes.stream import portforward

    body = json.dumps({"title": pod}).encode()
    forward = portforward(core.connect_get_namespaced_pod_portforward, pod, "default", ports="8080")
    connection = forward.socket(8080)
    try:
        connection.settimeout(20)
        connection.sendall(
            b"POST /posts HTTP/1.0\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    finally:
        connection.close()
        forward.close()
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 201"), head
    answer: dict[str, Any] = json.loads(payload)
    return answer


def _netns_names() -> set[str]:
    output = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    return {line.split()[0] for line in output.splitlines() if line.strip()}


def _lookup_in_new_pod(core: Any, namespace: str) -> str:
    script = "import socket; print(socket.gethostbyname('auditor.default'))"
    run_pod(core, namespace, "lookup", [sys.executable, "-c", script], restartPolicy="Never")
    wait_for(lambda: pod_phase(core, namespace, "lookup") == "Succeeded", what="lookup done")
    return str(core.read_namespaced_pod_log("lookup", namespace)).strip()


def test_two_sandboxes_serve_their_own_pods_and_one_down_leaves_the_other_whole(
    sandbox: StateDir, second: StateDir, kubeconfig: Path, core: Any, namespace: str
) -> None:
    # Both contexts sit in one kubeconfig, each pointing at its own API server.
    second_context = control.admin_context(second)
    assert second_context == f"{CONTEXT_NAME}-{second.sandbox_id}"
    clusters = {c["name"]: c["cluster"] for c in yaml.safe_load(kubeconfig.read_text())["clusters"]}
    first_state, second_state = control._read_state(sandbox), control._read_state(second)
    assert first_state and second_state and first_state["port"] != second_state["port"]
    assert clusters[CONTEXT_NAME]["server"] == first_state["server"]
    assert clusters[second_context]["server"] == second_state["server"]

    second_core = _core(kubeconfig, second_context)
    first_blog, second_blog = _ready_blog(core), _ready_blog(second_core)
    first_uids = {p.metadata.uid for p in core.list_pod_for_all_namespaces().items}
    second_uids = {p.metadata.uid for p in second_core.list_pod_for_all_namespaces().items}
    assert first_uids and second_uids and not first_uids & second_uids
    names = _netns_names()
    assert {sandbox.node_netns, second.node_netns} <= names
    assert {second.pod_netns(uid) for uid in second_uids} <= names

    for client, blog in ((core, first_blog), (second_core, second_blog)):
        answer = _post_through_port_forward(client, blog)
        assert answer["post"]["title"] == blog
        assert answer["audit"] == "audited (201)"

    second_pid = second_state["pid"]
    assert control.down(second) == 0

    # Nothing of the second is left...
    names = _netns_names()
    assert second.node_netns not in names
    assert not [name for name in names if name.startswith(second.pod_netns_prefix)]
    assert not second.owner_file.exists()
    assert not Path(f"/proc/{second_pid}").exists()
    contexts = [c["name"] for c in yaml.safe_load(kubeconfig.read_text())["contexts"]]
    assert second_context not in contexts and CONTEXT_NAME in contexts

    # ...and the first is whole: its node, pods, port-forward, DNS and services, and the host
    # route that keeps the host off the pod network.
    assert sandbox.node_netns in names
    assert {sandbox.pod_netns(uid) for uid in first_uids} <= names
    assert any(owner.state_dir == sandbox.root for owner in owners.running())
    assert (
        "198.18.0.0/15"
        in subprocess.run(
            ["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True
        ).stdout
    )
    answer = _post_through_port_forward(core, first_blog)
    assert answer["audit"] == "audited (201)"
    auditor_ip = core.read_namespaced_service("auditor", "default").spec.cluster_ip
    assert _lookup_in_new_pod(core, namespace) == auditor_ip


def test_a_mount_point_two_sandboxes_use_outlives_the_down_of_the_one_that_made_it(
    sandbox: StateDir, second: StateDir, kubeconfig: Path, core: Any, namespace: str
) -> None:
    # A mount path the host lacks: the sandbox creates it on the shared filesystem.
    target = f"/podside-shared-{os.urandom(3).hex()}/data"
    made = Path(target).parent
    second_core = _core(kubeconfig, control.admin_context(second))
    for client, pod_namespace, name in (
        (second_core, "default", "maker"),
        (core, namespace, "user"),
    ):
        run_pod(
            client,
            pod_namespace,
            name,
            ["sleep", "600"],
            terminationGracePeriodSeconds=1,
            volumes=[{"name": "scratch", "emptyDir": {}}],
            container={"volumeMounts": [{"name": "scratch", "mountPath": target}]},
        )
        wait_for(lambda c=client, n=pod_namespace, p=name: pod_phase(c, n, p) == "Running")
    assert made.is_dir()

    assert control.down(second) == 0

    # Removing the directory would have detached the first sandbox's mount in its pod.
    assert made.is_dir()
    uid = core.read_namespaced_pod("user", namespace).metadata.uid
    holder = network.namespace_pids(sandbox.pod_netns(uid))[0]
    mounted = [
        line.split()[4] for line in Path(f"/proc/{holder}/mountinfo").read_text().splitlines()
    ]
    assert target in mounted
    # The first sandbox now owns it: it goes with the last pod that used it.
    core.delete_namespaced_pod("user", namespace, grace_period_seconds=0)
    wait_for(lambda: not made.exists(), what=f"{made} removed with the last pod using it")
