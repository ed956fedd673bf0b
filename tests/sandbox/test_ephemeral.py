"""Ephemeral containers: added with PATCH pods/NAME/ephemeralcontainers, reported in status."""

from __future__ import annotations

from typing import Any

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
