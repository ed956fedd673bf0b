"""What the API server does to an object before it is stored: defaults, validation, and the
split between spec (users write it) and status (the node and controllers write it)."""

from __future__ import annotations

import re
from typing import Any

from podside.sandbox.api.errors import ApiError, invalid
from podside.sandbox.api.resources import Resource, resource
from podside.sandbox.api.selectors import match_label_selector
from podside.sandbox.api.store import Object, Store
from podside.sandbox.layout import NODE_NAME, SERVICE_CIDR

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
# Resources whose names become DNS labels (pod hostnames, service names) are stricter.
_LABEL_NAMED = {"namespaces", "services"}
# The API server validates ephemeral containers against a list of allowed fields; these are
# the container fields it leaves out, in the order of the Go struct (the order of its errors):
# an ephemeral container has no resources, ports, probes or lifecycle hooks.
EPHEMERAL_CONTAINER_FORBIDDEN_FIELDS = (
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
)
WORKLOADS = {"deployments", "replicasets", "statefulsets", "daemonsets", "jobs"}

Cause = tuple[str, str, str]


def _required(field: str) -> Cause:
    return ("FieldValueRequired", field, "Required value")


def validate_name(resource: Resource, obj: Object) -> list[Cause]:
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") or ""
    if not name:
        if metadata.get("generateName"):
            return []
        return [
            (
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        ]
    pattern, message = (
        (_LABEL, _LABEL_MESSAGE)
        if resource.plural in _LABEL_NAMED
        else (_SUBDOMAIN, _SUBDOMAIN_MESSAGE)
    )
    if not pattern.match(name) or len(name) > 253:
        return [("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": {message}')]
    return []


def _validate_containers(containers: Any, path: str, *, required: bool) -> list[Cause]:
    if not containers:
        return [_required(path)] if required else []
    causes: list[Cause] = []
    seen: set[str] = set()
    for index, container in enumerate(containers):
        where = f"{path}[{index}]"
        name = container.get("name") or ""
        if not name:
            causes.append(_required(f"{where}.name"))
        elif name in seen:
            causes.append(("FieldValueDuplicate", f"{where}.name", f'Duplicate value: "{name}"'))
        seen.add(name)
        if not container.get("image"):
            causes.append(_required(f"{where}.image"))
    return causes


def validate_pod_spec(spec: Any, path: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [_required(path)]
    causes = _validate_containers(spec.get("containers"), f"{path}.containers", required=True)
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        causes.append(
            (
                "FieldValueNotSupported",
                f"{path}.restartPolicy",
                f'Unsupported value: "{policy}": supported values: "Always", "OnFailure", "Never"',
            )
        )
    return causes


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for container in spec.get("containers") or []:
        container.setdefault(
            "imagePullPolicy",
            "Always"
            if container.get("image", "").endswith(":latest")
            or ":" not in container.get("image", "")
            else "IfNotPresent",
        )
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")
        for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
            probe = container.get(probe_name)
            if probe:
                probe.setdefault("timeoutSeconds", 1)
                probe.setdefault("periodSeconds", 10)
                probe.setdefault("successThreshold", 1)
                probe.setdefault("failureThreshold", 3)
                if "httpGet" in probe:
                    probe["httpGet"].setdefault("path", "/")
                    probe["httpGet"].setdefault("scheme", "HTTP")


class Registry:
    """Per-resource create/update rules; holds the store for lookups such as free ClusterIPs."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def prepare_create(self, resource: Resource, obj: Object) -> None:
        causes = validate_name(resource, obj)
        plural = resource.plural
        obj.setdefault("metadata", {}).setdefault("labels", obj["metadata"].get("labels") or {})
        if not obj["metadata"]["labels"]:
            del obj["metadata"]["labels"]
        if plural == "pods":
            causes += validate_pod_spec(obj.get("spec"), "spec")
            if not causes:
                default_pod_spec(obj["spec"])
                obj["spec"].setdefault("nodeName", NODE_NAME)
                obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif plural in WORKLOADS:
            causes += self._validate_workload(resource, obj)
        elif plural == "services":
            causes += self._prepare_service(obj)
        elif plural == "namespaces":
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
                "metadata"
            ]["name"]
        elif plural == "secrets":
            obj.setdefault("type", "Opaque")
        if causes:
            raise invalid(
                resource.kind,
                resource.group,
                obj["metadata"].get("name") or obj["metadata"].get("generateName", ""),
                causes,
            )

    def prepare_update(
        self, resource: Resource, obj: Object, old: Object, subresource: str
    ) -> None:
        """Keep what this kind of write may not change: status on a main write, spec on a
        status write, everything but ephemeral containers on an ephemeralcontainers write."""
        name = old["metadata"]["name"]
        if subresource == "status":
            status = obj.get("status")
            obj.clear()
            obj.update(old)
            obj["status"] = status
            return
        if subresource == "ephemeralcontainers":
            self._check_ephemeral_containers(obj, old)
            ephemeral = obj["spec"].get("ephemeralContainers") or []
            obj.clear()
            obj.update(old)
            obj["spec"]["ephemeralContainers"] = ephemeral
            return
        if "status" in old:
            obj["status"] = old["status"]
        else:
            obj.pop("status", None)
        causes = validate_name(resource, obj)
        if resource.plural == "pods":
            causes += self._check_pod_update(obj, old)
        elif resource.plural in WORKLOADS:
            causes += self._validate_workload(resource, obj)
        elif resource.plural == "services":
            spec = obj.setdefault("spec", {})
            old_ip = old["spec"].get("clusterIP")
            if spec.get("clusterIP") not in (None, "", old_ip):
                causes.append(
                    (
                        "FieldValueInvalid",
                        "spec.clusterIP",
                        f'Invalid value: "{spec["clusterIP"]}": field is immutable',
                    )
                )
            spec["clusterIP"] = old_ip
            spec["clusterIPs"] = old["spec"].get("clusterIPs", [old_ip])
            self._default_service_ports(spec)
        if causes:
            raise invalid(resource.kind, resource.group, name, causes)

    def _check_pod_update(self, obj: Object, old: Object) -> list[Cause]:
        # A real API server allows only image, activeDeadlineSeconds and tolerations changes.
        new_spec, old_spec = obj.get("spec") or {}, old["spec"]
        comparable = {
            **new_spec,
            "containers": [{**c, "image": None} for c in new_spec.get("containers") or []],
        }
        original = {
            **old_spec,
            "containers": [{**c, "image": None} for c in old_spec.get("containers") or []],
        }
        if comparable != original:
            return [
                (
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                )
            ]
        return []

    def _check_ephemeral_containers(self, obj: Object, old: Object) -> None:
        name = old["metadata"]["name"]
        new_list = (obj.get("spec") or {}).get("ephemeralContainers") or []
        old_list = old["spec"].get("ephemeralContainers") or []
        new_by_name = {c.get("name"): c for c in new_list}
        causes: list[Cause] = []
        for index, existing in enumerate(old_list):
            if new_by_name.get(existing["name"]) != existing:
                causes.append(
                    (
                        "FieldValueForbidden",
                        f"spec.ephemeralContainers[{index}]",
                        f'Forbidden: existing ephemeral containers "{existing["name"]}" may not be removed or changed',
                    )
                )
        taken = {c["name"] for c in old["spec"].get("containers") or []} | {
            c["name"] for c in old["spec"].get("initContainers") or []
        }
        causes += _validate_containers(new_list, "spec.ephemeralContainers", required=False)
        for index, container in enumerate(new_list):
            where = f"spec.ephemeralContainers[{index}]"
            if container.get("name") in taken:
                causes.append(
                    (
                        "FieldValueDuplicate",
                        f"{where}.name",
                        f'Duplicate value: "{container["name"]}"',
                    )
                )
            for forbidden in EPHEMERAL_CONTAINER_FORBIDDEN_FIELDS:
                if container.get(forbidden):
                    causes.append(
                        (
                            "FieldValueForbidden",
                            f"{where}.{forbidden}",
                            "Forbidden: cannot be set for an Ephemeral Container",
                        )
                    )
            for mount_index, mount in enumerate(container.get("volumeMounts") or []):
                for sub_path in ("subPath", "subPathExpr"):
                    if mount.get(sub_path):
                        causes.append(
                            (
                                "FieldValueForbidden",
                                f"{where}.volumeMounts[{mount_index}].{sub_path}",
                                "Forbidden: cannot be set for an Ephemeral Container",
                            )
                        )
            target = container.get("targetContainerName")
            if target and target not in taken:
                causes.append(
                    ("FieldValueNotFound", f"{where}.targetContainerName", f'Not found: "{target}"')
                )
            container.setdefault("imagePullPolicy", "IfNotPresent")
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault("resources", {})
        if causes:
            raise invalid("Pod", "", name, causes)

    def _validate_workload(self, resource: Resource, obj: Object) -> list[Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [_required("spec")]
        template = spec.get("template")
        causes: list[Cause] = []
        if not isinstance(template, dict):
            return [_required("spec.template")]
        causes += validate_pod_spec(template.get("spec"), "spec.template.spec")
        template_labels = (template.get("metadata") or {}).get("labels") or {}
        if resource.plural == "jobs":
            selector = spec.get("selector")
            if not selector:
                # Jobs get a generated selector on their own uid label.
                spec["manualSelector"] = False
            pod_spec = template.get("spec")
            if isinstance(pod_spec, dict) and pod_spec.get("restartPolicy") not in (
                "OnFailure",
                "Never",
            ):
                # As on a real server: a job's pods must not restart in place forever.
                causes.append(
                    (
                        "FieldValueRequired",
                        "spec.template.spec.restartPolicy",
                        'Required value: valid values: "OnFailure", "Never"',
                    )
                )
        else:
            selector = spec.get("selector")
            if not selector:
                causes.append(_required("spec.selector"))
            elif not match_label_selector(selector, template_labels):
                causes.append(
                    (
                        "FieldValueInvalid",
                        "spec.template.metadata.labels",
                        f"Invalid value: {template_labels!r}: `selector` does not match template `labels`",
                    )
                )
        if causes:
            return causes
        default_pod_spec(template["spec"])
        if resource.plural in ("deployments", "replicasets", "statefulsets"):
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
        if resource.plural == "deployments":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
                },
            )
        if resource.plural == "statefulsets":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("serviceName", "")
        if resource.plural == "jobs":
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
            spec.setdefault("backoffLimit", 6)
        obj.setdefault("status", {})
        return []

    def _prepare_service(self, obj: Object) -> list[Cause]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [_required("spec")]
        causes: list[Cause] = []
        if not spec.get("ports"):
            causes.append(_required("spec.ports"))
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec.get("clusterIP") == "None":
            spec["clusterIPs"] = ["None"]
        elif spec.get("clusterIP"):
            wanted = spec["clusterIP"]
            if wanted in self._used_cluster_ips():
                causes.append(
                    (
                        "FieldValueInvalid",
                        "spec.clusterIPs",
                        f'Invalid value: ["{wanted}"]: failed to allocate IP {wanted}: provided IP is already allocated',
                    )
                )
            spec["clusterIPs"] = [wanted]
        else:
            spec["clusterIP"] = self._free_cluster_ip()
            spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        self._default_service_ports(spec)
        obj["status"] = {"loadBalancer": {}}
        return causes

    @staticmethod
    def _default_service_ports(spec: dict[str, Any]) -> None:
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))

    def _used_cluster_ips(self) -> set[str]:
        return {
            svc["spec"].get("clusterIP", "") for svc in self.store.list(resource("", "services"))
        }

    def _free_cluster_ip(self) -> str:
        used = self._used_cluster_ips()
        # The first ten addresses are kept for kubernetes (.1) and kube-dns (.10).
        for address in list(SERVICE_CIDR.hosts())[10:]:
            if str(address) not in used:
                return str(address)
        raise ApiError(500, "InternalError", f"no free ClusterIP in {SERVICE_CIDR}")
