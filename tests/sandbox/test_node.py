"""The sandbox node: real processes in real network namespaces, DNS, volumes, probes."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.sandbox.conftest import pod_phase, run_pod, wait_for


def _log(core: Any, namespace: str, name: str) -> str:
    return str(core.read_namespaced_pod_log(name, namespace))


def test_pod_output_is_served_as_its_log(core: Any, namespace: str) -> None:
    run_pod(
        core,
        namespace,
        "echo",
        ["sh", "-c", "echo one; echo two; echo three"],
        restartPolicy="Never",
    )
    wait_for(lambda: pod_phase(core, namespace, "echo") == "Succeeded", what="pod done")
    assert _log(core, namespace, "echo") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("echo", namespace, tail_lines=1) == "three\n"


def test_cluster_dns_resolves_short_service_names_inside_a_pod(core: Any, namespace: str) -> None:
    script = "import socket; print(socket.gethostbyname('auditor.default')); print(open('/etc/resolv.conf').read())"
    run_pod(core, namespace, "dns", [sys.executable, "-c", script], restartPolicy="Never")
    wait_for(lambda: pod_phase(core, namespace, "dns") == "Succeeded", what="lookup done")
    output = _log(core, namespace, "dns")
    auditor_ip = core.read_namespaced_service("auditor", "default").spec.cluster_ip
    assert output.splitlines()[0] == auditor_ip
    assert f"search {namespace}.svc.cluster.local svc.cluster.local cluster.local" in output
    assert "options ndots:5" in output


def test_configmap_volume_and_env_reach_the_container(core: Any, namespace: str) -> None:
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"greeting": "hello", "mode": "fast"}}
    )
    run_pod(
        core,
        namespace,
        "reader",
        [
            "sh",
            "-c",
            "cat /podside-test-config/greeting; echo; echo $MODE; "
            # A real kubelet's layout: each key a symlink through ..data; a subPath is the file.
            "readlink /podside-test-config/greeting; readlink /podside-test-config/..data; "
            "cat /podside-test-mode; echo; test -L /podside-test-mode || echo not-a-link",
        ],
        restartPolicy="Never",
        volumes=[{"name": "config", "configMap": {"name": "settings"}}],
        container={
            "volumeMounts": [
                {"name": "config", "mountPath": "/podside-test-config"},
                {"name": "config", "mountPath": "/podside-test-mode", "subPath": "mode"},
            ],
            "env": [
                {
                    "name": "MODE",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}},
                }
            ],
        },
    )
    wait_for(lambda: pod_phase(core, namespace, "reader") == "Succeeded", what="reader done")
    greeting, mode, link, data, sub_path, kind = _log(core, namespace, "reader").splitlines()
    assert (greeting, mode, link, sub_path, kind) == (
        "hello",
        "fast",
        "..data/greeting",
        "fast",
        "not-a-link",
    )
    assert re.fullmatch(r"\.\.\d{4}(_\d\d){5}\.\d+", data), data


def test_failing_liveness_probe_restarts_the_container(core: Any, namespace: str) -> None:
    # Serves /healthz only on its first run: after the restart, the file marks it as failing.
    server = (
        "import http.server, os\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(500); self.end_headers()\n"
        "http.server.HTTPServer(('0.0.0.0', 8081), H).serve_forever()\n"
    )
    run_pod(
        core,
        namespace,
        "sick",
        [sys.executable, "-c", server],
        terminationGracePeriodSeconds=1,
        container={
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": 8081},
                "periodSeconds": 1,
                "failureThreshold": 1,
            }
        },
    )
    wait_for(
        lambda: (
            core.read_namespaced_pod("sick", namespace).status.container_statuses[0].restart_count
            >= 1
        ),
        timeout=30,
        what="a restart",
    )
    status = core.read_namespaced_pod("sick", namespace).status.container_statuses[0]
    assert status.last_state.terminated is not None


def test_blog_calls_the_auditor_inside_the_cluster(core: Any) -> None:
    def audited() -> bool:
        pod = core.list_namespaced_pod("default", label_selector="app=auditor").items[0]
        return "audit event from" in core.read_namespaced_pod_log(pod.metadata.name, "default")

    # The traffic deployment posts every few seconds; each post makes the blog call the auditor.
    wait_for(audited, timeout=30, what="an audit event")


def test_host_cannot_reach_pod_ips(core: Any) -> None:
    pod_ip = core.list_namespaced_pod("default", label_selector="app=blog").items[0].status.pod_ip
    route = subprocess.run(["ip", "route", "get", pod_ip], capture_output=True, text=True)
    assert route.returncode != 0
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex((pod_ip, 8080)) != 0


def test_holder_process_is_named_pause(sandbox: Any, core: Any) -> None:
    pod = core.list_namespaced_pod("default", label_selector="app=blog").items[0]
    netns = sandbox.pod_netns(pod.metadata.uid)
    pids = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=True
    ).stdout.split()
    names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in pids}
    assert "pause" in names
