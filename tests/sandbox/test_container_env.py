"""A container's environment is what a real node gives it: the image's variables, HOSTNAME,
service links and the spec's env; none of the environment of whoever ran `sandbox up`. Exec
probes run in the container's environment too."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

from podside.sandbox import control
from tests.sandbox.conftest import pod_phase, run_pod, wait_for

DUMP_ENV = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
# What the image, the runtime (HOSTNAME, HOME) and the spec set; service links come on top.
EXPECTED = {"PATH", "LANG", "PYTHON_VERSION", "GPG_KEY", "HOSTNAME", "HOME", "FROM_SPEC"}


def _daemon_env(sandbox: Any) -> dict[str, str]:
    pid = control._read_state(sandbox)["pid"]  # type: ignore[index]
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def _check(env: dict[str, str], host: dict[str, str], pod: str, backend_ip: str) -> None:
    assert env["HOSTNAME"] == pod
    assert env["HOME"] == "/root"
    assert env["LANG"] == "C.UTF-8"
    assert env["PYTHON_VERSION"] == platform.python_version()
    assert env["PATH"].split(":")[0] == "/usr/local/bin"
    assert env["FROM_SPEC"] == "yes"
    assert env["KUBERNETES_SERVICE_HOST"] and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["BACKEND_SERVICE_HOST"] == backend_ip
    assert env["BACKEND_PORT"] == f"tcp://{backend_ip}:7000"
    unexpected = [
        name
        for name in env
        if name not in EXPECTED and not name.startswith(("KUBERNETES_", "BACKEND_"))
    ]
    assert unexpected == []
    leaked = sorted(name for name in host if name in env and name not in EXPECTED)
    assert leaked == []


def test_container_and_exec_probe_see_only_the_image_spec_and_cluster_environment(
    sandbox: Any, core: Any, namespace: str, tmp_path: Path
) -> None:
    backend = core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "backend"},
            "spec": {"selector": {"app": "backend"}, "ports": [{"port": 7000}]},
        },
    )
    container_file, probe_file = tmp_path / "container.json", tmp_path / "probe.json"
    run_pod(
        core,
        namespace,
        "envcheck",
        [sys.executable, "-c", DUMP_ENV + "; import time; time.sleep(600)", str(container_file)],
        terminationGracePeriodSeconds=1,
        container={
            "image": "python:3.11-slim",
            "env": [{"name": "FROM_SPEC", "value": "yes"}],
            "readinessProbe": {
                "exec": {"command": [sys.executable, "-c", DUMP_ENV, str(probe_file)]},
                "periodSeconds": 1,
            },
        },
    )
    wait_for(lambda: pod_phase(core, namespace, "envcheck") == "Running", what="pod running")
    host = _daemon_env(sandbox)
    assert host, "the daemon's own environment to compare with"
    for dump in (container_file, probe_file):
        # Read until the whole dump parses: the file exists a moment before it is written.
        env = wait_for(lambda dump=dump: json.loads(dump.read_text()), what=f"{dump.name}")
        _check(env, host, "envcheck", backend.spec.cluster_ip)


def test_a_python_images_status_names_the_interpreter_that_ran_for_its_tag(
    sandbox: Any, core: Any, namespace: str
) -> None:
    # The sandbox pulls no image: whatever Python the tag names, this machine's runs, and the
    # status says so where a node names the image it pulled.
    version = "import platform; print(platform.python_version())"
    run_pod(
        core,
        namespace,
        "tagged",
        ["python", "-c", version],
        restartPolicy="Never",
        container={"image": "python:3.10-slim"},
    )
    wait_for(lambda: pod_phase(core, namespace, "tagged") == "Succeeded", what="its end")
    ran = core.read_namespaced_pod_log("tagged", namespace).strip()
    (status,) = core.read_namespaced_pod("tagged", namespace).status.container_statuses
    assert status.image == "python:3.10-slim"
    assert status.image_id.startswith("podside-sandbox:")
    assert status.image_id.endswith(f" (Python {ran})")
