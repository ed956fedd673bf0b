"""Every replica of a workload: `--target deployment/web` with 3 ready pods behind a Service
covers all of them (one agent per pod, one session), so requests the Service spreads over the
pods all reach the program; pods that come join, pods that go leave, and `--one-pod` covers
one. The requests come from a caller pod through the Service's ClusterIP, which the sandbox
spreads over the endpoints with DNAT as kube-proxy does."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.sandbox.conftest import run_pod, wait_for
from tests.topology import PYTHON, SERVERS

APP_PORT = 8080
LOCAL_PORT = 18090  # the program's; mapped to the pods' APP_PORT
REQUESTS = 12  # enough that the Service sends some to each of 3 pods ((2/3)^12 < 1% misses)

# Each pod's app answers with its own name (its hostname is the pod's).
APP = (
    "import os, runpy, sys\n"
    f"sys.argv = ['echo_http.py', '0.0.0.0', '{APP_PORT}', os.uname().nodename]\n"
    f"runpy.run_path({str(SERVERS / 'echo_http.py')!r}, run_name='__main__')\n"
)
# The caller asks the Service for /r0, /r1, ... on new connections, and logs who answered.
# Its timeout is generous: on a loaded machine a request was seen to take over 5 s (also with
# --one-pod), which is slowness, not a request lost.
CALLER = (
    "import json, sys, time, urllib.request\n"
    "i = 0\n"
    "while True:\n"
    "    try:\n"
    "        body = urllib.request.urlopen(f'http://{}/r{{i}}', timeout=30).read()\n"
    "        print(f'r{{i}}', json.loads(body)['server'], flush=True)\n"
    "    except Exception as error:\n"
    "        print(f'r{{i}} failed {{error}}', flush=True)\n"
    "    i += 1\n"
    "    time.sleep(0.2)\n"
)


def _web(apps: Any, core: Any, namespace: str, replicas: int) -> str:
    """The `web` deployment and its Service; returns the Service's ClusterIP:port."""
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {"name": "app", "image": "busybox", "command": [PYTHON, "-c", APP]}
                        ],
                        "terminationGracePeriodSeconds": 1,
                    },
                },
            },
        },
    )
    service = core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": APP_PORT}]},
        },
    )
    _wait_ready(core, namespace, replicas)
    run_pod(core, namespace, "caller", [PYTHON, "-c", CALLER.format(service.spec.cluster_ip)])
    return str(service.spec.cluster_ip)


def _ready_pods(core: Any, namespace: str) -> list[str]:
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    return sorted(
        pod.metadata.name
        for pod in pods
        if not pod.metadata.deletion_timestamp
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    )


def _wait_ready(core: Any, namespace: str, count: int) -> list[str]:
    return wait_for(
        lambda: (pods := _ready_pods(core, namespace)) and len(pods) == count and pods,
        timeout=60,
        what=f"{count} ready pods of web",
    )


def _answers(core: Any, namespace: str) -> dict[int, str]:
    """The caller's requests so far: number -> who answered ("failed ..." if none)."""
    log = core.read_namespaced_pod_log("caller", namespace)
    found = {}
    for line in log.splitlines():
        number, _, who = line.partition(" ")
        if number.startswith("r") and number[1:].isdigit():
            found[int(number[1:])] = who
    return found


def _next_requests(core: Any, namespace: str, count: int = REQUESTS) -> dict[int, str]:
    """The next `count` requests the caller sends from now, once all are answered."""
    start = max(_answers(core, namespace), default=-1) + 1
    wanted = range(start, start + count)

    def answered() -> dict[int, str] | None:
        answers = _answers(core, namespace)
        return {n: answers[n] for n in wanted} if all(n in answers for n in wanted) else None

    return wait_for(answered, timeout=120, what=f"the caller's requests {start}..")


def _program_saw(log: Path, numbers: Any) -> bool:
    seen = set(re.findall(r"^local GET /r(\d+) from", log.read_text(), re.MULTILINE))
    return all(str(n) in seen for n in numbers)


@contextmanager
def _session(namespace: str, *options: str) -> Iterator[Path]:
    """`podside exec -v --target deployment/web` running the local echo server; its log."""
    log = Path(tempfile.mkstemp(prefix="podside-replicas-")[1])
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                *(PYTHON, "-m", "podside", "exec", "-v", "--context", "podside-sandbox"),
                *("-n", namespace, "--target", "deployment/web", *options),
                *("--port-map", f"{LOCAL_PORT}:{APP_PORT}", "--"),
                *(PYTHON, str(SERVERS / "echo_http.py"), "127.0.0.1", str(LOCAL_PORT), "local"),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(os.environ),
        )
    try:
        wait_for(
            lambda: process.poll() is not None or "local listening on" in log.read_text(),
            timeout=120,
            what="the session",
        )
        assert process.poll() is None, log.read_text()
        yield log
        assert process.poll() is None, log.read_text()  # nothing above ended the session
    finally:
        process.terminate()
        process.wait(30)
        log.unlink()


