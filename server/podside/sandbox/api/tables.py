"""Server-side printing: the `meta.k8s.io/v1 Table` that `kubectl get` asks for, with the
same columns the real API server prints for each kind."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from podside.sandbox.api.resources import Resource
from podside.sandbox.api.selectors import selector_to_string
from podside.sandbox.api.store import Object

Column = tuple[str, str, int]  # name, type, priority (1: only with -o wide)
Row = list[Any]


def age(timestamp: str | None) -> str:
    """kubectl's short duration: 42s, 5m10s, 3h, 2d."""
    if not timestamp:
        return "<unknown>"
    created = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - created).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}h"
    return f"{hours // 24}d"


def _pod_status(pod: Object) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            return str(state["waiting"]["reason"])
        if "terminated" in state and status.get("phase") not in ("Succeeded", "Failed"):
            return str(state["terminated"].get("reason") or "Error")
    if status.get("phase") == "Succeeded":
        return "Completed"
    if status.get("phase") == "Failed":
        return "Error"
    return str(status.get("phase") or "Pending")


def _pod_row(pod: Object) -> Row:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    ready = sum(1 for status in statuses if status.get("ready"))
    restarts = sum(int(status.get("restartCount", 0)) for status in statuses)
    return [
        f"{ready}/{len(pod['spec']['containers'])}",
        _pod_status(pod),
        restarts,
        age(pod["metadata"].get("creationTimestamp")),
        (pod.get("status") or {}).get("podIP") or "<none>",
        pod["spec"].get("nodeName") or "<none>",
        "<none>",
        "<none>",
    ]


def _containers(obj: Object) -> tuple[str, str]:
    containers = obj["spec"]["template"]["spec"]["containers"]
    return ",".join(c["name"] for c in containers), ",".join(c["image"] for c in containers)


def _deployment_row(obj: Object) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [
        f"{status.get('readyReplicas', 0)}/{obj['spec'].get('replicas', 1)}",
        status.get("updatedReplicas", 0),
        status.get("availableReplicas", 0),
        age(obj["metadata"].get("creationTimestamp")),
        names,
        images,
        selector_to_string(obj["spec"].get("selector") or {}),
    ]


def _replicaset_row(obj: Object) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [
        obj["spec"].get("replicas", 1),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age(obj["metadata"].get("creationTimestamp")),
        names,
        images,
        selector_to_string(obj["spec"].get("selector") or {}),
    ]


def _statefulset_row(obj: Object) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [
        f"{status.get('readyReplicas', 0)}/{obj['spec'].get('replicas', 1)}",
        age(obj["metadata"].get("creationTimestamp")),
        names,
        images,
    ]


def _daemonset_row(obj: Object) -> Row:
    status = obj.get("status") or {}
    names, images = _containers(obj)
    return [
        status.get("desiredNumberScheduled", 0),
        status.get("currentNumberScheduled", 0),
        status.get("numberReady", 0),
        status.get("updatedNumberScheduled", 0),
        status.get("numberAvailable", 0),
        "<none>",
        age(obj["metadata"].get("creationTimestamp")),
        names,
        images,
        selector_to_string(obj["spec"].get("selector") or {}),
    ]


def _job_row(obj: Object) -> Row:
    status = obj.get("status") or {}
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    state = (
        "Complete"
        if conditions.get("Complete") == "True"
        else "Failed"
        if conditions.get("Failed") == "True"
        else "Running"
    )
    names, images = _containers(obj)
    return [
        state,
        f"{status.get('succeeded', 0)}/{obj['spec'].get('completions', 1)}",
        "",
        age(obj["metadata"].get("creationTimestamp")),
        names,
        images,
    ]


def _service_row(obj: Object) -> Row:
    spec = obj["spec"]
    ports = ",".join(f"{p['port']}/{p.get('protocol', 'TCP')}" for p in spec.get("ports") or [])
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items()))
    return [
        spec.get("type", "ClusterIP"),
        spec.get("clusterIP", ""),
        "<none>",
        ports or "<none>",
        age(obj["metadata"].get("creationTimestamp")),
        selector or "<none>",
    ]


