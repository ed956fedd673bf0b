"""kubectl against the sandbox, unmodified: get, create, delete, logs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.sandbox.conftest import wait_for

POD_MANIFEST = """
apiVersion: v1
kind: Pod
metadata:
  name: from-kubectl
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: busybox
    command: ["sh", "-c", "echo made by kubectl"]
"""


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_get_create_logs_delete(kubeconfig: Path, namespace: str, core: Any) -> None:
    table = kubectl(kubeconfig, "get", "pods", "-n", "default")
    assert table.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "blog-" in table
    assert "deployment.apps/blog" in kubectl(
        kubeconfig, "get", "deploy", "-n", "default", "-o", "name"
    )
    kubectl(kubeconfig, "create", "-n", namespace, "-f", "-", stdin=POD_MANIFEST)
    wait_for(
        lambda: core.read_namespaced_pod("from-kubectl", namespace).status.phase == "Succeeded",
        what="pod done",
    )
    assert kubectl(kubeconfig, "logs", "-n", namespace, "from-kubectl") == "made by kubectl\n"
    kubectl(kubeconfig, "delete", "pod", "-n", namespace, "from-kubectl", "--grace-period=1")
    assert (
        "No resources found"
        in subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "pods", "-n", namespace],
            capture_output=True,
            text=True,
        ).stderr
    )
