"""A pod whose securityContext runs it as uid 1000, as production pods often do: the ephemeral
agent inherits that user unless its own context says otherwise, and then holds no capability.
podside's agent sets root and its capabilities itself, so mirror, steal and the pod's
environment work there; the pod's own non-root processes still cannot enroll with it."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from podside.errors import PodsideError
from podside.kube.agent import AgentImage, ensure_agent
from podside.kube.portforward import open_port_forward
from podside.kube.targets import resolve_target
from podside.session import AgentSession
from podside_protocol.tokens import new_token
from tests.kube.conftest import who_answers
from tests.sandbox.conftest import pod_phase, wait_for
from tests.topology import PYTHON, SERVERS

APP_PORT = 8080
# runAsNonRoot too, as hardened pods set it: the agent, running as root, must say false itself.
PREBUILT = AgentImage.of("ghcr.io/podside/agent:0.1.0")
APP_USER = {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True}
# A process of the pod that tries to enroll a token of its own with every agent it sees: the
# abstract sockets of the pod's network namespace are listed in /proc/net/unix.
ENROLL_ATTEMPTS = """
import os, re, sys, time
from podside_agent.bootstrap import EnrollmentFailed, enroll
from podside_protocol.tokens import verifier_of
tried = set()
while True:
    with open("/proc/net/unix") as table:
        ports = set(re.findall(r"@podside-agent/(\\d+)", table.read()))
    for port in sorted(ports - tried):
        tried.add(port)
        try:
            enroll(int(port), verifier_of(os.environ["INTRUDER_TOKEN"]))
            print(f"enroll {port}: ok", flush=True)
        except EnrollmentFailed as error:
            print(f"enroll {port}: {error}", flush=True)
    time.sleep(0.2)
"""


def _non_root_pod(core: Any, namespace: str, intruder_token: str = "") -> None:
    """An app on APP_PORT with a secret in its environment, all of it as uid 1000; with a
    token, a second container that tries to enroll it."""
    containers: list[dict[str, Any]] = [
        {
            "name": "main",
            "image": "busybox",
            "command": [PYTHON, str(SERVERS / "echo_http.py"), "0.0.0.0", str(APP_PORT), "app"],
            "env": [{"name": "APP_SECRET", "value": "only-in-the-pod"}],
        }
    ]
    if intruder_token:
        containers.append(
            {
                "name": "sidecar",
                "image": "busybox",
                "command": [PYTHON, "-c", ENROLL_ATTEMPTS],
                "env": [{"name": "INTRUDER_TOKEN", "value": intruder_token}],
            }
        )
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "app"},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "securityContext": APP_USER,
                "containers": containers,
            },
        },
    )
    wait_for(lambda: pod_phase(core, namespace, "app") == "Running", what="app running")


@contextmanager
def _session(namespace: str, *options: str) -> Iterator[Path]:
    """`podside exec` on the pod running a local server named `local` on APP_PORT that says
    first what APP_SECRET is; yields its log."""
    log = Path(tempfile.mkstemp(prefix="podside-non-root-")[1])
    program = (
        f"import os, runpy, sys; print('secret=' + os.environ.get('APP_SECRET', ''), flush=True); "
        f"sys.argv = ['echo_http.py', '127.0.0.1', '{APP_PORT}', 'local']; "
        f"runpy.run_path({str(SERVERS / 'echo_http.py')!r}, run_name='__main__')"
    )
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                *(PYTHON, "-m", "podside", "exec", "-v", "--context", "podside-sandbox"),
                *("-n", namespace, "--target", "pod/app", *options, "--", PYTHON, "-c", program),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        process.terminate()
        process.wait(30)
        log.unlink()


def test_mirror_steal_and_env_work_in_a_pod_that_runs_as_uid_1000(
    core: Any, sandbox: Any, namespace: str
) -> None:
    _non_root_pod(core, namespace)
    pod_ip = core.read_namespaced_pod("app", namespace).status.pod_ip
    with _session(namespace) as log:

        def mirrored() -> bool:
            answered_by = who_answers(sandbox, pod_ip, APP_PORT)
            return answered_by == "app" and "local GET / from" in log.read_text()

        try:
            wait_for(mirrored, timeout=90, what="a mirrored request")
        except AssertionError as error:
            raise AssertionError(f"{error}; podside said: {log.read_text()}") from None
        assert "secret=only-in-the-pod" in log.read_text()
        assert who_answers(sandbox, pod_ip, APP_PORT) == "app"  # mirror leaves the pod's answer
    with _session(namespace, "--mode", "steal") as log:
        wait_for(
            lambda: who_answers(sandbox, pod_ip, APP_PORT) == "local",
            timeout=90,
            what=f"the stolen request answered here ({log.read_text()})",
        )
        assert "reusing the agent" in log.read_text()
    # The agent's spec, not the pod's, decided who it runs as.
    (agent,) = core.read_namespaced_pod("app", namespace).spec.ephemeral_containers
    assert agent.security_context.run_as_user == 0
    assert agent.security_context.run_as_non_root is False


async def _handshake(ctx: Any, namespace: str, port: int, token: str) -> None:
    session = AgentSession(token, description="the agent")
    try:
        await session.attach(
            lambda factory: open_port_forward(ctx.configuration, namespace, "app", port, factory)
        )
    finally:
        await session.close()


def test_a_non_root_container_of_the_pod_cannot_enroll_with_the_agent(
    core: Any, ctx: Any, namespace: str, tmp_path: Path, monkeypatch: Any
) -> None:
    intruder_token = new_token()
    _non_root_pod(core, namespace, intruder_token)
    target = resolve_target(ctx, "pod/app")
    agent = ensure_agent(ctx, target, image=PREBUILT, progress=lambda _: None)
    wait_for(
        lambda: asyncio.run(_handshake(ctx, namespace, agent.port, agent.token)) is None,
        what="the agent answering its starter",
    )
    attempt = wait_for(
        lambda: next(
            (
                line
                for line in core.read_namespaced_pod_log(
                    "app", namespace, container="sidecar"
                ).splitlines()
                if line.startswith(f"enroll {agent.port}: ")
            ),
            None,
        ),
        what="the sidecar's enrollment attempt",
    )
    assert attempt == (
        f"enroll {agent.port}: refused: the peer runs as uid 1000, the agent as uid 0"
    )
    with pytest.raises(PodsideError, match=r"^the agent rejected the session token$"):
        asyncio.run(_handshake(ctx, namespace, agent.port, intruder_token))

    # A second developer joins through podside's own enrollment container, which runs as the
    # agent does whatever the pod's user is.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "second-developer"))
    joined = ensure_agent(ctx, target, image=PREBUILT, progress=lambda _: None)
    assert (joined.container, joined.reused) == (agent.container, True)
    asyncio.run(_handshake(ctx, namespace, joined.port, joined.token))
    names = [c.name for c in core.read_namespaced_pod("app", namespace).spec.ephemeral_containers]
    assert len(names) == 2 and names[1].startswith("podside-enroll-"), names
