"""A user without the rights podside needs is told which verb on which resource is missing."""

from __future__ import annotations

import os
from typing import Any

import pytest

from podside.errors import PodsideError
from podside.kube.agent import AgentImage, ensure_agent, ensure_targetless_agent
from podside.kube.config import load_context
from podside.kube.targets import list_targets, resolve_target
from tests.sandbox.conftest import pod_phase, run_pod, wait_for


@pytest.fixture
def viewer(sandbox: Any, namespace: str) -> Any:
    """A context whose user may only read pods in the test's namespace."""
    from podside.sandbox.control import add_restricted_user
    from podside.sandbox.users import Rule

    name = f"viewer-{os.urandom(3).hex()}"
    rules = (Rule.parse("get,list,watch:pods", (namespace,)),)
    _, standalone = add_restricted_user(sandbox, name, rules)
    return load_context(namespace=namespace, kubeconfig=str(standalone))


def test_adding_the_agent_without_patch_names_the_subresource(
    core: Any, viewer: Any, namespace: str
) -> None:
    run_pod(core, namespace, "app", ["sleep", "600"], terminationGracePeriodSeconds=1)
    wait_for(lambda: pod_phase(core, namespace, "app") == "Running", what="app running")
    target = resolve_target(viewer, "pod/app")
    with pytest.raises(PodsideError) as error:
        ensure_agent(viewer, target, image=AgentImage.of(None), progress=lambda _: None)
    assert error.value.message.startswith(
        f"cannot patch pods/ephemeralcontainers in namespace {namespace} (RBAC, user viewer-"
    )
    assert "README.md, section Kubernetes" in error.value.message


def test_listing_workloads_without_rights_names_the_api_group(viewer: Any, namespace: str) -> None:
    with pytest.raises(
        PodsideError,
        match=rf"^cannot list deployments \(API group apps\) in namespace {namespace} \(RBAC",
    ):
        list_targets(viewer, namespace)


def test_targetless_without_create_names_pods(viewer: Any, namespace: str) -> None:
    with pytest.raises(PodsideError, match=rf"^cannot create pods in namespace {namespace} \(RBAC"):
        ensure_targetless_agent(viewer, image=AgentImage.of(None), progress=lambda _: None)


def test_another_namespace_is_denied_too(viewer: Any) -> None:
    viewer.namespace = "default"
    with pytest.raises(PodsideError, match=r"^cannot get pods in namespace default \(RBAC"):
        resolve_target(viewer, "pod/anything")
