"""Ephemeral containers: added with PATCH pods/NAME/ephemeralcontainers, reported in status."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from tests.sandbox.conftest import pod_phase, run_pod, wait_for


def _ephemeral_state(core: Any, namespace: str, name: str) -> Any:
    statuses = core.read_namespaced_pod(name, namespace).status.ephemeral_container_statuses or []
    return statuses[0].state if statuses else None


def test_ephemeral_container_joins_the_pods_network(core: Any, namespace: str) -> None:
    run_pod(core, namespace, "target", ["sleep", "300"], terminationGracePeriodSeconds=1)
    wait_for(lambda: pod_phase(core, namespace, "target") == "Running", what="target running")
    pod_ip = core.read_namespaced_pod("target", namespace).status.pod_ip
    core.patch_namespaced_pod_ephemeralcontainers(
        "target",
        namespace,
        {
            "spec": {
                "ephemeralContainers": [
                    {
                        "name": "debug",
                        "image": "busybox",
                        "targetContainerName": "main",
                        "command": ["sh", "-c", "ip -4 addr show eth0; sleep 300"],
                    }
                ]
            }
        },
    )
    wait_for(
        lambda: (state := _ephemeral_state(core, namespace, "target")) and state.running,
        what="debug running",
    )
    wait_for(
        lambda: pod_ip in core.read_namespaced_pod_log("target", namespace, container="debug"),
        what="pod IP in the debug log",
    )


def test_unknown_image_without_command_is_reported_as_image_pull_failure(
    core: Any, namespace: str
) -> None:
    run_pod(core, namespace, "target", ["sleep", "300"], terminationGracePeriodSeconds=1)
    wait_for(lambda: pod_phase(core, namespace, "target") == "Running", what="target running")
    core.patch_namespaced_pod_ephemeralcontainers(
        "target",
        namespace,
        {
            "spec": {
                "ephemeralContainers": [{"name": "nope", "image": "example.com/no-such-image:1"}]
            }
        },
    )
    waiting = wait_for(
        lambda: (
            (state := _ephemeral_state(core, namespace, "target"))
            and state.waiting
            and state.waiting.reason == "ImagePullBackOff"
            and state.waiting
        ),
        what="ImagePullBackOff",
    )
    assert "example.com/no-such-image:1" in waiting.message


def _debug_container(name: str) -> dict[str, Any]:
    return {"name": name, "image": "busybox", "command": ["sleep", "300"]}


def test_a_patch_naming_a_resource_version_applies_to_that_version_only(
    core: Any, namespace: str
) -> None:
    """As on a real API server: a resourceVersion in the patch is a precondition (409
    Conflict once the pod changed); a patch without one applies to the pod as it is, however
    many arrive at once."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes.client.exceptions import ApiException

    run_pod(core, namespace, "target", ["sleep", "300"], terminationGracePeriodSeconds=1)
    read = core.read_namespaced_pod("target", namespace)

    def add(name: str, resource_version: str | None = None) -> None:
        body: dict[str, Any] = {"spec": {"ephemeralContainers": [_debug_container(name)]}}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        core.patch_namespaced_pod_ephemeralcontainers("target", namespace, body)

    add("first", read.metadata.resource_version)
    with pytest.raises(ApiException) as conflict:
        add("second", read.metadata.resource_version)  # the pod is no longer as read
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"

    names = [f"many-{n}" for n in range(12)]
    with ThreadPoolExecutor(len(names)) as pool:
        list(pool.map(add, names))
    pod = core.read_namespaced_pod("target", namespace)
    assert sorted(c.name for c in pod.spec.ephemeral_containers) == sorted(["first", *names])


def _patch_slowly(api_client: Any, path: str, body: bytes, meanwhile: Callable[[], None]) -> int:
    """PATCH `path` with `body` whose last byte is sent only after `meanwhile()` ran: the
    request is in the server's hands, its body not yet whole. Returns the status."""
    configuration = api_client.configuration
    url = urllib.parse.urlsplit(configuration.host)
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    connection = http.client.HTTPSConnection(url.hostname, url.port, context=context, timeout=30)
    connection.putrequest("PATCH", path)
    connection.putheader("Content-Type", "application/strategic-merge-patch+json")
    connection.putheader("Content-Length", str(len(body)))
    if authorization := configuration.get_api_key_with_prefix("BearerToken"):
        connection.putheader("Authorization", authorization)
    connection.endheaders(body[:-1])
    time.sleep(1)  # for the server to take the request up; a slower one only tests less
    meanwhile()
    connection.send(body[-1:])
    status = connection.getresponse().status
    connection.close()
    return status


def test_a_patch_whose_body_arrives_late_applies_to_the_pod_as_it_is_then(
    api_client: Any, core: Any, namespace: str
) -> None:
    """A real API server applies a patch without a resourceVersion to the object as it is
    when the patch is applied: another write while the body was still arriving is neither
    lost nor a 409 Conflict."""
    run_pod(core, namespace, "target", ["sleep", "300"], terminationGracePeriodSeconds=1)
    late = json.dumps({"spec": {"ephemeralContainers": [_debug_container("late")]}}).encode()

    def add_early() -> None:
        core.patch_namespaced_pod_ephemeralcontainers(
            "target", namespace, {"spec": {"ephemeralContainers": [_debug_container("early")]}}
        )

    path = f"/api/v1/namespaces/{namespace}/pods/target/ephemeralcontainers"
    assert _patch_slowly(api_client, path, late, add_early) == 200
    pod = core.read_namespaced_pod("target", namespace)
    assert [c.name for c in pod.spec.ephemeral_containers] == ["early", "late"]
