"""The sandbox API server, driven by the official Python client: objects, watch, errors."""

from __future__ import annotations

import json
import ssl
import time
import urllib.request
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.sandbox.conftest import pod_phase, run_pod, wait_for


def _status(error: ApiException) -> dict[str, Any]:
    return json.loads(error.body)  # type: ignore[no-any-return]


def test_demo_workloads_run_and_are_ready(core: Any, apps: Any) -> None:
    for name in ("blog", "auditor", "traffic"):
        wait_for(
            lambda name=name: (
                apps.read_namespaced_deployment(name, "default").status.ready_replicas == 1
            ),
            what=f"{name} ready",
        )
    pods = core.list_namespaced_pod("default", label_selector="app=blog").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.status.pod_ip.startswith("198.18.")
    assert pod.metadata.owner_references[0].kind == "ReplicaSet"
    assert "pod-template-hash" in pod.metadata.labels
    assert pod.status.container_statuses[0].ready is True
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"


def test_pod_create_get_list_delete(core: Any, namespace: str) -> None:
    created = run_pod(core, namespace, "sleeper", ["sleep", "300"])
    assert created.metadata.resource_version
    wait_for(lambda: pod_phase(core, namespace, "sleeper") == "Running", what="pod running")
    names = [
        p.metadata.name
        for p in core.list_namespaced_pod(namespace, field_selector="status.phase=Running").items
    ]
    assert names == ["sleeper"]
    core.delete_namespaced_pod("sleeper", namespace, grace_period_seconds=1)
    wait_for(lambda: not core.list_namespaced_pod(namespace).items, what="pod gone")


def test_watch_streams_added_modified_deleted(core: Any, namespace: str) -> None:
    start = core.list_namespaced_pod(namespace).metadata.resource_version
    run_pod(core, namespace, "watched", ["sleep", "300"])
    core.delete_namespaced_pod("watched", namespace, grace_period_seconds=0)
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_pod, namespace, resource_version=start, timeout_seconds=10
    ):
        seen.append(event["type"])
        if event["type"] == "DELETED":
            break
    assert seen[0] == "ADDED" and seen[-1] == "DELETED"


def test_errors_are_status_objects_with_real_codes(core: Any, namespace: str) -> None:
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_pod("nope", namespace)
    assert missing.value.status == 404
    assert _status(missing.value)["reason"] == "NotFound"
    assert _status(missing.value)["message"] == 'pods "nope" not found'

    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "twice"}, "data": {"a": "1"}}
    )
    with pytest.raises(ApiException) as exists:
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "twice"}, "data": {"a": "1"}}
        )
    assert exists.value.status == 409 and _status(exists.value)["reason"] == "AlreadyExists"

    stale = core.read_namespaced_config_map("twice", namespace)
    core.patch_namespaced_config_map("twice", namespace, {"data": {"a": "2"}})
    stale.data = {"a": "3"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("twice", namespace, stale)
    assert conflict.value.status == 409 and _status(conflict.value)["reason"] == "Conflict"

    with pytest.raises(ApiException) as invalid:
        core.create_namespaced_pod(
            namespace, {"metadata": {"name": "Bad_Name"}, "spec": {"containers": []}}
        )
    body = _status(invalid.value)
    assert invalid.value.status == 422 and body["reason"] == "Invalid"
    assert {cause["field"] for cause in body["details"]["causes"]} == {
        "metadata.name",
        "spec.containers",
    }


def test_bad_token_is_401(sandbox: Any) -> None:
    from podside.sandbox.control import _read_state

    port = _read_state(sandbox)["port"]  # type: ignore[index]
    context = ssl.create_default_context(cafile=str(sandbox.ca_cert))
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/api/v1/pods", headers={"Authorization": "Bearer wrong"}
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, context=context)
    assert error.value.code == 401
    assert json.loads(error.value.read())["reason"] == "Unauthorized"


def test_restricted_user_gets_a_real_forbidden_message(sandbox: Any, kubeconfig: Any) -> None:
    from kubernetes import config

    from podside.sandbox.control import add_restricted_user
    from podside.sandbox.users import Rule

    context, _ = add_restricted_user(sandbox, "viewer", (Rule.parse("get,list,watch:pods"),))
    viewer = client.CoreV1Api(
        config.new_client_from_config(config_file=str(kubeconfig), context=context)
    )
    assert viewer.list_namespaced_pod("default").items
    with pytest.raises(ApiException) as denied:
        viewer.patch_namespaced_pod_ephemeralcontainers(
            "x", "default", {"spec": {"ephemeralContainers": []}}
        )
    assert denied.value.status == 403
    assert _status(denied.value)["message"] == (
        'pods "x" is forbidden: User "viewer" cannot patch resource "pods/ephemeralcontainers" '
        'in API group "" in the namespace "default"'
    )
    review = client.AuthorizationV1Api(viewer.api_client).create_self_subject_access_review(
        {
            "spec": {
                "resourceAttributes": {
                    "namespace": "default",
                    "verb": "create",
                    "resource": "pods",
                    "subresource": "portforward",
                }
            }
        }
    )
    assert review.status.allowed is False


def test_services_get_cluster_ips_and_endpoints(core: Any) -> None:
    service = core.read_namespaced_service("blog", "default")
    assert service.spec.cluster_ip.startswith("198.18.128.")
    endpoints = wait_for(
        lambda: core.read_namespaced_endpoints("blog", "default").subsets, what="blog endpoints"
    )
    assert endpoints[0].ports[0].port == 8080
    pod = core.list_namespaced_pod("default", label_selector="app=blog").items[0]
    assert endpoints[0].addresses[0].ip == pod.status.pod_ip


def test_deployment_scales_its_pods(apps: Any, core: Any, namespace: str) -> None:
    labels = {"app": "sleepers"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "sleepers"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "main", "image": "busybox", "command": ["sleep", "300"]}
                        ],
                        "terminationGracePeriodSeconds": 1,
                    },
                },
            },
        },
    )

    def ready() -> Any:
        deployment = apps.read_namespaced_deployment(namespace=namespace, name="sleepers")
        return deployment.status.ready_replicas

    wait_for(lambda: ready() == 2, what="2 ready")
    apps.patch_namespaced_deployment_scale("sleepers", namespace, {"spec": {"replicas": 1}})
    wait_for(
        lambda: len(core.list_namespaced_pod(namespace, label_selector="app=sleepers").items) == 1,
        what="scaled to 1",
    )
    # As the ReplicaSet controller does, a scale-down removes the newest ready pod first.
    (oldest,) = core.list_namespaced_pod(namespace, label_selector="app=sleepers").items
    time.sleep(1.1)  # creationTimestamp counts whole seconds
    apps.patch_namespaced_deployment_scale("sleepers", namespace, {"spec": {"replicas": 2}})
    wait_for(lambda: ready() == 2, what="2 ready again")
    apps.patch_namespaced_deployment_scale("sleepers", namespace, {"spec": {"replicas": 1}})

    def survivors() -> list[str]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=sleepers").items
        return [pod.metadata.name for pod in pods if not pod.metadata.deletion_timestamp]

    wait_for(lambda: len(survivors()) == 1, what="scaled to 1 again")
    assert survivors() == [oldest.metadata.name]
