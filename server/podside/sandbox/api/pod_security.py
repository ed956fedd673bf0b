"""Pod Security admission as the real API server enforces it: a namespace's
`pod-security.kubernetes.io/enforce` label (`privileged`, `baseline` or `restricted`, with
`enforce-version`, default `latest`) refuses a pod on create, and on an update of its
`ephemeralcontainers` subresource, with 403 Forbidden and the real plugin's message, e.g.

    pods "web" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities
    (container "agent" must not include "NET_ADMIN", "NET_RAW" in
    securityContext.capabilities.add)

Only the checks a podside spec or the sandbox's workloads can meet are here (the Pod Security
Standards have more: AppArmor, SELinux, /proc mount, sysctls, Windows host process, baseline
seccomp, host ports), each as the latest version words it; see CHECKS. As in the real plugin,
a level's failing checks are listed in one message, baseline's first, each in the order of the
check's identifier, and restricted replaces baseline's capabilities and volume checks with its
own. The warn and audit labels are not implemented: they never refuse anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from podside.sandbox.api.errors import ApiError

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION_LABEL = "pod-security.kubernetes.io/enforce-version"
LEVELS = ("privileged", "baseline", "restricted")

# What baseline lets a container add (the Pod Security Standards' list; NET_RAW is not in it).
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)

Pod = dict[str, Any]


@dataclass(frozen=True)
class Violation:
    reason: str  # e.g. "non-default capabilities"
    detail: str  # e.g. 'container "agent" must not include "NET_ADMIN" in ...'


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every container of the pod, in the plugin's order: init, regular, ephemeral."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _security(container: dict[str, Any]) -> dict[str, Any]:
    return container.get("securityContext") or {}


def _pod_security(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("securityContext") or {}


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{name}"' for name in names)


def _containers_phrase(names: list[str]) -> str:
    return f"{'container' if len(names) == 1 else 'containers'} {_quoted(names)}"


def _capabilities_baseline(spec: dict[str, Any]) -> Violation | None:
    bad: list[str] = []
    added: set[str] = set()
    for container in _containers(spec):
        extra = [
            capability
            for capability in (_security(container).get("capabilities") or {}).get("add") or []
            if capability not in BASELINE_CAPABILITIES
        ]
        if extra:
            bad.append(container["name"])
            added.update(extra)
    if not bad:
        return None
    return Violation(
        "non-default capabilities",
        f"{_containers_phrase(bad)} must not include {_quoted(sorted(added))} in "
        "securityContext.capabilities.add",
    )


def _host_namespaces(spec: dict[str, Any]) -> Violation | None:
    used = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    return Violation("host namespaces", ", ".join(used)) if used else None


def _host_path_volumes(spec: dict[str, Any]) -> Violation | None:
    names = [volume["name"] for volume in spec.get("volumes") or [] if "hostPath" in volume]
    if not names:
        return None
    return Violation(
        "hostPath volumes", f"{'volume' if len(names) == 1 else 'volumes'} {_quoted(names)}"
    )


def _privileged(spec: dict[str, Any]) -> Violation | None:
    bad = [c["name"] for c in _containers(spec) if _security(c).get("privileged")]
    if not bad:
        return None
    return Violation(
        "privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true"
    )


def _allow_privilege_escalation(spec: dict[str, Any]) -> Violation | None:
    bad = [
        c["name"]
        for c in _containers(spec)
        if _security(c).get("allowPrivilegeEscalation") is not False
    ]
    if not bad:
        return None
    return Violation(
        "allowPrivilegeEscalation != false",
        f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false",
    )


def _capabilities_restricted(spec: dict[str, Any]) -> Violation | None:
    missing_drop: list[str] = []
    adding: list[str] = []
    added: set[str] = set()
    for container in _containers(spec):
        capabilities = _security(container).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            missing_drop.append(container["name"])
        extra = [c for c in capabilities.get("add") or [] if c != "NET_BIND_SERVICE"]
        if extra:
            adding.append(container["name"])
            added.update(extra)
    details = []
    if missing_drop:
        details.append(
            f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]'
        )
    if adding:
        details.append(
            f"{_containers_phrase(adding)} must not include {_quoted(sorted(added))} in "
            "securityContext.capabilities.add"
        )
    return Violation("unrestricted capabilities", "; ".join(details)) if details else None


def _restricted_volumes(spec: dict[str, Any]) -> Violation | None:
    bad = []
    for volume in spec.get("volumes") or []:
        kinds = [key for key in volume if key != "name"]
        if kinds and kinds[0] not in RESTRICTED_VOLUME_TYPES:
            bad.append(f'volume "{volume["name"]}" uses restricted volume type "{kinds[0]}"')
    return Violation("restricted volume types", ", ".join(bad)) if bad else None


def _explicit_and_implicit(
    spec: dict[str, Any], field: str, good: Callable[[Any], bool]
) -> tuple[bool, bool, list[str], list[str]]:
    """For a field a container inherits from the pod: (the pod set it, to a good value),
    containers setting a bad value, containers inheriting no good one."""
    pod_value = _pod_security(spec).get(field)
    pod_set, pod_good = pod_value is not None, pod_value is not None and good(pod_value)
    explicit, implicit = [], []
    for container in _containers(spec):
        value = _security(container).get(field)
        if value is not None:
            if not good(value):
                explicit.append(container["name"])
        elif not pod_good:
            implicit.append(container["name"])
    return pod_set, pod_good, explicit, implicit


def _run_as_non_root(spec: dict[str, Any]) -> Violation | None:
    pod_set, pod_good, explicit, implicit = _explicit_and_implicit(
        spec, "runAsNonRoot", lambda value: value is True
    )
    setters = ["pod"] if pod_set and not pod_good else []
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return Violation(
            "runAsNonRoot != true",
            f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false",
        )
    if implicit:
        return Violation(
            "runAsNonRoot != true",
            f"pod or {_containers_phrase(implicit)} must set securityContext.runAsNonRoot=true",
        )
    return None


def _run_as_user(spec: dict[str, Any]) -> Violation | None:
    setters = ["pod"] if _pod_security(spec).get("runAsUser") == 0 else []
    bad = [c["name"] for c in _containers(spec) if _security(c).get("runAsUser") == 0]
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return Violation("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0")


def _seccomp_type(profile: Any) -> Any:
    return (profile or {}).get("type")


def _seccomp_profile_restricted(spec: dict[str, Any]) -> Violation | None:
    valid = ("RuntimeDefault", "Localhost")
    pod_set, pod_good, explicit, implicit = _explicit_and_implicit(
        spec, "seccompProfile", lambda profile: _seccomp_type(profile) in valid
    )
    details = []
    if pod_set and not pod_good:
        pod_type = _seccomp_type(_pod_security(spec).get("seccompProfile"))
        details.append(f'pod must not set securityContext.seccompProfile.type to "{pod_type}"')
    if explicit:
        types = sorted(
            {
                str(_seccomp_type(_security(c).get("seccompProfile")))
                for c in _containers(spec)
                if c["name"] in explicit
            }
        )
        details.append(
            f"{_containers_phrase(explicit)} must not set securityContext.seccompProfile.type "
            f"to {_quoted(types)}"
        )
    if implicit:
        details.append(
            f"pod or {_containers_phrase(implicit)} must set securityContext.seccompProfile.type "
            'to "RuntimeDefault" or "Localhost"'
        )
    return Violation("seccompProfile", "; ".join(details)) if details else None


Check = Callable[[dict[str, Any]], Violation | None]
# By level, each list in the order of the real checks' identifiers (capabilities_baseline,
# hostNamespaces, hostPathVolumes, privileged; allowPrivilegeEscalation,
# capabilities_restricted, restrictedVolumes, runAsNonRoot, runAsUser,
# seccompProfile_restricted).
BASELINE_CHECKS: tuple[Check, ...] = (
    _capabilities_baseline,
    _host_namespaces,
    _host_path_volumes,
    _privileged,
)
RESTRICTED_CHECKS: tuple[Check, ...] = (
    _allow_privilege_escalation,
    _capabilities_restricted,
    _restricted_volumes,
    _run_as_non_root,
    _run_as_user,
    _seccomp_profile_restricted,
)
# Restricted's own checks that take the place of a baseline check.
_REPLACED_AT_RESTRICTED = (_capabilities_baseline, _host_path_volumes)
CHECKS: dict[str, tuple[Check, ...]] = {
    "privileged": (),
    "baseline": BASELINE_CHECKS,
    "restricted": tuple(c for c in BASELINE_CHECKS if c not in _REPLACED_AT_RESTRICTED)
    + RESTRICTED_CHECKS,
}


def enforced_policy(namespace: dict[str, Any]) -> tuple[str, str] | None:
    """(level, version) the namespace's labels enforce, None for none or `privileged`. An
    unknown level is enforced as restricted, as the real plugin does with a bad label."""
    labels = (namespace.get("metadata") or {}).get("labels") or {}
    level = labels.get(ENFORCE_LABEL)
    if level is None or level == "privileged":
        return None
    if level not in LEVELS:
        level = "restricted"
    return level, labels.get(ENFORCE_VERSION_LABEL) or "latest"


def violations(level: str, spec: dict[str, Any]) -> list[Violation]:
    return [found for check in CHECKS[level] if (found := check(spec)) is not None]


def admit_pod(namespace: dict[str, Any], pod: Pod) -> None:
    """Raise the real plugin's 403 when the namespace's enforced level refuses `pod`."""
    policy = enforced_policy(namespace)
    if policy is None:
        return
    level, version = policy
    found = violations(level, pod.get("spec") or {})
    if not found:
        return
    name = pod["metadata"].get("name") or ""
    listed = ", ".join(f"{v.reason} ({v.detail})" for v in found)
    raise ApiError(
        403,
        "Forbidden",
        f'pods "{name}" is forbidden: violates PodSecurity "{level}:{version}": {listed}',
        {"name": name, "kind": "pods"},
    )