def test_mirror_covers_every_ready_pod_and_pods_join_and_leave(
    apps: Any, core: Any, sandbox: Any, namespace: str
) -> None:
    _web(apps, core, namespace, 3)
    first = _wait_ready(core, namespace, 3)
    with _session(namespace) as log:
        text = log.read_text()
        assert "incoming requests from deployment/web: 3 ready pods" in text, text
        for pod in first:
            assert pod in text.split("incoming requests from")[1], text
        # The program listens: every pod's port is mirrored from here on.
        wait_for(lambda: "local GET /r" in log.read_text(), timeout=30, what="a copy")
        requests = _next_requests(core, namespace)
        assert set(requests.values()) == set(first), requests  # the Service used all 3
        wait_for(lambda: _program_saw(log, requests), timeout=20, what=f"copies of {requests}")

        apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 4}})
        (added,) = set(_wait_ready(core, namespace, 4)) - set(first)
        wait_for(
            lambda: f"pod {namespace}/{added} joined" in log.read_text(),
            timeout=60,
            what=f"{added} joining",
        )
        requests = _next_requests(core, namespace, 2 * REQUESTS)
        assert added in requests.values(), requests
        wait_for(lambda: _program_saw(log, requests), timeout=20, what=f"copies of {requests}")

        # A pod that goes leaves; the rest goes on (the deployment makes a new one, which joins).
        primary = re.search(rf"in pod {namespace}/(web-\S+)", log.read_text())
        assert primary is not None, log.read_text()
        gone = next(pod for pod in first if pod != primary.group(1))
        core.delete_namespaced_pod(gone, namespace)
        wait_for(
            lambda: f"pod {namespace}/{gone} left" in log.read_text(),
            timeout=30,
            what=f"{gone} leaving",
        )
        (replacement,) = set(_wait_ready(core, namespace, 4)) - set(first) - {added}
        wait_for(
            lambda: f"pod {namespace}/{replacement} joined" in log.read_text(),
            timeout=60,
            what=f"{replacement} joining",
        )
        requests = _next_requests(core, namespace)
        wait_for(
            lambda: _program_saw(log, requests),
            timeout=20,
            what=f"copies of {requests} ({log.read_text()})",
        )


def test_steal_answers_every_request_through_the_service_and_gives_all_pods_back(
    apps: Any, core: Any, sandbox: Any, namespace: str
) -> None:
    _web(apps, core, namespace, 3)
    pods = _wait_ready(core, namespace, 3)
    with _session(namespace, "--mode", "steal") as log:
        wait_for(lambda: "local GET /r" in log.read_text(), timeout=30, what="a stolen request")
        requests = _next_requests(core, namespace)
        assert set(requests.values()) == {"local"}, (requests, log.read_text())
    # The session ended: every pod answers for itself again.
    wait_for(lambda: _answers(core, namespace), what="answers")
    requests = _next_requests(core, namespace, 2 * REQUESTS)
    assert set(requests.values()) == set(pods), requests


def test_a_scale_down_keeps_the_session_on_the_pod_ready_longest(
    apps: Any, core: Any, sandbox: Any, namespace: str
) -> None:
    """The primary is the pod ready the longest, which a scale-down removes last: scaling
    3 -> 1 takes the two others away and the session goes on with the first pod."""
    _web(apps, core, namespace, 1)
    (first,) = _wait_ready(core, namespace, 1)
    time.sleep(1.1)  # the others' Ready times differ from the first's (whole seconds)
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
    others = set(_wait_ready(core, namespace, 3)) - {first}
    with _session(namespace) as log:
        primary = re.search(rf"in pod {namespace}/(web-\S+)", log.read_text())
        assert primary is not None and primary.group(1) == first, log.read_text()
        wait_for(lambda: "local GET /r" in log.read_text(), timeout=30, what="a copy")
        apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 1}})
        for pod in others:
            wait_for(
                lambda pod=pod: f"pod {namespace}/{pod} left" in log.read_text(),
                timeout=30,
                what=f"{pod} leaving",
            )
        # Requests the Service sent while the two went may have failed; then all reach first.
        requests = wait_for(
            lambda: (
                (batch := _next_requests(core, namespace))
                and set(batch.values()) == {first}
                and batch
            ),
            timeout=120,
            what=f"requests answered by {first} only",
        )
        wait_for(lambda: _program_saw(log, requests), timeout=20, what=f"copies of {requests}")


def test_one_pod_covers_only_the_pod_ready_longest(
    apps: Any, core: Any, sandbox: Any, namespace: str
) -> None:
    _web(apps, core, namespace, 3)
    pods = _wait_ready(core, namespace, 3)
    with _session(namespace, "--mode", "steal", "--one-pod") as log:
        assert "incoming requests from" not in log.read_text()
        wait_for(
            lambda: "local GET /r" in log.read_text(),
            timeout=60,
            what=f"a stolen request ({log.read_text()}; {_answers(core, namespace)})",
        )
        requests = _next_requests(core, namespace, 2 * REQUESTS)
        answered = set(requests.values())
        # One pod's requests reach the program, the other two answer their own.
        assert "local" in answered and len(answered - {"local"}) == 2, requests
        assert answered - {"local"} < set(pods), requests
    containers = [
        pod.spec.ephemeral_containers or []
        for pod in core.list_namespaced_pod(namespace, label_selector="app=web").items
    ]
    assert sorted(len(c) for c in containers) == [0, 0, 1]  # one agent only
