"""The agent in the sandbox: an ephemeral container that really runs and is reused by the
session that holds its token, a targetless pod, and image failures reported with the
container's reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from podside.errors import PodsideError
from podside.kube.agent import AgentImage, ensure_agent, ensure_targetless_agent
from podside.kube.agent_tokens import TokenCache
from podside.kube.targets import resolve_target
from podside_protocol.tokens import verifier_of
from tests.sandbox.conftest import pod_phase, wait_for

# The prebuilt agent image (`--agent-image`): the sandbox runs the agent for it at once, with
# no code to deliver, as these tests of the container and its tokens need.
PREBUILT = AgentImage.of("ghcr.io/podside/agent:0.1.0")


def _two_container_pod(core: Any, namespace: str, name: str = "app") -> None:
    sleeper = {"image": "busybox", "command": ["sleep", "600"]}
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", **sleeper}, {"name": "side", **sleeper}],
            },
        },
    )
    wait_for(lambda: pod_phase(core, namespace, name) == "Running", what=f"{name} running")


def _listening(core: Any, namespace: str, pod: str, container: str, port: int) -> bool:
    """The agent prints this line once it accepts connections."""
    log = core.read_namespaced_pod_log(pod, namespace, container=container)
    return f"listening on 127.0.0.1:{port}" in log


def test_ephemeral_agent_runs_in_the_target_pod_and_is_reused(
    core: Any, ctx: Any, namespace: str, tmp_path: Path
) -> None:
    _two_container_pod(core, namespace)
    target = resolve_target(ctx, "pod/app")
    said: list[str] = []
    tokens = TokenCache(tmp_path / "cache")
    endpoint = ensure_agent(
        ctx, target, image=PREBUILT, progress=said.append, timeout=30, tokens=tokens
    )
    assert (endpoint.namespace, endpoint.pod, endpoint.reused) == (namespace, "app", False)
    assert endpoint.container.startswith("podside-agent-")
    assert said == [
        f"starting the agent in pod {namespace}/app (container main, image {PREBUILT.name})",
        "agent running",
    ]
    pod = core.read_namespaced_pod("app", namespace)
    (spec,) = pod.spec.ephemeral_containers
    assert spec.name == endpoint.container
    assert spec.target_container_name == "main"
    assert spec.args == ["--port", str(endpoint.port), "--idle-exit", "300"]
    # Only the verifier: the token is in this user's cache, not in what `get pods` shows.
    assert [(e.name, e.value) for e in spec.env] == [
        ("PODSIDE_AGENT_TOKEN_SHA256", verifier_of(endpoint.token)),
        ("PODSIDE_AGENT_PROTOCOL", "1"),
    ]
    assert tokens.get(pod.metadata.uid, endpoint.container) == endpoint.token
    # Its own user and capabilities, whatever the pod's securityContext says.
    assert spec.security_context.capabilities.add == ["NET_ADMIN", "NET_RAW", "SYS_PTRACE"]
    assert (spec.security_context.run_as_user, spec.security_context.run_as_non_root) == (0, False)
    (status,) = pod.status.ephemeral_container_statuses
    assert status.state.running is not None
    wait_for(
        lambda: _listening(core, namespace, "app", endpoint.container, endpoint.port),
        what="the agent listening",
    )

    again = ensure_agent(ctx, target, image=PREBUILT, progress=said.append, tokens=tokens)
    assert again.reused
    assert (again.container, again.port, again.token) == (
        endpoint.container,
        endpoint.port,
        endpoint.token,
    )
    assert said[-1] == f"reusing the agent {endpoint.container} in pod {namespace}/app"
    assert len(core.read_namespaced_pod("app", namespace).spec.ephemeral_containers) == 1


def test_another_container_gets_its_own_agent(core: Any, ctx: Any, namespace: str) -> None:
    _two_container_pod(core, namespace)
    first = ensure_agent(ctx, resolve_target(ctx, "app"), image=PREBUILT, progress=lambda _: None)
    second = ensure_agent(
        ctx,
        resolve_target(ctx, "app", container="side"),
        image=PREBUILT,
        progress=lambda _: None,
    )
    assert not second.reused
    assert second.container != first.container
    assert second.token != first.token
    targets = [
        (c.name, c.target_container_name)
        for c in core.read_namespaced_pod("app", namespace).spec.ephemeral_containers
    ]
    assert targets == [(first.container, "main"), (second.container, "side")]


def test_an_image_that_cannot_be_pulled_is_reported_with_its_reason(
    core: Any, ctx: Any, namespace: str
) -> None:
    _two_container_pod(core, namespace)
    # Not */podside/agent: the sandbox, like a registry without it, has no such image.
    image = "registry.example.com/nobody/agent:0"
    with pytest.raises(PodsideError) as error:
        ensure_agent(
            ctx,
            resolve_target(ctx, "app"),
            image=AgentImage.of(image),
            progress=lambda _: None,
            timeout=30,
        )
    message = error.value.message
    assert message.startswith("the agent podside-agent-")
    assert f"in pod {namespace}/app cannot start: " in message
    # The kubelet reports ErrImagePull first, then ImagePullBackOff while it retries.
    assert "ErrImagePull: " in message or "ImagePullBackOff: " in message
    assert image in message


def test_targetless_agent_is_a_pod_of_its_own(core: Any, ctx: Any, namespace: str) -> None:
    said: list[str] = []
    endpoint = ensure_targetless_agent(ctx, image=PREBUILT, progress=said.append, timeout=30)
    assert (endpoint.namespace, endpoint.container, endpoint.reused) == (namespace, "agent", False)
    assert endpoint.pod.startswith("podside-agent-")
    assert said == [
        f"starting the agent in a new pod {namespace}/{endpoint.pod} (image {PREBUILT.name})",
        "agent running",
    ]
    pod = core.read_namespaced_pod(endpoint.pod, namespace)
    assert pod.metadata.labels == {"app.kubernetes.io/name": "podside-agent"}
    assert pod.spec.restart_policy == "Never"
    assert pod.status.phase == "Running"
    (container,) = pod.spec.containers
    assert container.args == ["--port", str(endpoint.port), "--idle-exit", "300"]
    assert [(e.name, e.value) for e in container.env] == [
        ("PODSIDE_AGENT_TOKEN_SHA256", verifier_of(endpoint.token)),
        ("PODSIDE_AGENT_PROTOCOL", "1"),
    ]
    # Outgoing traffic and DNS need no capability and no root (Pod Security "restricted").
    assert container.security_context.capabilities.add is None
    assert container.security_context.capabilities.drop == ["ALL"]
    assert container.security_context.allow_privilege_escalation is False
    assert pod.spec.security_context.run_as_non_root is True
    wait_for(
        lambda: _listening(core, namespace, endpoint.pod, "agent", endpoint.port),
        what="the agent listening",
    )


def test_an_agent_not_running_in_time_is_an_error_naming_the_pod(
    core: Any, ctx: Any, namespace: str
) -> None:
    _two_container_pod(core, namespace)
    # No time at all: the wait gives up before it looks, whatever the kubelet does.
    with pytest.raises(PodsideError) as error:
        ensure_agent(
            ctx, resolve_target(ctx, "app"), image=PREBUILT, progress=lambda _: None, timeout=0
        )
    assert f"in pod {namespace}/app is not running after 0s (" in error.value.message
    assert error.value.message.endswith(f"see `kubectl describe pod -n {namespace} app`")