def _endpoints_row(obj: Object) -> Row:
    endpoints = [
        f"{address['ip']}:{port['port']}"
        for subset in obj.get("subsets") or []
        for address in subset.get("addresses") or []
        for port in subset.get("ports") or []
    ]
    return [",".join(endpoints) or "<none>", age(obj["metadata"].get("creationTimestamp"))]


def _namespace_row(obj: Object) -> Row:
    return [
        (obj.get("status") or {}).get("phase", "Active"),
        age(obj["metadata"].get("creationTimestamp")),
    ]


def _node_row(obj: Object) -> Row:
    return [
        "Ready",
        "<none>",
        age(obj["metadata"].get("creationTimestamp")),
        obj["status"]["nodeInfo"]["kubeletVersion"],
    ]


def _data_row(obj: Object) -> Row:
    return [
        len(obj.get("data") or {}) + len(obj.get("binaryData") or {}),
        age(obj["metadata"].get("creationTimestamp")),
    ]


def _secret_row(obj: Object) -> Row:
    return [
        obj.get("type", "Opaque"),
        len(obj.get("data") or {}),
        age(obj["metadata"].get("creationTimestamp")),
    ]


def _default_row(obj: Object) -> Row:
    return [age(obj["metadata"].get("creationTimestamp"))]


_AGE: Column = ("Age", "string", 0)
_WORKLOAD_WIDE: list[Column] = [
    ("Containers", "string", 1),
    ("Images", "string", 1),
    ("Selector", "string", 1),
]

TABLES: dict[str, tuple[list[Column], Callable[[Object], Row]]] = {
    "pods": (
        [
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            _AGE,
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        _pod_row,
    ),
    "deployments": (
        [
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            _AGE,
            *_WORKLOAD_WIDE,
        ],
        _deployment_row,
    ),
    "replicasets": (
        [
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            _AGE,
            *_WORKLOAD_WIDE,
        ],
        _replicaset_row,
    ),
    "statefulsets": (
        [("Ready", "string", 0), _AGE, ("Containers", "string", 1), ("Images", "string", 1)],
        _statefulset_row,
    ),
    "daemonsets": (
        [
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            _AGE,
            *_WORKLOAD_WIDE,
        ],
        _daemonset_row,
    ),
    "jobs": (
        [
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            _AGE,
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        _job_row,
    ),
    "services": (
        [
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            _AGE,
            ("Selector", "string", 1),
        ],
        _service_row,
    ),
    "endpoints": ([("Endpoints", "string", 0), _AGE], _endpoints_row),
    "namespaces": ([("Status", "string", 0), _AGE], _namespace_row),
    "nodes": (
        [("Status", "string", 0), ("Roles", "string", 0), _AGE, ("Version", "string", 0)],
        _node_row,
    ),
    "configmaps": ([("Data", "integer", 0), _AGE], _data_row),
    "secrets": ([("Type", "string", 0), ("Data", "integer", 0), _AGE], _secret_row),
}


def _partial_metadata(obj: Object) -> Object:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def to_table(
    resource: Resource, objects: list[Object], resource_version: str, include_object: str
) -> Object:
    """A Table for `objects`; `include_object` is the includeObject parameter (default Metadata)."""
    columns, row = TABLES.get(resource.plural, ([_AGE], _default_row))
    definitions = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name must be unique within a namespace.",
            "priority": 0,
        }
    ]
    definitions += [
        {"name": name, "type": kind, "format": "", "description": name, "priority": priority}
        for name, kind, priority in columns
    ]
    rows = []
    for obj in objects:
        entry: Object = {"cells": [obj["metadata"]["name"], *row(obj)]}
        if include_object == "Object":
            entry["object"] = obj
        elif include_object != "None":
            entry["object"] = _partial_metadata(obj)
        rows.append(entry)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
