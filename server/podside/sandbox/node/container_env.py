"""A container's environment as the kubelet and the runtime build it: HOSTNAME, the image's
variables, service links, envFrom, env with valueFrom, and `$(VAR)` expansion in values,
command and args. Nothing of the node's own environment gets in, as in a real container."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from podside.sandbox.node.images import image_env
from podside.sandbox.node.pod_files import MissingReference

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")

Lookup = Callable[[str, str], dict[str, Any] | None]


def expand(text: str, env: dict[str, str]) -> str:
    """`$(NAME)` becomes NAME's value when defined, `$$` becomes `$`, the rest stays."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _REFERENCE.sub(replace, text)


def service_links(services: list[dict[str, Any]]) -> dict[str, str]:
    """Docker-link style variables for each service in the pod's namespace."""
    env: dict[str, str] = {}
    for service in services:
        spec = service.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not cluster_ip or cluster_ip == "None" or not ports:
            continue
        prefix = service["metadata"]["name"].upper().replace("-", "_")
        env[f"{prefix}_SERVICE_HOST"] = cluster_ip
        env[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        for port in ports:
            protocol = port.get("protocol", "TCP")
            if port.get("name"):
                env[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(
                    port["port"]
                )
            base = f"{prefix}_PORT_{port['port']}_{protocol}"
            env[base] = f"{protocol.lower()}://{cluster_ip}:{port['port']}"
            env[f"{base}_PROTO"] = protocol.lower()
            env[f"{base}_PORT"] = str(port["port"])
            env[f"{base}_ADDR"] = cluster_ip
        env[f"{prefix}_PORT"] = (
            f"{ports[0].get('protocol', 'TCP').lower()}://{cluster_ip}:{ports[0]['port']}"
        )
    return env


def linked_services(pod: dict[str, Any], services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The services a container gets variables for, as the kubelet picks them from
    `services`: the control plane's `kubernetes` service in `default` always (even with
    enableServiceLinks false), and those of the pod's own namespace unless links are off,
    a same-named one there winning."""
    namespace = pod["metadata"]["namespace"]
    links = pod["spec"].get("enableServiceLinks", True)
    chosen: dict[str, dict[str, Any]] = {}
    for service in services:
        metadata = service["metadata"]
        if metadata["namespace"] == "default" and metadata["name"] == "kubernetes":
            chosen.setdefault(metadata["name"], service)
    for service in services:
        if service["metadata"]["namespace"] == namespace and links:
            chosen[service["metadata"]["name"]] = service
    return list(chosen.values())


def _field(pod: dict[str, Any], path: str) -> str:
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return str((pod["metadata"].get(match.group(1)) or {}).get(match.group(2), ""))
    value: Any = pod
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def _config_value(lookup: Lookup, kind: str, reference: dict[str, Any]) -> str | None:
    found = lookup(kind, reference["name"])
    singular = "configmap" if kind == "configmaps" else "secret"
    if found is None:
        if reference.get("optional"):
            return None
        raise MissingReference(f'{singular} "{reference["name"]}" not found')
    if kind == "secrets":
        data = {
            key: base64.b64decode(value).decode()
            for key, value in (found.get("data") or {}).items()
        }
    else:
        data = dict(found.get("data") or {})
    if reference["key"] not in data:
        if reference.get("optional"):
            return None
        raise MissingReference(
            f"couldn't find key {reference['key']} in {singular} {found['metadata']['namespace']}/{reference['name']}"
        )
    return data[reference["key"]]


def container_env(
    pod: dict[str, Any], container: dict[str, Any], services: list[dict[str, Any]], lookup: Lookup
) -> dict[str, str]:
    """`services`: those of the pod's namespace and the `kubernetes` service of `default`.
    Raises MissingReference when a required configMap or secret is absent."""
    # containerd sets HOSTNAME, then the image's variables; the kubelet's come on top.
    env = {
        "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
        **image_env(container.get("image", "")),
    }
    env.update(service_links(linked_services(pod, services)))
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            found = lookup("configmaps", source["configMapRef"]["name"])
            if found is None and not source["configMapRef"].get("optional"):
                raise MissingReference(f'configmap "{source["configMapRef"]["name"]}" not found')
            env.update(
                {prefix + key: value for key, value in ((found or {}).get("data") or {}).items()}
            )
        if "secretRef" in source:
            found = lookup("secrets", source["secretRef"]["name"])
            if found is None and not source["secretRef"].get("optional"):
                raise MissingReference(f'secret "{source["secretRef"]["name"]}" not found')
            env.update(
                {
                    prefix + key: base64.b64decode(value).decode()
                    for key, value in ((found or {}).get("data") or {}).items()
                }
            )
    for variable in container.get("env") or []:
        name = variable["name"]
        if "value" in variable:
            env[name] = expand(str(variable["value"]), env)
            continue
        source = variable.get("valueFrom") or {}
        value: str | None = ""
        if "fieldRef" in source:
            value = _field(pod, source["fieldRef"]["fieldPath"])
        elif "configMapKeyRef" in source:
            value = _config_value(lookup, "configmaps", source["configMapKeyRef"])
        elif "secretKeyRef" in source:
            value = _config_value(lookup, "secrets", source["secretKeyRef"])
        if value is not None:
            env[name] = value
    # runc gives a process without HOME the home of its user, root's here.
    env.setdefault("HOME", "/root")
    return env
