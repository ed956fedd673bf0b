"""No agent image needed, on the sandbox: with no --agent-image the agent runs in a plain
python image that holds no podside code, from the code this podside delivers; a hostile
delivery from inside the pod is refused and the real one still starts the agent; sessions
reuse or join such an agent, and deliver its code if the session that started it could not;
an agent marked with another protocol version is never reused."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from podside.kube.agent import DEFAULT_PYTHON_IMAGE, AgentImage, ensure_agent
from podside.kube.agent_code import agent_code
from podside.kube.agent_tokens import TokenCache
from podside.kube.targets import resolve_target
from podside_agent.bootstrap import MAGIC
from podside_protocol.tokens import new_token, verifier_of
from tests.sandbox.conftest import pod_phase, run_pod, wait_for
from tests.topology import PYTHON, SERVERS

APP_PORT = 8080


def _exec(
    namespace: str, target: str, *command: str, options: tuple[str, ...] = (), **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(PYTHON, "-m", "podside", "exec", "--context", "podside-sandbox", "-n", namespace),
            *("--target", target, *options, "--", *command),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        **kwargs,
    )


def _agents(core: Any, namespace: str, pod: str) -> list[Any]:
    containers = core.read_namespaced_pod(pod, namespace).spec.ephemeral_containers or []
    return [c for c in containers if c.name.startswith("podside-agent-")]


def _running(core: Any, namespace: str, name: str) -> None:
    wait_for(lambda: pod_phase(core, namespace, name) == "Running", timeout=60, what=name)


def test_a_python_image_holds_no_podside_code(sandbox: Any, core: Any, namespace: str) -> None:
    script = "import sys; print('python', *sys.version_info[:2], flush=True); import podside_agent"
    run_pod(
        core,
        namespace,
        "plain",
        ["python", "-c", script],
        restartPolicy="Never",
        container={"image": DEFAULT_PYTHON_IMAGE},
    )
    wait_for(lambda: pod_phase(core, namespace, "plain") == "Failed", timeout=60, what="its end")
    log = core.read_namespaced_pod_log("plain", namespace)
    assert log.startswith("python 3 ")
    assert "ModuleNotFoundError: No module named 'podside_agent'" in log


def test_a_session_without_agent_image_has_the_pods_env_dns_outgoing_files_and_traffic(
    sandbox: Any, core: Any, namespace: str
) -> None:
    mount = f"/podside-bootstrap-{namespace}"
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"mode": "staging"}}
    )
    backend = [PYTHON, str(SERVERS / "echo_http.py"), "0.0.0.0", "7000", "backend"]
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "backend", "labels": {"app": "backend"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "busybox", "command": backend}],
            },
        },
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "backend"},
            "spec": {"selector": {"app": "backend"}, "ports": [{"port": 7000}]},
        },
    )
    run_pod(
        core,
        namespace,
        "app",
        [PYTHON, str(SERVERS / "echo_http.py"), "0.0.0.0", str(APP_PORT), "pod-app"],
        terminationGracePeriodSeconds=1,
        volumes=[{"name": "settings", "configMap": {"name": "settings"}}],
        container={
            "env": [{"name": "APP_GREETING", "value": "from the pod"}],
            "volumeMounts": [{"name": "settings", "mountPath": mount, "readOnly": True}],
        },
    )
    # Something in the cluster calls the app, so that there is traffic to mirror.
    caller = f"import time, urllib.request\nwhile True:\n    try: urllib.request.urlopen('http://{{}}:{APP_PORT}/mirrored', timeout=5).read()\n    except OSError: pass\n    time.sleep(0.5)\n"  # fmt: skip
    for name in ("backend", "app"):
        _running(core, namespace, name)
    app_ip = core.read_namespaced_pod("app", namespace).status.pod_ip
    run_pod(core, namespace, "caller", [PYTHON, "-c", caller.format(app_ip)])
    _running(core, namespace, "caller")

    # Other programs of this machine may hold the app's port here: the pod's 8080 is mapped.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local_port = probe.getsockname()[1]
    program = textwrap.dedent(
        f"""
        import http.server, json, os, socket, urllib.request
        seen = {{}}
        class Mirrored(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen["mirrored"] = self.path
                self.send_response(204)
                self.end_headers()
            def log_message(self, *args):
                pass
        server = http.server.HTTPServer(("127.0.0.1", {local_port}), Mirrored)
        seen["env"] = os.environ["APP_GREETING"]
        seen["dns"] = socket.gethostbyname("backend")
        seen["outgoing"] = urllib.request.urlopen("http://backend:7000/out", timeout=10).read().decode()
        seen["file"] = open("{mount}/mode").read()
        server.timeout = 60
        server.handle_request()
        print(json.dumps(seen))
        """
    )
    options = (
        "--fs",
        "read",
        "--fs-remote",
        f"^{mount}/",
        "--port-map",
        f"{local_port}:{APP_PORT}",
    )
    result = _exec(namespace, "pod/app", PYTHON, "-c", program, options=options)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.splitlines()[-1])
    service_ip = core.read_namespaced_service("backend", namespace).spec.cluster_ip
    assert seen["env"] == "from the pod"
    assert seen["dns"] == service_ip
    outgoing = json.loads(seen["outgoing"])
    assert (outgoing["server"], outgoing["path"]) == ("backend", "/out")
    assert seen["file"] == "staging"
    assert seen["mirrored"] == "/mirrored"

    (agent,) = _agents(core, namespace, "app")
    assert agent.image == DEFAULT_PYTHON_IMAGE
    assert agent.command[:2] == ["python", "-c"]
    assert agent.args[0] == "--code-sha256"


HOSTILE = textwrap.dedent(
    """
    # A process of the pod that watches for a new listener on 127.0.0.1 and sends it code of
    # its own before podside can; it also keeps one idle connection open.
    import socket, sys, time
    magic, size, log = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3]
    def listeners():
        with open("/proc/self/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        return {int(r[1].split(":")[1], 16) for r in rows if r[3] == "0A" and r[1].startswith("0100007F")}
    known = listeners()
    while True:
        new = listeners() - known
        if new:
            break
        time.sleep(0.005)
    port = new.pop()
    idle = socket.create_connection(("127.0.0.1", port))
    attacker = socket.create_connection(("127.0.0.1", port))
    attacker.sendall(magic + b"\\0" * size)
    answer = attacker.recv(1000)
    with open(log, "w") as out:
        out.write(answer.decode())
    time.sleep(600)
    """
)


def test_a_hostile_first_delivery_is_refused_and_the_real_one_starts_the_agent(
    sandbox: Any, core: Any, namespace: str, tmp_path: Path
) -> None:
    answer = tmp_path / "hostile-answer"
    # It even knows the code's size (from the spec): only the digest keeps it out.
    hostile = [PYTHON, "-c", HOSTILE, MAGIC.decode(), str(agent_code().size), str(answer)]
    run_pod(core, namespace, "app", hostile, terminationGracePeriodSeconds=1)
    _running(core, namespace, "app")
    result = _exec(namespace, "pod/app", "sh", "-c", "echo agent reached")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "agent reached\n"
    assert answer.read_text() == (
        "refused: this code's SHA-256 is not the one the agent's container names\n"
    )
    (agent,) = _agents(core, namespace, "app")
    log = core.read_namespaced_pod_log("app", namespace, container=agent.name)
    assert "refused a delivery" in log
    assert "podside-agent 0.1.0 listening on 127.0.0.1:" in log


def test_two_sessions_add_one_agent_container(sandbox: Any, core: Any, namespace: str) -> None:
    run_pod(core, namespace, "app", ["sleep", "600"], terminationGracePeriodSeconds=1)
    _running(core, namespace, "app")
    for _ in range(2):
        result = _exec(namespace, "pod/app", "true")
        assert result.returncode == 0, result.stderr
    (agent,) = _agents(core, namespace, "app")
    assert agent.image == DEFAULT_PYTHON_IMAGE


def test_an_agent_marked_with_another_protocol_is_not_reused(
    sandbox: Any, core: Any, namespace: str
) -> None:
    run_pod(core, namespace, "app", ["sleep", "600"], terminationGracePeriodSeconds=1)
    _running(core, namespace, "app")
    # An agent of another podside release, which this machine holds the token of: everything
    # about it would be reused but its protocol mark (and its image: that must not matter).
    token = new_token()
    core.patch_namespaced_pod_ephemeralcontainers(
        "app",
        namespace,
        {
            "spec": {
                "ephemeralContainers": [
                    {
                        "name": "podside-agent-older",
                        "image": "ghcr.io/podside/agent:0.1.0",
                        # Runs (and stays running) whatever its arguments.
                        "command": ["sh", "-c", "sleep 600", "older-agent"],
                        "args": ["--port", "23456", "--idle-exit", "300"],
                        "targetContainerName": "main",
                        "env": [
                            {"name": "PODSIDE_AGENT_TOKEN_SHA256", "value": verifier_of(token)},
                            {"name": "PODSIDE_AGENT_PROTOCOL", "value": "0"},
                        ],
                    }
                ]
            }
        },
        _content_type="application/strategic-merge-patch+json",
    )
    wait_for(
        lambda: any(
            s.state.running
            for s in core.read_namespaced_pod("app", namespace).status.ephemeral_container_statuses
            or []
        ),
        what="the older agent running",
    )
    with tempfile.TemporaryDirectory() as cache:
        uid = core.read_namespaced_pod("app", namespace).metadata.uid
        TokenCache(Path(cache) / "podside" / "agents").put(uid, "podside-agent-older", token)
        result = _exec(namespace, "pod/app", "true", env={**os.environ, "XDG_CACHE_HOME": cache})
    assert result.returncode == 0, result.stderr
    older, new = _agents(core, namespace, "app")
    assert older.name == "podside-agent-older"
    statuses = core.read_namespaced_pod("app", namespace).status.ephemeral_container_statuses
    assert next(s for s in statuses if s.name == older.name).state.running  # a candidate
    assert {e.name: e.value for e in new.env}["PODSIDE_AGENT_PROTOCOL"] == "1"


def test_a_session_delivers_the_code_a_starter_that_ended_did_not(
    sandbox: Any, core: Any, ctx: Any, namespace: str, tmp_path: Path
) -> None:
    run_pod(core, namespace, "app", ["sleep", "600"], terminationGracePeriodSeconds=1)
    _running(core, namespace, "app")
    cache = tmp_path / "cache"
    # A session that added the agent and ended before it sent the code: the bootstrap runs,
    # waiting, and this machine holds its token.
    started = ensure_agent(
        ctx,
        resolve_target(ctx, "pod/app"),
        image=AgentImage.of(None),
        progress=lambda _: None,
        tokens=TokenCache(cache / "podside" / "agents"),
    )
    result = _exec(namespace, "pod/app", "true", env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    assert result.returncode == 0, result.stderr
    assert f"reusing the agent {started.container}" in result.stderr
    (agent,) = _agents(core, namespace, "app")
    log = core.read_namespaced_pod_log("app", namespace, container=agent.name)
    assert "podside-agent 0.1.0 listening on 127.0.0.1:" in log


def test_a_session_without_the_token_delivers_the_code_before_joining(
    sandbox: Any, core: Any, ctx: Any, namespace: str, tmp_path: Path
) -> None:
    run_pod(core, namespace, "app", ["sleep", "600"], terminationGracePeriodSeconds=1)
    _running(core, namespace, "app")
    # Another developer's session added the agent and ended before it sent the code: the
    # bootstrap waits, and its token is in that developer's cache alone.
    started = ensure_agent(
        ctx,
        resolve_target(ctx, "pod/app"),
        image=AgentImage.of(None),
        progress=lambda _: None,
        tokens=TokenCache(tmp_path / "starter" / "podside" / "agents"),
    )
    joiner = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "joiner")}
    result = _exec(namespace, "pod/app", "sh", "-c", "echo joined", env=joiner)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "joined\n"
    assert f"joining the agent {started.container}" in result.stderr
    (agent,) = _agents(core, namespace, "app")
    log = core.read_namespaced_pod_log("app", namespace, container=agent.name)
    assert "podside-agent 0.1.0 listening on 127.0.0.1:" in log
