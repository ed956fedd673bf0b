"""Who may use an agent in a pod: possessing what the pod's spec shows grants nothing; a user
who may add ephemeral containers joins the running agent with a token of its own, so several
developers steal from one pod at once through one agent; the same user's next session reuses
it with no new container."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from podside.errors import PodsideError
from podside.kube.agent import AgentImage, ensure_agent
from podside.kube.agent_tokens import TokenCache
from podside.kube.config import load_context
from podside.kube.portforward import open_port_forward
from podside.kube.targets import resolve_target
from podside.session import AgentSession
from tests.kube.conftest import who_answers
from tests.sandbox.conftest import pod_phase, run_pod, wait_for
from tests.topology import PYTHON, SERVERS

APP_PORT = 8080
# What a user needs to see pods and reach their ports, and no more.
VIEWER_RULES = ("get,list,watch:pods", "create,get:pods/portforward")
DEVELOPER_RULES = (*VIEWER_RULES, "patch:pods/ephemeralcontainers")

# The prebuilt agent image (`--agent-image`): the sandbox runs the agent for it at once, with
# no code to deliver, as these tests of the container and its tokens need.
PREBUILT = AgentImage.of("ghcr.io/podside/agent:0.1.0")


def _user(sandbox: Any, namespace: str, role: str, rules: tuple[str, ...]) -> tuple[str, Path]:
    """A sandbox user limited to `rules` in `namespace`: (context, standalone kubeconfig)."""
    from podside.sandbox.control import add_restricted_user
    from podside.sandbox.users import Rule

    name = f"{role}-{os.urandom(3).hex()}"
    return add_restricted_user(
        sandbox, name, tuple(Rule.parse(rule, (namespace,)) for rule in rules)
    )


def _app_pod(core: Any, namespace: str) -> None:
    run_pod(
        core,
        namespace,
        "app",
        [PYTHON, str(SERVERS / "echo_http.py"), "0.0.0.0", str(APP_PORT), "app"],
        terminationGracePeriodSeconds=1,
    )
    wait_for(lambda: pod_phase(core, namespace, "app") == "Running", what="app running")


def _spec_strings(container: Any) -> list[str]:
    """Everything an agent container's spec shows that could pass for a token."""
    shown = [container.name, container.image, *(container.args or [])]
    shown += [variable.value for variable in container.env or [] if variable.value]
    return shown


async def _handshake(context: Any, namespace: str, port: int, token: str) -> bool:
    """True once a session with `token` is open; PodsideError says why not."""
    session = AgentSession(token, description="the agent")
    try:
        await session.attach(
            lambda factory: open_port_forward(
                context.configuration, namespace, "app", port, factory
            )
        )
    finally:
        await session.close()
    return True


def test_what_get_pods_shows_does_not_open_an_admins_agent(
    core: Any, ctx: Any, sandbox: Any, namespace: str, tmp_path: Path, monkeypatch: Any
) -> None:
    _app_pod(core, namespace)
    admin_agent = ensure_agent(
        ctx, resolve_target(ctx, "pod/app"), image=PREBUILT, progress=lambda _: None
    )
    _, kubeconfig = _user(sandbox, namespace, "viewer", VIEWER_RULES)
    viewer = load_context(namespace=namespace, kubeconfig=str(kubeconfig))
    # The admin's own token opens it (retried while the agent starts listening).
    wait_for(
        lambda: asyncio.run(_handshake(ctx, namespace, admin_agent.port, admin_agent.token)),
        what="the admin's session",
    )

    # The viewer reads the pod as `kubectl get pod -o yaml` would, and tries all it shows.
    from kubernetes import client

    pod = client.CoreV1Api(viewer.api_client).read_namespaced_pod("app", namespace)
    (agent_spec,) = pod.spec.ephemeral_containers
    for shown in _spec_strings(agent_spec):
        with pytest.raises(PodsideError, match=r"^the agent rejected the session token$"):
            asyncio.run(_handshake(viewer, namespace, admin_agent.port, shown))

    # Through podside itself, on the viewer's machine: no token in its cache, no right to join.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "viewer"))
    with pytest.raises(PodsideError) as error:
        ensure_agent(
            viewer, resolve_target(viewer, "pod/app"), image=PREBUILT, progress=lambda _: None
        )
    assert error.value.message.startswith(
        f"the agent {admin_agent.container} in pod {namespace}/app was started by another "
        "session, and this machine holds no token for it; joining it: cannot patch "
        f"pods/ephemeralcontainers in namespace {namespace} (RBAC, user viewer-"
    )
    assert len(core.read_namespaced_pod("app", namespace).spec.ephemeral_containers) == 1


@contextmanager
def _stealing(
    context: str, kubeconfig: Path, cache: Path, namespace: str, developer: str, local_port: int
) -> Iterator[Path]:
    """`podside exec` of one developer stealing the app's requests with `x-dev: <developer>`,
    answered by a local server named after the developer; yields its log."""
    log = Path(tempfile.mkstemp(prefix=f"podside-{developer}-")[1])
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                *(PYTHON, "-m", "podside", "exec", "-v", "--kubeconfig", str(kubeconfig)),
                *("--context", context, "-n", namespace, "--target", "pod/app"),
                *("--mode", "steal", "--http-filter", f"x-dev: ^{developer}$"),
                *("--port-map", f"{local_port}:{APP_PORT}", "--"),
                *(PYTHON, str(SERVERS / "echo_http.py"), "127.0.0.1", str(local_port), developer),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "XDG_CACHE_HOME": str(cache)},
        )
    try:
        yield log
    finally:
        process.terminate()
        process.wait(30)
        log.unlink()


