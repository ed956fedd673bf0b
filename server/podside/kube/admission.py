"""What refused a request the API server authenticated: RBAC, Pod Security admission, an
admission webhook or a ResourceQuota, told apart by the Status message each one writes (as
the real API server words them), so that podside names what refused it and says what to do.

Pure: `classify` reads a message, `config.api_errors` turns the refusal into one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RBAC = "rbac"
POD_SECURITY = "pod-security"
WEBHOOK = "webhook"
QUOTA = "quota"
IMAGE = "image"  # the node could not pull the image (a container status, not an API answer)

# pods "x" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (...)
_POD_SECURITY = re.compile(r'violates PodSecurity "(?P<policy>[^"]+)": (?P<detail>.+)', re.S)
# admission webhook "validate.kyverno.svc-fail" denied the request: ...
_WEBHOOK = re.compile(
    r'admission webhook "(?P<name>[^"]+)" denied the request(?::\s*(?P<detail>.+))?', re.S
)
# pods "x" is forbidden: exceeded quota: compute, requested: ..., used: ..., limited: ...
# pods "x" is forbidden: failed quota: compute: must specify limits.cpu for: agent
_QUOTA = re.compile(r"(?:exceeded|failed) quota: (?P<name>[^,:]+)[,:]\s*(?P<detail>.+)", re.S)


@dataclass(frozen=True)
class Refusal:
    """An admission refusal: `cause` (one of the names above), `by` (what refused, for a
    sentence's subject) and `detail` (the reason it gave)."""

    cause: str
    by: str
    detail: str


def _one_line(text: str) -> str:
    return " ".join(text.split())


def classify(message: str) -> Refusal | None:
    """The admission refusal `message` reports, or None (an RBAC denial or anything else)."""
    if found := _POD_SECURITY.search(message):
        return Refusal(
            POD_SECURITY,
            f'Pod Security admission ("{found["policy"]}")',
            _one_line(found["detail"]),
        )
    if found := _WEBHOOK.search(message):
        return Refusal(
            WEBHOOK,
            f'the admission webhook "{found["name"]}"',
            _one_line(found["detail"] or "no reason given"),
        )
    if found := _QUOTA.search(message):
        return Refusal(
            QUOTA, f'the ResourceQuota "{found["name"].strip()}"', _one_line(found["detail"])
        )
    return None


def default_advice(cause: str) -> str:
    """What to do about a refusal when the caller has nothing more specific to say."""
    if cause == POD_SECURITY:
        return (
            "ask your cluster admin for a namespace whose pod-security.kubernetes.io/enforce "
            "label allows it"
        )
    if cause == WEBHOOK:
        return "ask your cluster admin for an exception in the policy behind that webhook"
    if cause == QUOTA:
        return "free some of the namespace's quota or ask for more"
    return ""


def pod_security_advice_for_agent(namespace: str) -> str:
    """Why an agent in a target pod needs more than baseline, and the two ways on."""
    return (
        "the agent needs NET_ADMIN (steal) and NET_RAW (mirror), which only the privileged "
        f"level allows: ask your cluster admin to label namespace {namespace} "
        "pod-security.kubernetes.io/enforce=privileged, or use --targetless for outgoing "
        "traffic and DNS only"
    )
