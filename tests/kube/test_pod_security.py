"""Pod Security admission and the API's ephemeral container rules on the sandbox, through the
real Kubernetes client and the real `podside exec`: the agent refused in a baseline namespace
is one line naming Pod Security and what to do, nothing left in the pod; the targetless agent
works in baseline and restricted namespaces; its settings reach its pod's spec."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.sandbox.conftest import pod_phase, wait_for
from tests.topology import PYTHON

AGENT_SELECTOR = "app.kubernetes.io/name=podside-agent"


@pytest.fixture
def enforce(core: Any, namespace: str) -> Iterator[Any]:
    """Label the test's namespace `pod-security.kubernetes.io/enforce=LEVEL`."""

    def label(level: str) -> str:
        core.patch_namespace(
            namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}}
        )
        return namespace

    yield label


def podside_exec(namespace: str, *options: str, command: list[str]) -> Any:
    return subprocess.run(
        [
            PYTHON,
            "-m",
            "podside",
            "exec",
            "--context",
            "podside-sandbox",
            "-n",
            namespace,
            "--agent-timeout",
            "30",
            *options,
            "--",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _sleeper(core: Any, namespace: str, name: str = "app", **spec: Any) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"]}],
                **spec,
            },
        },
    )
    wait_for(lambda: pod_phase(core, namespace, name) == "Running", what=f"{name} running")


def _refusal(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(ApiException) as raised:
        call()
    return raised.value.status, json.loads(raised.value.body)


def test_a_pod_its_namespace_level_forbids_is_refused_as_the_api_server_refuses_it(
    core: Any, enforce: Any
) -> None:
    namespace = enforce("baseline")
    pod = {
        "metadata": {"name": "netadmin"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "securityContext": {"capabilities": {"add": ["NET_ADMIN"]}},
                }
            ]
        },
    }
    status, body = _refusal(lambda: core.create_namespaced_pod(namespace, pod))
    assert (status, body["reason"], body["code"]) == (403, "Forbidden", 403)
    assert body["message"] == (
        'pods "netadmin" is forbidden: violates PodSecurity "baseline:latest": non-default '
        'capabilities (container "main" must not include "NET_ADMIN" in '
        "securityContext.capabilities.add)"
    )
    assert core.list_namespaced_pod(namespace).items == []


def test_an_ephemeral_container_with_resources_is_refused_with_the_api_message(
    core: Any, namespace: str
) -> None:
    _sleeper(core, namespace)
    container = {
        "name": "debug",
        "image": "busybox",
        "resources": {"limits": {"memory": "64Mi"}},
    }
    status, body = _refusal(
        lambda: core.patch_namespaced_pod_ephemeralcontainers(
            "app", namespace, {"spec": {"ephemeralContainers": [container]}}
        )
    )
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"] == (
        'Pod "app" is invalid: spec.ephemeralContainers[0].resources: Forbidden: cannot be set '
        "for an Ephemeral Container"
    )
    assert not core.read_namespaced_pod("app", namespace).spec.ephemeral_containers


def test_the_agent_in_a_baseline_namespace_is_one_line_naming_pod_security(
    core: Any, enforce: Any
) -> None:
    namespace = enforce("baseline")
    _sleeper(core, namespace)
    result = podside_exec(namespace, "--target", "pod/app", command=["true"])
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("podside: ")]
    assert lines, result.stderr
    line = lines[-1]
    assert line.startswith(
        f'podside: Pod Security admission ("baseline:latest") refused to add the agent to pod '
        f'{namespace}/app: non-default capabilities (container "podside-agent-'
    ), line
    assert '"NET_ADMIN", "NET_RAW", "SYS_PTRACE" in securityContext.capabilities.add)' in line
    assert f"label namespace {namespace} pod-security.kubernetes.io/enforce=privileged" in line
    assert "--targetless" in line and "RBAC" not in line
    assert "Traceback" not in result.stderr
    pod = core.read_namespaced_pod("app", namespace)
    assert not pod.spec.ephemeral_containers  # nothing left in the pod
    assert pod.status.phase == "Running"


def test_a_pull_secret_the_target_pod_lacks_is_refused_before_anything_is_added(
    core: Any, namespace: str
) -> None:
    _sleeper(core, namespace, imagePullSecrets=[{"name": "team-registry"}])
    result = podside_exec(
        namespace, "--target", "pod/app", "--image-pull-secret", "regcred", command=["true"]
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"podside: pod {namespace}/app has no imagePullSecret regcred: an ephemeral container "
        "pulls with its pod's own (team-registry), from the pod's spec or its service account; "
        "add it there or use an agent image the node can pull (--image-pull-secret is for "
        "--targetless)"
    )
    assert not core.read_namespaced_pod("app", namespace).spec.ephemeral_containers


@pytest.mark.parametrize("level", ["baseline", "restricted"])
def test_targetless_works_in_a_namespace_that_enforces(core: Any, enforce: Any, level: str) -> None:
    namespace = enforce(level)
    script = (
        "import socket, urllib.request\n"
        "print(socket.gethostbyname('auditor.default'))\n"
        "print(urllib.request.urlopen('http://auditor.default:9000/events', timeout=10).status)\n"
    )
    result = podside_exec(namespace, "--targetless", command=[PYTHON, "-c", script])
    assert result.returncode == 0, result.stderr
    address, status = result.stdout.splitlines()
    assert address.startswith("198.18.128.")  # the auditor service's ClusterIP, by the pod's DNS
    assert status == "200"
    (pod,) = core.list_namespaced_pod(namespace, label_selector=AGENT_SELECTOR).items
    assert pod.spec.containers[0].security_context.capabilities.drop == ["ALL"]
    assert pod.spec.containers[0].security_context.capabilities.add is None


def test_the_settings_reach_the_targetless_pods_spec(core: Any, namespace: str) -> None:
    result = podside_exec(
        "default",
        "--targetless",
        "--targetless-namespace",
        namespace,
        "--agent-image-pull-policy",
        "IfNotPresent",
        "--image-pull-secret",
        "regcred",
        "--targetless-label",
        "team=payments",
        "--targetless-annotation",
        "example.com/owner=alice",
        "--targetless-node-selector",
        "kubernetes.io/os=linux",
        "--targetless-toleration",
        "dedicated=dev:NoSchedule",
        "--targetless-requests",
        "cpu=10m,memory=32Mi",
        "--targetless-limits",
        "memory=256Mi",
        command=["true"],
    )
    assert result.returncode == 0, result.stderr
    (pod,) = core.list_namespaced_pod(namespace, label_selector=AGENT_SELECTOR).items
    assert pod.metadata.labels["team"] == "payments"
    assert pod.metadata.annotations == {
        "example.com/owner": "alice",
        "sidecar.istio.io/inject": "false",
        "linkerd.io/inject": "disabled",
    }
    assert [secret.name for secret in pod.spec.image_pull_secrets] == ["regcred"]
    assert pod.spec.node_selector == {"kubernetes.io/os": "linux"}
    (toleration,) = pod.spec.tolerations
    assert (toleration.key, toleration.operator, toleration.value, toleration.effect) == (
        "dedicated",
        "Equal",
        "dev",
        "NoSchedule",
    )
    (container,) = pod.spec.containers
    assert container.image_pull_policy == "IfNotPresent"
    assert container.resources.requests == {"cpu": "10m", "memory": "32Mi"}
    assert container.resources.limits == {"memory": "256Mi"}
    in_default = core.list_namespaced_pod("default", label_selector=AGENT_SELECTOR).items
    assert all(p.metadata.labels.get("team") != "payments" for p in in_default)
