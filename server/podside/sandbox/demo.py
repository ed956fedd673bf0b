"""The objects every sandbox starts with: system namespaces and services, the node, and the
demo workloads (`blog` calling `auditor`, and `traffic` keeping the blog busy)."""

from __future__ import annotations

from typing import Any

from podside.sandbox.layout import (
    CLUSTER_DNS_IP,
    GATEWAY_IP,
    KUBERNETES_SERVICE_IP,
    NODE_NAME,
    SERVER_VERSION,
)

Manifest = tuple[str, str, dict[str, Any]]  # (group, plural, object)

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _http_probe(path: str, port: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
    }


def _deployment(
    name: str, image: str, port: int, env: list[dict[str, Any]], probes: bool
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image, "env": env}
    if port:
        container["ports"] = [{"name": "http", "containerPort": port}]
    if probes:
        container["readinessProbe"] = _http_probe("/healthz", "http", 2, 3)
        container["livenessProbe"] = _http_probe("/healthz", "http", 5, 3)
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 5},
            },
        },
    }


def _service(
    name: str,
    namespace: str,
    port: int,
    selector: dict[str, str] | None,
    cluster_ip: str | None = None,
    port_name: str = "http",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "ports": [
            {
                "name": port_name,
                "port": port,
                "targetPort": "http" if selector else port,
                "protocol": "TCP",
            }
        ]
    }
    if selector:
        spec["selector"] = selector
    if cluster_ip:
        spec["clusterIP"] = cluster_ip
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": spec,
    }


def node_object() -> dict[str, Any]:
    return {
        "metadata": {
            "name": NODE_NAME,
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"podCIDR": "198.18.0.0/17", "podCIDRs": ["198.18.0.0/17"]},
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": str(GATEWAY_IP)},
                {"type": "Hostname", "address": NODE_NAME},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
            "nodeInfo": {
                "kubeletVersion": SERVER_VERSION["gitVersion"],
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "podside://0.1.0",
            },
        },
    }


def system_objects() -> list[Manifest]:
    objects: list[Manifest] = [
        ("", "namespaces", {"metadata": {"name": name}}) for name in SYSTEM_NAMESPACES
    ]
    objects.append(("", "nodes", node_object()))
    objects.append(
        (
            "",
            "services",
            _service("kubernetes", "default", 443, None, str(KUBERNETES_SERVICE_IP), "https"),
        )
    )
    objects.append(
        ("", "services", _service("kube-dns", "kube-system", 53, None, str(CLUSTER_DNS_IP), "dns"))
    )
    return objects


def demo_workloads() -> list[Manifest]:
    return [
        (
            "apps",
            "deployments",
            _deployment("auditor", "podside/demo-auditor:0.1.0", 9000, [], probes=True),
        ),
        ("", "services", _service("auditor", "default", 9000, {"app": "auditor"})),
        (
            "apps",
            "deployments",
            _deployment(
                "blog",
                "podside/demo-blog:0.1.0",
                8080,
                [
                    {"name": "BLOG_TITLE", "value": "Staging blog"},
                    {"name": "AUDITOR_URL", "value": "http://auditor:9000"},
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                probes=True,
            ),
        ),
        ("", "services", _service("blog", "default", 8080, {"app": "blog"})),
        (
            "apps",
            "deployments",
            _deployment(
                "traffic",
                "podside/demo-traffic:0.1.0",
                0,
                [
                    {"name": "BLOG_URL", "value": "http://blog:8080"},
                ],
                probes=False,
            ),
        ),
    ]
