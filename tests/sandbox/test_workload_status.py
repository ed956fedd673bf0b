"""Workloads come back from create with the status counters a real API server never omits."""

from __future__ import annotations

from typing import Any

from kubernetes import client


def _template(name: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "300"]}]},
    }


def test_created_workloads_carry_their_status_counters(apps: Any, namespace: str) -> None:
    selector = {"matchLabels": {"app": "w"}}
    replicaset = apps.create_namespaced_replica_set(
        namespace,
        {
            "metadata": {"name": "rs"},
            "spec": {"replicas": 0, "selector": selector, "template": _template("w")},
        },
    )
    statefulset = apps.create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {"name": "sts"},
            "spec": {
                "replicas": 0,
                "serviceName": "sts",
                "selector": selector,
                "template": _template("w"),
            },
        },
    )
    daemonset = apps.create_namespaced_daemon_set(
        namespace,
        {"metadata": {"name": "ds"}, "spec": {"selector": selector, "template": _template("w")}},
    )
    assert isinstance(replicaset, client.V1ReplicaSet) and replicaset.status.replicas == 0
    assert isinstance(statefulset, client.V1StatefulSet) and statefulset.status.replicas == 0
    assert isinstance(daemonset, client.V1DaemonSet)
    assert daemonset.status.number_ready == 0 and daemonset.status.desired_number_scheduled == 0
