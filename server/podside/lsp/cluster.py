"""What the target picker shows: kubeconfig contexts, namespaces and workloads.

A stand-in with the official client until `podside.kube` provides `list_contexts`,
`list_namespaces` and `list_targets`; the signatures and result shapes match those, so the
switch is an import.
"""

from __future__ import annotations

from typing import Any

from podside.errors import PodsideError

# Workload kinds the picker offers, in the order it shows them.
_WORKLOAD_KINDS = ("deployment", "statefulset", "daemonset")


def _config() -> Any:
    """The client's kubeconfig module (untyped, hence Any)."""
    from kubernetes import config

    return config


def list_contexts(kubeconfig: str | None = None) -> tuple[list[str], str | None]:
    """The kubeconfig's context names and the current one."""
    config = _config()
    try:
        contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    except config.ConfigException as error:
        raise PodsideError(f"no usable kubeconfig: {error}") from None
    return [context["name"] for context in contexts], (current or {}).get("name")


def _api_client(context: str | None, kubeconfig: str | None) -> Any:
    config = _config()
    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context)
    except config.ConfigException as error:
        raise PodsideError(f"context {context!r}: {error}") from None


def _call(what: str, context: str | None, function: Any, *args: Any) -> Any:
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return function(*args, _request_timeout=10)
    except ApiException as error:
        raise PodsideError(
            f"listing {what} in context {context!r} failed: {error.status} {error.reason}"
        ) from None
    except (HTTPError, OSError) as error:
        raise PodsideError(
            f"cannot reach the cluster of context {context!r}: {type(error).__name__}"
        ) from None


def list_namespaces(context: str | None, kubeconfig: str | None = None) -> list[str]:
    from kubernetes import client

    core = client.CoreV1Api(_api_client(context, kubeconfig))
    namespaces = _call("namespaces", context, core.list_namespace)
    return sorted(item.metadata.name for item in namespaces.items)


def _containers(pod_spec: Any) -> tuple[list[str], list[int]]:
    names = [container.name for container in pod_spec.containers]
    ports = [
        port.container_port for container in pod_spec.containers for port in container.ports or []
    ]
    return names, ports


def list_targets(
    context: str | None,
    namespace: str | None,
    all_namespaces: bool = False,
    kubeconfig: str | None = None,
) -> list[dict[str, Any]]:
    """Workloads then pods, each as {kind, name, namespace, containers, ports}."""
    from kubernetes import client

    api_client = _api_client(context, kubeconfig)
    apps = client.AppsV1Api(api_client)
    core = client.CoreV1Api(api_client)
    namespace = namespace or "default"
    listers = {
        "deployment": (
            apps.list_deployment_for_all_namespaces,
            apps.list_namespaced_deployment,
        ),
        "statefulset": (
            apps.list_stateful_set_for_all_namespaces,
            apps.list_namespaced_stateful_set,
        ),
        "daemonset": (
            apps.list_daemon_set_for_all_namespaces,
            apps.list_namespaced_daemon_set,
        ),
        "pod": (core.list_pod_for_all_namespaces, core.list_namespaced_pod),
    }
    targets: list[dict[str, Any]] = []
    for kind in (*_WORKLOAD_KINDS, "pod"):
        every, namespaced = listers[kind]
        if all_namespaces:
            items = _call(f"{kind}s", context, every).items
        else:
            items = _call(f"{kind}s", context, namespaced, namespace).items
        for item in sorted(items, key=lambda item: (item.metadata.namespace, item.metadata.name)):
            spec = item.spec if kind == "pod" else item.spec.template.spec
            containers, ports = _containers(spec)
            targets.append(
                {
                    "kind": kind,
                    "name": item.metadata.name,
                    "namespace": item.metadata.namespace,
                    "containers": containers,
                    "ports": ports,
                }
            )
    return targets
