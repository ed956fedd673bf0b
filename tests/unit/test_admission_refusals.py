"""What refused a request, from the Status message the real API server writes: Pod Security,
an admission webhook, a quota; anything else (RBAC among them) is not an admission refusal."""

from __future__ import annotations

import pytest

from podside.kube import admission

POD_SECURITY = (
    'pods "web" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities '
    '(container "podside-agent-x" must not include "NET_ADMIN", "NET_RAW" in '
    "securityContext.capabilities.add)"
)


def test_pod_security_names_the_policy_and_keeps_the_reason() -> None:
    assert admission.classify(POD_SECURITY) == admission.Refusal(
        admission.POD_SECURITY,
        'Pod Security admission ("baseline:latest")',
        'non-default capabilities (container "podside-agent-x" must not include "NET_ADMIN", '
        '"NET_RAW" in securityContext.capabilities.add)',
    )


def test_a_webhook_is_named_with_its_reason_on_one_line() -> None:
    message = (
        'admission webhook "validate.kyverno.svc-fail" denied the request: \n\npolicy '
        "Pod/ns/web for resource violation: \n\ndisallow-capabilities:\n  adding-capabilities: "
        "Any capabilities added beyond the allowed list are disallowed."
    )
    refusal = admission.classify(message)
    assert refusal is not None
    assert refusal.cause == admission.WEBHOOK
    assert refusal.by == 'the admission webhook "validate.kyverno.svc-fail"'
    assert "\n" not in refusal.detail and refusal.detail.startswith("policy Pod/ns/web")


@pytest.mark.parametrize(
    ("message", "name", "detail"),
    [
        (
            'pods "podside-agent-a" is forbidden: exceeded quota: compute, requested: pods=1, '
            "used: pods=10, limited: pods=10",
            "compute",
            "requested: pods=1, used: pods=10, limited: pods=10",
        ),
        (
            'pods "podside-agent-a" is forbidden: failed quota: compute: must specify '
            "limits.cpu for: agent",
            "compute",
            "must specify limits.cpu for: agent",
        ),
    ],
)
def test_a_quota_is_named(message: str, name: str, detail: str) -> None:
    assert admission.classify(message) == admission.Refusal(
        admission.QUOTA, f'the ResourceQuota "{name}"', detail
    )


@pytest.mark.parametrize(
    "message",
    [
        'pods "web" is forbidden: User "dev" cannot patch resource "pods/ephemeralcontainers" '
        'in API group "" in the namespace "ns"',
        "unable to create new content in namespace ns because it is being terminated",
        'pods "web" not found',
    ],
)
def test_rbac_and_other_failures_are_not_admission_refusals(message: str) -> None:
    assert admission.classify(message) is None


def test_the_agents_advice_offers_the_privileged_label_and_targetless() -> None:
    advice = admission.pod_security_advice_for_agent("payments")
    assert "label namespace payments pod-security.kubernetes.io/enforce=privileged" in advice
    assert "--targetless" in advice