def test_two_developers_steal_from_one_pod_through_one_agent(
    core: Any, sandbox: Any, namespace: str, tmp_path: Path
) -> None:
    _app_pod(core, namespace)
    pod_ip = core.read_namespaced_pod("app", namespace).status.pod_ip
    alice = _user(sandbox, namespace, "alice", DEVELOPER_RULES)
    bob = _user(sandbox, namespace, "bob", DEVELOPER_RULES)
    with _stealing(*alice, tmp_path / "alice", namespace, "alice", 18081) as alice_log:
        wait_for(
            lambda: who_answers(sandbox, pod_ip, APP_PORT, "alice") == "alice",
            timeout=90,
            what=f"alice's steal ({alice_log.read_text()})",
        )
        with _stealing(*bob, tmp_path / "bob", namespace, "bob", 18082) as bob_log:
            wait_for(
                lambda: who_answers(sandbox, pod_ip, APP_PORT, "bob") == "bob",
                timeout=90,
                what=f"bob's steal ({bob_log.read_text()})",
            )
            for _ in range(5):
                assert who_answers(sandbox, pod_ip, APP_PORT, "alice") == "alice"
                assert who_answers(sandbox, pod_ip, APP_PORT, "bob") == "bob"
                assert who_answers(sandbox, pod_ip, APP_PORT, None) == "app"
                assert who_answers(sandbox, pod_ip, APP_PORT, "carol") == "app"
            assert "joined the agent" in bob_log.read_text()

        pod = core.read_namespaced_pod("app", namespace)
        names = [c.name for c in pod.spec.ephemeral_containers]
        assert len(names) == 2 and names[0].startswith("podside-agent-"), names
        assert names[1].startswith("podside-enroll-"), names
        states = {s.name: s.state for s in pod.status.ephemeral_container_statuses}
        assert states[names[0]].running is not None
        assert states[names[1]].terminated.exit_code == 0

        # Alice's next session (same machine, same cache) reuses the agent as it is.
        again = subprocess.run(
            [
                *(PYTHON, "-m", "podside", "exec", "--kubeconfig", str(alice[1])),
                *("--context", alice[0], "-n", namespace, "--target", "pod/app", "--", "true"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "alice")},
        )
        assert again.returncode == 0, again.stderr
        assert f"reusing the agent {names[0]}" in again.stderr
        assert len(core.read_namespaced_pod("app", namespace).spec.ephemeral_containers) == 2


def test_two_sessions_that_both_find_no_agent_end_up_sharing_one(
    core: Any, sandbox: Any, namespace: str, tmp_path: Path
) -> None:
    """Two developers' sessions (a cache each) start on a pod without an agent. Each is held
    where it has seen no agent and is about to add one (its progress line says so) until the
    other is there too, the widest the race can be: one addition wins, the other session
    joins the winner's agent instead of adding a second."""
    _app_pod(core, namespace)
    both_decided = threading.Barrier(2, timeout=60)
    endpoints: dict[str, Any] = {}
    said: dict[str, list[str]] = {"alice": [], "bob": []}
    failures: list[BaseException] = []

    def session(developer: str) -> None:
        held = False

        def progress(message: str) -> None:
            nonlocal held
            said[developer].append(message)
            if message.startswith("starting the agent") and not held:
                held = True
                both_decided.wait()

        try:
            context = load_context("podside-sandbox", namespace, os.environ["KUBECONFIG"])
            endpoints[developer] = ensure_agent(
                context,
                resolve_target(context, "pod/app"),
                image=PREBUILT,
                progress=progress,
                tokens=TokenCache(tmp_path / developer),
            )
        except BaseException as error:
            failures.append(error)
            both_decided.abort()

    threads = [threading.Thread(target=session, args=(name,)) for name in ("alice", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not failures, failures
    pod = core.read_namespaced_pod("app", namespace)
    names = [container.name for container in pod.spec.ephemeral_containers]
    assert len([name for name in names if name.startswith("podside-agent-")]) == 1, names
    assert len([name for name in names if name.startswith("podside-enroll-")]) == 1, names
    # One addition was refused (the pod had changed), and that session joined the other's.
    (loser,) = [name for name, lines in said.items() if "joined the agent" in lines]
    assert any("changed while the agent was being added" in line for line in said[loser])
    alice, bob = endpoints["alice"], endpoints["bob"]
    assert (alice.container, alice.port) == (bob.container, bob.port)
    assert alice.token != bob.token
    context = load_context("podside-sandbox", namespace, os.environ["KUBECONFIG"])
    for endpoint in (alice, bob):
        wait_for(
            lambda endpoint=endpoint: asyncio.run(
                _handshake(context, namespace, endpoint.port, endpoint.token)
            ),
            what="a session with each developer's token",
        )
