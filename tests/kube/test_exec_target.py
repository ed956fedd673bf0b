"""`podside exec --target` on the sandbox: the core's behaviour again, through the Kubernetes
API (an ephemeral agent in the pod, one WebSocket port-forward per session)."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.topology import PYTHON, SERVERS, wait_for


def exec_target(
    target: str, *command: str, options: tuple[str, ...] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            PYTHON,
            "-m",
            "podside",
            "exec",
            "--context",
            "podside-sandbox",
            "--target",
            target,
            *options,
            "--",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_env_dns_and_outgoing_come_from_the_pod(sandbox: Any) -> None:
    script = (
        "import json, os, socket, urllib.request\n"
        "print(os.environ['BLOG_TITLE'])\n"
        "print(socket.gethostbyname('auditor'))\n"
        "print(urllib.request.urlopen('http://auditor:9000/events', timeout=10).status)\n"
    )
    result = exec_target("deployment/blog", PYTHON, "-c", script)
    assert result.returncode == 0, result.stderr
    title, auditor_ip, status = result.stdout.splitlines()
    assert title == "Staging blog"  # set in the deployment's spec
    assert auditor_ip.startswith("198.18.128.")  # the auditor service's ClusterIP
    assert status == "200"


def test_requests_reaching_the_pod_are_mirrored_to_the_local_program(sandbox: Any) -> None:
    with tempfile.NamedTemporaryFile("w+") as log:
        process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "podside",
                "exec",
                "--context",
                "podside-sandbox",
                "--target",
                "deployment/blog",
                "--",
                PYTHON,
                str(SERVERS / "echo_http.py"),
                "0.0.0.0",
                "8080",
                "local-blog",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            # The traffic deployment calls the blog every second.
            wait_for(
                lambda: "local-blog GET / from" in Path(log.name).read_text(),
                timeout=90,
                what="a mirrored request from the traffic deployment",
            )
        finally:
            process.terminate()
            process.wait(30)


def test_exit_code_and_stdin_are_the_programs(sandbox: Any) -> None:
    assert exec_target("deployment/blog", "sh", "-c", "exit 5").returncode == 5
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "podside",
            "exec",
            "--context",
            "podside-sandbox",
            "--target",
            "deployment/blog",
            "--",
            "tr",
            "a-z",
            "A-Z",
        ],
        input="pod\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout == "POD\n"


def test_sessions_reuse_the_agent_already_in_the_pod(sandbox: Any, core: Any) -> None:
    def agents() -> list[str]:
        pod = core.list_namespaced_pod("default", label_selector="app=auditor").items[0]
        containers = pod.spec.ephemeral_containers or []
        return [c.name for c in containers if c.name.startswith("podside-agent-")]

    assert exec_target("deployment/auditor", "true").returncode == 0
    first = agents()
    assert len(first) == 1
    assert exec_target("deployment/auditor", "true").returncode == 0
    assert agents() == first  # ephemeral containers are forever: no second one was added


def test_a_typo_in_the_target_names_the_closest_one(sandbox: Any) -> None:
    result = exec_target("deployment/blgo", "true")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "podside: deployment/blgo not found in namespace default; did you mean deployment/blog?"
    ]


def test_an_agent_image_that_cannot_be_pulled_is_reported(
    sandbox: Any, namespace: str, core: Any
) -> None:
    from tests.sandbox.conftest import run_pod

    run_pod(core, namespace, "victim", ["sleep", "300"])
    wait_for(
        lambda: core.read_namespaced_pod("victim", namespace).status.phase == "Running",
        timeout=60,
        what="the pod to run",
    )
    result = exec_target(
        "pod/victim",
        "true",
        options=("-n", namespace, "--agent-image", "example.invalid/nothing:1"),
    )
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("podside: ") and ("ImagePull" in line or "ErrImagePull" in line), line


def test_targetless_reaches_services_by_name(sandbox: Any) -> None:
    result = exec_target("", "curl", "-sS", "-m", "10", "http://auditor:9000/events", options=())
    # --target "" is not a target: the real check is the --targetless flag below.
    assert result.returncode != 0
    targetless = subprocess.run(
        [
            PYTHON,
            "-m",
            "podside",
            "exec",
            "--context",
            "podside-sandbox",
            "--targetless",
            "--",
            "curl",
            "-sS",
            "-m",
            "10",
            "http://auditor:9000/events",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert targetless.returncode == 0, targetless.stderr
    assert "events" in json.loads(targetless.stdout)


def test_sigterm_reaches_the_program_and_what_it_left_running_is_stopped(
    sandbox: Any, tmp_path: Path
) -> None:
    """Through the Kubernetes API podside runs threads (the client, the port-forward) before
    the program starts; a signal must still be forwarded, not end podside on the spot."""
    marker, leftover = tmp_path / "got-TERM", tmp_path / "leftover"
    program = (
        f"(sleep 349 & echo $! > {leftover}); trap 'echo TERM > {marker}; exit 0' TERM; "
        "echo ready; while true; do sleep 0.1; done"
    )
    process = subprocess.Popen(
        [
            *(PYTHON, "-m", "podside", "exec", "--context", "podside-sandbox"),
            *("--target", "deployment/blog", "--", "bash", "-c", program),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0  # the program's exit code: it got the signal and ended
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert marker.read_text().strip() == "TERM"
    sleeper = int(leftover.read_text())
    wait_for(lambda: not Path(f"/proc/{sleeper}").exists(), what="the left-behind sleep to end")
