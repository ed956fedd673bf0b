"""Containers run as their securityContext says, the pod's under the container's, as on a real
node: ephemeral containers inherit the pod's user and then hold no capabilities, a root
container has containerd's default set, and runAsNonRoot refuses a root user."""

from __future__ import annotations

from typing import Any

from tests.sandbox.conftest import pod_phase, run_pod, wait_for

# What a process shows of itself: user, groups and capability sets.
SHOW_SELF = "id -u; id -G; grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status; sleep 300"


def _log(core: Any, namespace: str, pod: str, container: str) -> str:
    return str(core.read_namespaced_pod_log(pod, namespace, container=container))


def _status_line(log: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in log.splitlines() if line.startswith(name))


def test_an_ephemeral_container_inherits_the_pods_user_and_has_no_capabilities(
    core: Any, namespace: str
) -> None:
    run_pod(
        core,
        namespace,
        "app",
        ["sleep", "300"],
        terminationGracePeriodSeconds=1,
        securityContext={"runAsUser": 1000, "runAsGroup": 1000, "supplementalGroups": [4000]},
    )
    wait_for(lambda: pod_phase(core, namespace, "app") == "Running", what="app running")
    core.patch_namespaced_pod_ephemeralcontainers(
        "app",
        namespace,
        {
            "spec": {
                "ephemeralContainers": [
                    {
                        "name": "debug",
                        "image": "busybox",
                        "targetContainerName": "main",
                        "command": ["sh", "-c", SHOW_SELF],
                        # Added, but a non-root user does not hold them.
                        "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                    }
                ]
            }
        },
    )
    log = wait_for(
        lambda: "NoNewPrivs" in (text := _log(core, namespace, "app", "debug")) and text,
        what="the debug container's report",
    )
    lines = log.splitlines()
    assert lines[0] == "1000"
    assert lines[1].split() == ["1000", "4000"]
    assert _status_line(log, "CapEff") == "0000000000000000"
    # NET_ADMIN (bit 12) bounds it, with containerd's defaults.
    assert int(_status_line(log, "CapBnd"), 16) == 0xA80425FB | 1 << 12


def test_a_root_container_has_containerds_default_capabilities(core: Any, namespace: str) -> None:
    run_pod(
        core,
        namespace,
        "app",
        ["sh", "-c", SHOW_SELF],
        terminationGracePeriodSeconds=1,
        container={"securityContext": {"allowPrivilegeEscalation": False}},
    )
    log = wait_for(
        lambda: "NoNewPrivs" in (text := _log(core, namespace, "app", "main")) and text,
        what="the container's report",
    )
    assert log.splitlines()[0] == "0"
    assert _status_line(log, "CapEff") == "00000000a80425fb"
    assert _status_line(log, "NoNewPrivs") == "1"


def test_run_as_non_root_refuses_an_image_that_runs_as_root(core: Any, namespace: str) -> None:
    pod = run_pod(
        core,
        namespace,
        "app",
        ["sleep", "300"],
        terminationGracePeriodSeconds=1,
        securityContext={"runAsNonRoot": True},
    )
    waiting = wait_for(
        lambda: (
            (statuses := core.read_namespaced_pod("app", namespace).status.container_statuses)
            and statuses[0].state.waiting
            and statuses[0].state.waiting.reason == "CreateContainerConfigError"
            and statuses[0].state.waiting
        ),
        what="CreateContainerConfigError",
    )
    assert waiting.message == (
        "container has runAsNonRoot and image will run as root "
        f'(pod: "app_{namespace}({pod.metadata.uid})", container: main)'
    )
    assert pod_phase(core, namespace, "app") == "Pending"


def test_exec_probes_run_as_the_containers_user(core: Any, namespace: str) -> None:
    run_pod(
        core,
        namespace,
        "app",
        ["sleep", "300"],
        terminationGracePeriodSeconds=1,
        securityContext={"runAsUser": 1000},
        container={
            "readinessProbe": {
                "exec": {"command": ["sh", "-c", "test $(id -u) = 1000"]},
                "periodSeconds": 1,
            }
        },
    )
    wait_for(
        lambda: core.read_namespaced_pod("app", namespace).status.container_statuses[0].ready,
        what="ready by a probe run as uid 1000",
    )
