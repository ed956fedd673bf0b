"""API objects as JSON, read with the kubernetes client models' snake_case names."""

from __future__ import annotations

from podside.kube.rest import KubeObject, path_of

POD = {
    "metadata": {"name": "app", "labels": {"app.kubernetes.io/name": "blog"}},
    "spec": {
        "containers": [{"name": "main", "ports": [{"containerPort": 8080, "name": "http"}]}],
        "ephemeralContainers": [{"name": "agent", "targetContainerName": "main"}],
    },
    "status": {"phase": "Running", "podIP": "198.18.0.4", "podIPs": [{"ip": "198.18.0.4"}]},
}


def test_fields_read_as_the_models_name_them() -> None:
    pod = KubeObject(POD)
    assert pod.metadata.name == "app"
    assert pod.status.pod_ip == "198.18.0.4"  # podIP: the acronym is one word
    assert pod.status.pod_i_ps[0].ip == "198.18.0.4"
    assert pod.spec.containers[0].ports[0].container_port == 8080
    assert pod.spec.ephemeral_containers[0].target_container_name == "main"


def test_a_field_that_is_not_set_is_none_as_in_the_models() -> None:
    pod = KubeObject(POD)
    assert pod.metadata.deletion_timestamp is None
    assert pod.status.container_statuses is None


def test_maps_keep_their_keys() -> None:
    labels = KubeObject(POD).metadata.labels
    assert labels.get("app.kubernetes.io/name") == "blog"
    assert dict(labels.items()) == {"app.kubernetes.io/name": "blog"}


def test_paths_of_core_and_group_resources() -> None:
    assert path_of("pods", "default", "app", "ephemeralcontainers") == (
        "/api/v1/namespaces/default/pods/app/ephemeralcontainers"
    )
    assert path_of("deployments", None) == "/apis/apps/v1/deployments"
    assert path_of("jobs", "ci") == "/apis/batch/v1/namespaces/ci/jobs"
    assert path_of("namespaces", None, "kube-system") == "/api/v1/namespaces/kube-system"
