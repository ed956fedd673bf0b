"""Target resolution and listing against the sandbox: every kind comes down to the right
running pod and container, and mistakes get one line with the closest names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from kubernetes import client

from podside.errors import PodsideError
from podside.kube.targets import list_targets, resolve_target
from tests.sandbox.conftest import pod_phase, run_pod, wait_for


def _template(app: str, containers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": containers
            or [
                {
                    "name": "main",
                    "image": "busybox",
                    "command": ["sleep", "600"],
                    "ports": [{"containerPort": 8080}],
                }
            ],
        },
    }


def _create(kind: str, api_client: Any, namespace: str, name: str) -> None:
    """A workload named `name` whose pods are labelled app=`name`.

    The answers are not read into models: the client requires status fields (a statefulset's
    `replicas`) that the sandbox only writes once its controller has seen the object.
    """
    apps, batch, core = (
        client.AppsV1Api(api_client),
        client.BatchV1Api(api_client),
        client.CoreV1Api(api_client),
    )
    template = _template(name)
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": name}}, "template": template}
    if kind == "service":
        pod = {
            "metadata": {"name": f"{name}-pod", **template["metadata"]},
            "spec": template["spec"],
        }
        core.create_namespaced_pod(namespace, pod)
        spec = {"selector": {"app": name}, "ports": [{"port": 80}]}
    elif kind == "statefulset":
        spec["serviceName"] = name
    elif kind == "job":
        # A job's selector is the API server's to generate, from its uid.
        template["spec"]["restartPolicy"] = "Never"
        spec = {"template": template}
    create = {
        "deployment": apps.create_namespaced_deployment,
        "statefulset": apps.create_namespaced_stateful_set,
        "daemonset": apps.create_namespaced_daemon_set,
        "replicaset": apps.create_namespaced_replica_set,
        "job": batch.create_namespaced_job,
        "service": core.create_namespaced_service,
    }[kind]
    create(namespace, {"metadata": {"name": name}, "spec": spec}, _preload_content=False)


def _running_target(ctx: Any, target: str, container: str | None = None) -> Any:
    """resolve_target once the target has a ready pod (workloads start their pods async)."""

    def attempt() -> Any:
        try:
            return resolve_target(ctx, target, container)
        except PodsideError:
            return None

    return wait_for(attempt, what=f"{target} to resolve")


@pytest.mark.parametrize(
    ("target_kind", "written"),
    [
        ("deployment", "deploy"),
        ("statefulset", "sts"),
        ("daemonset", "ds"),
        ("replicaset", "rs"),
        ("job", "job"),
        ("service", "svc"),
    ],
)
def test_each_workload_kind_resolves_to_its_running_pod(
    api_client: Any, core: Any, ctx: Any, namespace: str, target_kind: str, written: str
) -> None:
    name = f"w-{target_kind}"
    _create(target_kind, api_client, namespace, name)
    target = _running_target(ctx, f"{written}/{name}")
    assert (target.kind, target.name, target.namespace) == (target_kind, name, namespace)
    pod = core.read_namespaced_pod(target.pod, namespace)
    assert pod.metadata.labels["app"] == name
    assert pod.status.phase == "Running"
    assert target.container == "main"
    assert target.pod_ip == pod.status.pod_ip


def test_pod_by_kind_or_bare_name(core: Any, ctx: Any, namespace: str) -> None:
    run_pod(core, namespace, "solo", ["sleep", "600"], terminationGracePeriodSeconds=1)
    wait_for(lambda: pod_phase(core, namespace, "solo") == "Running", what="solo running")
    for written in ("pod/solo", "po/solo", "solo"):
        target = resolve_target(ctx, written)
        assert (target.kind, target.pod, target.container) == ("pod", "solo", "main")


def test_container_is_the_annotated_default_else_named_else_an_error(
    core: Any, ctx: Any, namespace: str
) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {
                "name": "two",
                "annotations": {"kubectl.kubernetes.io/default-container": "app"},
            },
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {"name": "sidecar", "image": "busybox", "command": ["sleep", "600"]},
                    {"name": "app", "image": "busybox", "command": ["sleep", "600"]},
                ],
            },
        },
    )
    wait_for(lambda: pod_phase(core, namespace, "two") == "Running", what="two running")
    assert resolve_target(ctx, "pod/two").container == "app"
    assert resolve_target(ctx, "pod/two", container="sidecar").container == "sidecar"
    with pytest.raises(PodsideError, match=r"has no container 'db'; its containers: sidecar, app"):
        resolve_target(ctx, "pod/two", container="db")


def test_first_container_without_the_annotation(core: Any, ctx: Any, namespace: str) -> None:
    run_pod(
        core,
        namespace,
        "plain",
        ["sleep", "600"],
        terminationGracePeriodSeconds=1,
        containers=[
            {"name": "first", "image": "busybox", "command": ["sleep", "600"]},
            {"name": "second", "image": "busybox", "command": ["sleep", "600"]},
        ],
    )
    wait_for(lambda: pod_phase(core, namespace, "plain") == "Running", what="plain running")
    assert resolve_target(ctx, "plain").container == "first"


def test_typos_get_the_closest_names(api_client: Any, ctx: Any, namespace: str) -> None:
    _create("deployment", api_client, namespace, "blog")
    _running_target(ctx, "deployment/blog")
    with pytest.raises(
        PodsideError, match=r"deployment/blgo not found .*did you mean deployment/blog\?"
    ):
        resolve_target(ctx, "deployment/blgo")
    # A bare name is a pod; the workload of that name is what was probably meant.
    with pytest.raises(PodsideError, match=r"pod/blog not found .*did you mean deployment/blog"):
        resolve_target(ctx, "blog")
    with pytest.raises(PodsideError, match=r"unknown target kind 'deplyment'.*deployment/NAME"):
        resolve_target(ctx, "deplyment/blog")
    ctx.namespace = namespace[:-1] + ("x" if namespace[-1] != "x" else "y")
    with pytest.raises(
        PodsideError, match=rf"namespace '{ctx.namespace}' not found.*did you mean {namespace}\?"
    ):
        resolve_target(ctx, "deployment/blog")


def test_a_pod_that_is_not_running_is_refused(core: Any, ctx: Any, namespace: str) -> None:
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "stuck", "labels": {"app": "stuck"}},
            "spec": {"containers": [{"name": "main", "image": "example.com/nothing:1"}]},
        },
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "stuck"},
            "spec": {"selector": {"app": "stuck"}, "ports": [{"port": 80}]},
        },
    )
    wait_for(
        lambda: "not running (Pending" in _error_of(lambda: resolve_target(ctx, "pod/stuck")),
        what="stuck reported as not running",
    )
    assert "no ready pod behind service/stuck" in _error_of(
        lambda: resolve_target(ctx, "svc/stuck")
    )


def test_a_service_without_pods_says_so(core: Any, ctx: Any, namespace: str) -> None:
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "empty"},
            "spec": {"selector": {"app": "none"}, "ports": [{"port": 80}]},
        },
    )
    assert "no pod behind service/empty" in _error_of(lambda: resolve_target(ctx, "service/empty"))


def _error_of(call: Any) -> str:
    try:
        call()
    except PodsideError as error:
        return error.message
    return ""


def _populate(api_client: Any, core: Any, ctx: Any, namespace: str) -> None:
    _create("deployment", api_client, namespace, "web")
    _create("replicaset", api_client, namespace, "loose")
    _create("service", api_client, namespace, "front")
    core.create_namespaced_service(
        namespace, {"metadata": {"name": "external"}, "spec": {"ports": [{"port": 443}]}}
    )
    _running_target(ctx, "deployment/web")
    _running_target(ctx, "replicaset/loose")
    _running_target(ctx, "service/front")


def test_list_targets_shows_workloads_services_and_pods(
    api_client: Any, core: Any, ctx: Any, namespace: str
) -> None:
    _populate(api_client, core, ctx, namespace)
    run_pod(core, namespace, "done", ["true"], restartPolicy="Never")
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "agent", "labels": {"app.kubernetes.io/name": "podside-agent"}},
            "spec": _template("agent")["spec"],
        },
    )
    wait_for(lambda: pod_phase(core, namespace, "done") == "Succeeded", what="done to finish")
    listed = list_targets(ctx, namespace)
    names = [
        (t["kind"], t["name"].rsplit("-", 2)[0] if t["kind"] == "pod" else t["name"])
        for t in listed
    ]
    # Not targets: the deployment's own replicaset, the selector-less service, a finished pod
    # and podside's own agent pod.
    assert names == [
        ("deployment", "web"),
        ("replicaset", "loose"),
        ("service", "front"),
        ("pod", "front"),
        ("pod", "loose"),
        ("pod", "web"),
    ], names
    by_kind = {(t["kind"], t["name"]): t for t in listed}
    assert by_kind["deployment", "web"] == {
        "kind": "deployment",
        "name": "web",
        "namespace": namespace,
        "containers": ["main"],
        "ports": [8080],
    }
    assert by_kind["service", "front"]["containers"] == ["main"]
    assert by_kind["service", "front"]["ports"] == [80]
    assert all(t["namespace"] == namespace for t in listed)
    everywhere = list_targets(ctx, None, all_namespaces=True)
    assert {"default", namespace} <= {t["namespace"] for t in everywhere}


def _podside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "podside", *args],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=60,
    )


def test_targets_command_prints_json_and_a_table(
    api_client: Any, core: Any, ctx: Any, namespace: str
) -> None:
    _populate(api_client, core, ctx, namespace)
    as_json = _podside("targets", "-n", namespace, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert {
        "kind": "deployment",
        "name": "web",
        "namespace": namespace,
        "containers": ["main"],
        "ports": [8080],
    } in listed
    table = _podside("targets", "--namespace", namespace)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TARGET", "CONTAINERS", "PORTS"]
    assert lines[1].split() == ["deployment/web", "main", "8080"]
    assert len(lines) == 1 + len(listed)
    everywhere = _podside("targets", "-A")
    assert everywhere.stdout.splitlines()[0].split() == [
        "NAMESPACE",
        "TARGET",
        "CONTAINERS",
        "PORTS",
    ]
    assert any(
        line.split()[:2] == [namespace, "deployment/web"] for line in everywhere.stdout.splitlines()
    )


def test_targets_command_errors_are_one_line(sandbox: Any, tmp_path: Any) -> None:
    missing = _podside("targets", "--context", "no-such-context")
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0
    assert "context 'no-such-context' not found" in missing.stderr
    assert "podside-sandbox" in missing.stderr
    nothing = _podside("targets", "--kubeconfig", str(tmp_path / "absent"))
    assert nothing.returncode == 1
    assert "no kubeconfig found" in nothing.stderr and "podside sandbox up" in nothing.stderr
    typo = _podside("targets", "-n", "defualt")
    assert typo.returncode == 1
    assert "namespace 'defualt' not found" in typo.stderr and "did you mean default?" in typo.stderr
    assert "Traceback" not in missing.stderr + nothing.stderr + typo.stderr


def test_a_target_carries_its_pods_http_probes(core: Any, ctx: Any, namespace: str) -> None:
    """Steal lets these through: the kubelet never waits on a program paused in a debugger."""
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 30}
    run_pod(
        core,
        namespace,
        "probed",
        ["sleep", "300"],
        container={
            "ports": [{"name": "http", "containerPort": 8080}],
            "livenessProbe": probe,
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 9090}, "periodSeconds": 30},
        },
    )
    wait_for(lambda: pod_phase(core, namespace, "probed") == "Running", what="the pod to run")
    target = resolve_target(ctx, "pod/probed")
    assert target.probes == ((8080, "/healthz"), (9090, "/ready"))
