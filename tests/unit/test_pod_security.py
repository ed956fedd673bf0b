"""The sandbox's Pod Security admission: the checks podside's specs meet, worded as the real
plugin words them, and the targetless agent's pod passing the restricted level."""

from __future__ import annotations

from typing import Any

import pytest

from podside.kube.agent import TARGET_CAPABILITIES, AgentImage, targetless_pod
from podside.kube.agent_settings import AgentSettings
from podside.sandbox.api.errors import ApiError
from podside.sandbox.api.pod_security import admit_pod, enforced_policy


def namespace(level: str | None, version: str | None = None) -> dict[str, Any]:
    labels = {"kubernetes.io/metadata.name": "ns"}
    if level is not None:
        labels["pod-security.kubernetes.io/enforce"] = level
    if version is not None:
        labels["pod-security.kubernetes.io/enforce-version"] = version
    return {"metadata": {"name": "ns", "labels": labels}}


def pod_with_agent(**agent_security: Any) -> dict[str, Any]:
    """An app pod with podside's ephemeral agent added (what the ephemeralcontainers update
    admits)."""
    return {
        "metadata": {"name": "web", "namespace": "ns"},
        "spec": {
            "containers": [{"name": "app", "image": "busybox"}],
            "ephemeralContainers": [
                {
                    "name": "podside-agent-x",
                    "image": "agent",
                    "securityContext": {
                        "capabilities": {"add": TARGET_CAPABILITIES},
                        **agent_security,
                    },
                }
            ],
        },
    }


def refusal(ns: dict[str, Any], pod: dict[str, Any]) -> ApiError:
    with pytest.raises(ApiError) as raised:
        admit_pod(ns, pod)
    assert (raised.value.code, raised.value.reason) == (403, "Forbidden")
    assert raised.value.details == {"name": pod["metadata"]["name"], "kind": "pods"}
    return raised.value


def test_baseline_refuses_the_agents_capabilities_with_the_real_message() -> None:
    assert refusal(namespace("baseline"), pod_with_agent()).message == (
        'pods "web" is forbidden: violates PodSecurity "baseline:latest": non-default '
        'capabilities (container "podside-agent-x" must not include "NET_ADMIN", "NET_RAW", "SYS_PTRACE" in '
        "securityContext.capabilities.add)"
    )


def test_net_raw_alone_is_not_in_baselines_list_but_chown_is() -> None:
    pod = pod_with_agent()
    pod["spec"]["ephemeralContainers"][0]["securityContext"]["capabilities"]["add"] = [
        "CHOWN",
        "NET_RAW",
    ]
    assert '"NET_RAW" in' in refusal(namespace("baseline"), pod).message
    pod["spec"]["ephemeralContainers"][0]["securityContext"]["capabilities"]["add"] = ["CHOWN"]
    admit_pod(namespace("baseline"), pod)


def test_every_failing_baseline_check_is_listed_in_the_checks_order() -> None:
    pod = pod_with_agent(privileged=True)
    pod["spec"]["hostNetwork"] = True
    pod["spec"]["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    message = refusal(namespace("baseline", "v1.36"), pod).message
    assert message == (
        'pods "web" is forbidden: violates PodSecurity "baseline:v1.36": non-default '
        'capabilities (container "podside-agent-x" must not include "NET_ADMIN", "NET_RAW", "SYS_PTRACE" in '
        "securityContext.capabilities.add), host namespaces (hostNetwork=true), hostPath "
        'volumes (volume "root"), privileged (container "podside-agent-x" must not set '
        "securityContext.privileged=true)"
    )


def test_restricted_lists_its_own_checks_after_baselines() -> None:
    message = refusal(namespace("restricted"), pod_with_agent(runAsUser=0)).message
    assert message == (
        'pods "web" is forbidden: violates PodSecurity "restricted:latest": '
        'allowPrivilegeEscalation != false (containers "app", "podside-agent-x" must set '
        "securityContext.allowPrivilegeEscalation=false), unrestricted capabilities "
        '(containers "app", "podside-agent-x" must set securityContext.capabilities.drop=["ALL"]; '
        'container "podside-agent-x" must not include "NET_ADMIN", "NET_RAW", "SYS_PTRACE" in '
        'securityContext.capabilities.add), runAsNonRoot != true (pod or containers "app", '
        '"podside-agent-x" must set securityContext.runAsNonRoot=true), runAsUser=0 (container '
        '"podside-agent-x" must not set runAsUser=0), seccompProfile (pod or containers "app", '
        '"podside-agent-x" must set securityContext.seccompProfile.type to "RuntimeDefault" or '
        '"Localhost")'
    )


def test_an_explicit_run_as_non_root_false_is_named_as_set() -> None:
    pod = pod_with_agent(runAsNonRoot=False)
    pod["spec"]["securityContext"] = {"runAsNonRoot": True}
    assert (
        'runAsNonRoot != true (container "podside-agent-x" must not set '
        "securityContext.runAsNonRoot=false)" in refusal(namespace("restricted"), pod).message
    )


def test_privileged_no_label_and_a_bad_label() -> None:
    admit_pod(namespace("privileged"), pod_with_agent(privileged=True))
    admit_pod(namespace(None), pod_with_agent(privileged=True))
    # The real plugin enforces a level it cannot read as restricted.
    assert enforced_policy(namespace("basline")) == ("restricted", "latest")


def test_the_targetless_pod_passes_restricted_and_doctors_trial_pod_does_not() -> None:
    settings = AgentSettings()
    minimal = targetless_pod(
        "podside-agent-a", AgentImage.of(None), 20001, "t" * 43, settings, capabilities=False
    )
    admit_pod(namespace("restricted"), minimal)
    trial = targetless_pod(
        "podside-agent-b", AgentImage.of(None), 20001, "t" * 43, settings, capabilities=True
    )
    assert "non-default capabilities" in refusal(namespace("baseline"), trial).message
