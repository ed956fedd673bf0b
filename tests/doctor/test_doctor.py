"""`podside doctor` passes on the sandbox and, on a broken context, names what is wrong and the
fix in one line per check, with a non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.sandbox.conftest import api_client, core, kubeconfig, namespace  # noqa: F401
from tests.topology import PYTHON


def doctor(*argv: str, config_path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "podside", "doctor", "--agent-timeout", "30", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": config_path},
    )


def lines_by_check(output: str) -> dict[str, str]:
    checks = {}
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        name, _, detail = rest.strip().partition(": ")
        checks[name] = f"{status} {detail}"
    return checks


def test_doctor_passes_on_the_sandbox(kubeconfig: Path, namespace: str) -> None:  # noqa: F811
    result = doctor("-n", namespace, config_path=str(kubeconfig))
    checks = lines_by_check(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(checks) == [
        "kernel",
        "seccomp user notification",
        "pidfd_getfd",
        "kubeconfig",
        "API",
        "RBAC",
        "ephemeral containers",
        "agent image",
        "port-forward",
        "agent NET_RAW (mirror)",
        "agent nftables (steal)",
    ]
    assert all(line.startswith("ok ") for line in checks.values())
    assert result.stderr == ""


def test_an_api_on_a_closed_port_fails_clearly(kubeconfig: Path, tmp_path: Path) -> None:  # noqa: F811
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{closed_port}"
    broken = tmp_path / "kubeconfig"
    broken.write_text(yaml.safe_dump(config))
    result = doctor(config_path=str(broken))
    checks = lines_by_check(result.stdout)
    assert result.returncode == 1
    assert checks["kernel"].startswith("ok ")
    assert checks["API"].startswith(
        f"PROBLEM cannot reach the Kubernetes API at https://127.0.0.1:{closed_port}"
    )
    assert "Connection refused" in checks["API"] and "; fix: " in checks["API"]
    assert "RBAC" not in checks  # nothing further is tried against an API that is not there
    assert "Traceback" not in result.stderr


def test_an_unknown_context_is_one_line(kubeconfig: Path) -> None:  # noqa: F811
    result = doctor("--context", "podside-sandbx", config_path=str(kubeconfig))
    assert result.returncode == 1
    assert "PROBLEM  kubeconfig: context 'podside-sandbx' not found" in result.stdout
    assert "podside-sandbox" in result.stdout  # the closest name is suggested


def test_a_restricted_user_is_told_each_missing_verb(sandbox: Any, namespace: str) -> None:  # noqa: F811
    from podside.sandbox.control import add_restricted_user
    from podside.sandbox.users import Rule

    name = f"doctor-{os.urandom(3).hex()}"
    rules = (Rule.parse("get,list,watch:pods", (namespace,)),)
    _, standalone = add_restricted_user(sandbox, name, rules)
    result = doctor("-n", namespace, config_path=str(standalone))
    checks = lines_by_check(result.stdout)
    assert result.returncode == 1
    assert checks["API"].startswith("ok ")
    rbac = checks["RBAC"]
    assert rbac.startswith(f"PROBLEM in namespace {namespace} this user may not: create pods, ")
    for verb in (
        "patch pods/ephemeralcontainers",
        "create pods/portforward",
        "list deployments (apps)",
    ):
        assert verb in rbac
    assert "get pods," not in rbac
    assert "README.md, section Kubernetes" in rbac
    assert checks["agent image"].startswith(f"PROBLEM cannot create pods in namespace {namespace}")


def test_an_image_that_cannot_be_pulled_is_named(kubeconfig: Path, namespace: str) -> None:  # noqa: F811
    result = doctor(
        "-n", namespace, "--agent-image", "registry.invalid/nope:1", config_path=str(kubeconfig)
    )
    checks = lines_by_check(result.stdout)
    assert result.returncode == 1
    assert checks["RBAC"].startswith("ok ")
    assert checks["agent image"].startswith("PROBLEM ")
    assert "registry.invalid/nope:1" in checks["agent image"]
    assert "fix: --agent-image" in checks["agent image"]


def test_a_baseline_namespace_is_named_as_pod_security_with_its_fix(
    kubeconfig: Path,  # noqa: F811
    core: Any,  # noqa: F811
    namespace: str,  # noqa: F811
) -> None:
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}
    )
    result = doctor("-n", namespace, config_path=str(kubeconfig))
    checks = lines_by_check(result.stdout)
    assert result.returncode == 1, result.stdout + result.stderr
    refused = checks["Pod Security"]
    assert refused.startswith('PROBLEM Pod Security admission ("baseline:latest") refused to ')
    assert '"NET_ADMIN", "NET_RAW" in securityContext.capabilities.add' in refused
    assert (
        f"; fix: ask your cluster admin to label namespace {namespace} "
        "pod-security.kubernetes.io/enforce=privileged"
    ) in refused
    assert "--agent-image" not in refused
    # The image and the port-forward are still tried, with a pod that asks for nothing.
    assert checks["agent image"].startswith("ok ")
    assert checks["port-forward"].startswith("ok ")
    assert checks["agent NET_RAW (mirror)"].startswith("PROBLEM not tried: Pod Security")
    assert "Traceback" not in result.stderr


def test_a_user_who_may_not_delete_pods_is_told_the_trial_pod_stays(
    sandbox: Any,
    core: Any,  # noqa: F811
    namespace: str,  # noqa: F811
) -> None:
    from podside.sandbox.control import add_restricted_user
    from podside.sandbox.users import Rule

    name = f"doctor-{os.urandom(3).hex()}"
    everything_but_delete = (
        "get,list,watch,create:pods",
        "get,list:services",
        "get,list:deployments,statefulsets,daemonsets,replicasets",
        "get:jobs",
        "patch:pods/ephemeralcontainers",
        "get,create:pods/portforward",
    )
    rules = tuple(Rule.parse(text, (namespace,)) for text in everything_but_delete)
    _, standalone = add_restricted_user(sandbox, name, rules)
    result = doctor("-n", namespace, config_path=str(standalone))
    checks = lines_by_check(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    (pod,) = core.list_namespaced_pod(namespace).items
    assert checks["trial pod"].startswith(
        f"ok pod {namespace}/{pod.metadata.name} stays (cannot delete pods in namespace "
        f"{namespace} (RBAC, user {name}"
    )
    assert checks["trial pod"].endswith(
        "its agent exits 300 s after doctor leaves and the pod completes"
    )


def test_doctor_with_a_target_checks_that_pods_own_context(
    kubeconfig: Path,  # noqa: F811
    core: Any,  # noqa: F811
    namespace: str,  # noqa: F811
) -> None:
    from tests.sandbox.conftest import pod_phase, run_pod, wait_for

    # As production pods often are: uid 1000 for every container, ephemeral ones included.
    run_pod(
        core,
        namespace,
        "app",
        ["sleep", "300"],
        terminationGracePeriodSeconds=1,
        securityContext={"runAsUser": 1000, "runAsGroup": 1000},
    )
    wait_for(lambda: pod_phase(core, namespace, "app") == "Running", what="app running")
    result = doctor("-n", namespace, "--target", "pod/app", config_path=str(kubeconfig))
    checks = lines_by_check(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(checks)[-6:] == [
        "target",
        "agent in the target",
        "port-forward",
        "agent NET_RAW (mirror)",
        "agent nftables (steal)",
        "agent reads the target",
    ]
    assert checks["target"] == (
        f"ok pod {namespace}/app: container main runs as uid 1000 (the pod's securityContext), "
        "holding no capabilities; an ephemeral container inherits it, so the agent sets "
        "runAsUser 0, runAsNonRoot false and adds NET_ADMIN, NET_RAW, SYS_PTRACE for itself"
    )
    assert all(line.startswith("ok ") for line in checks.values()), result.stdout
    assert "agent image" not in checks  # no pod of its own: the target's agent is the trial
    (agent,) = core.read_namespaced_pod("app", namespace).spec.ephemeral_containers
    assert checks["agent in the target"].startswith(f"ok {agent.name} in pod {namespace}/app")


def test_doctor_names_a_target_that_is_not_there(kubeconfig: Path, namespace: str) -> None:  # noqa: F811
    result = doctor("-n", namespace, "--target", "pod/nope", config_path=str(kubeconfig))
    checks = lines_by_check(result.stdout)
    assert result.returncode == 1
    assert checks["target"].startswith("PROBLEM ") and "nope" in checks["target"]
    assert "Traceback" not in result.stderr
