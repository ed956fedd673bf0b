"""`podside sandbox up|down|status|add-user`: start, stop and inspect the sandbox daemon."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from podside.errors import PodsideError
from podside.sandbox import kubeconfig, owners
from podside.sandbox.layout import CONTEXT_NAME, StateDir
from podside.sandbox.node import network
from podside.sandbox.node.kubelet import recorded_mountpoints, remove_mountpoint
from podside.sandbox.users import ADMIN_USER, Rule, add_user, create_admin, load_users

START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 15
EXIT_DOWN = 3


def require_root() -> None:
    if os.geteuid() != 0:
        raise PodsideError("podside sandbox needs root (network namespaces): run it with sudo")


def _read_state(state: StateDir) -> dict[str, Any] | None:
    try:
        loaded: dict[str, Any] = json.loads(state.state_file.read_text())
    except (OSError, ValueError):
        return None
    return loaded


def admin_token(state: StateDir) -> str:
    return next(user.token for user in load_users(state.users_file) if user.name == ADMIN_USER)


def api_get(state: StateDir, port: int, path: str, timeout: float = 2) -> Any:
    """GET from the sandbox API as its admin (stdlib only: `status` stays light)."""
    context = ssl.create_default_context(cafile=str(state.ca_cert))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {admin_token(state)}"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"GET {path}: HTTP {response.status}")
        return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()
    finally:
        connection.close()


def healthy(state: StateDir) -> dict[str, Any] | None:
    """The daemon's state if it runs and answers, else None."""
    running = _read_state(state)
    if not running or not owners.alive(int(running["pid"])):
        return None
    try:
        api_get(state, int(running["port"]), "/readyz")
    except (OSError, ValueError, StopIteration):
        return None
    return running


def up(state: StateDir) -> int:
    require_root()
    running = healthy(state)
    if running is not None:
        print(f"podside sandbox is already running at {running['server']}")
        _add_kubeconfig_context(state, running["server"])
        return 0
    started = time.monotonic()
    _teardown(state, keep_kubeconfig=True)
    state.root.mkdir(parents=True, exist_ok=True)
    os.chmod(state.root, 0o700)
    from podside.sandbox.tls import create_certificates

    create_certificates(state.ca_cert, state.ca_key, state.server_cert, state.server_key)
    create_admin(state.users_file)
    with state.log_file.open("ab") as log_file:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "podside.sandbox.daemon", str(state.root)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while (running := healthy(state)) is None:
        if daemon.poll() is not None or time.monotonic() > deadline:
            tail = (
                state.log_file.read_text(errors="replace").strip().splitlines()[-1:]
                if state.log_file.exists()
                else []
            )
            _teardown(state, keep_kubeconfig=True)
            raise PodsideError(
                f"the sandbox daemon did not start ({' '.join(tail) or 'no log'}); see {state.log_file}"
            )
        time.sleep(0.05)
    path = _add_kubeconfig_context(state, running["server"])
    elapsed = time.monotonic() - started
    print(f"podside sandbox is up at {running['server']} ({elapsed:.1f}s)")
    print(
        f"kubeconfig: context {admin_context(state)} in {path} (standalone: {state.admin_kubeconfig})"
    )
    print(
        "demo workloads in namespace default: deployment/blog, deployment/auditor, deployment/traffic"
    )
    print(f"state and logs: {state.root}")
    return 0


def choose_admin_context(state: StateDir, path: Path) -> str:
    """`podside-sandbox`, unless another running sandbox has that context in the same
    kubeconfig: then `podside-sandbox-<id>`, so neither overwrites the other's. A name once
    chosen stays for as long as the sandbox's entries do."""
    recorded = kubeconfig.recorded_admin(state, path)
    if recorded:
        return recorded
    for owner in owners.running(excluding=state):
        if CONTEXT_NAME in kubeconfig.recorded_names(StateDir(owner.state_dir), path):
            return f"{CONTEXT_NAME}-{state.sandbox_id}"
    return CONTEXT_NAME


def admin_context(state: StateDir) -> str:
    """The admin context this sandbox added to the user's kubeconfig."""
    return kubeconfig.recorded_admin(state, kubeconfig.user_kubeconfig_path()) or CONTEXT_NAME


def _add_kubeconfig_context(state: StateDir, server: str) -> Path:
    ca_pem = state.ca_cert.read_bytes()
    token = admin_token(state)
    path = kubeconfig.user_kubeconfig_path()
    context = choose_admin_context(state, path)
    kubeconfig.write_standalone(state.admin_kubeconfig, context, server, ca_pem, token)
    kubeconfig.add_context(state, path, context, server, ca_pem, token, admin=True)
    return path


def add_restricted_user(state: StateDir, name: str, rules: tuple[Rule, ...]) -> tuple[str, Path]:
    """A user limited to `rules`, with a context `podside-sandbox-NAME` in the user's kubeconfig
    and a standalone kubeconfig in the state dir; returns (context, standalone path)."""
    require_root()
    running = healthy(state)
    if running is None:
        raise PodsideError("the podside sandbox is not running: start it with `podside sandbox up`")
    user = add_user(state.users_file, name, rules)
    context = f"{admin_context(state)}-{name}"
    ca_pem = state.ca_cert.read_bytes()
    standalone = state.root / f"kubeconfig-{name}"
    kubeconfig.write_standalone(standalone, context, running["server"], ca_pem, user.token)
    kubeconfig.add_context(
        state, kubeconfig.user_kubeconfig_path(), context, running["server"], ca_pem, user.token
    )
    return context, standalone


def _stop_daemon(state: StateDir) -> bool:
    running = _read_state(state)
    if not running or not owners.alive(int(running["pid"])):
        return False
    pid = int(running["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while owners.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if owners.alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    return True


def _teardown(state: StateDir, keep_kubeconfig: bool) -> list[str]:
    removed = []
    if _stop_daemon(state):
        removed.append("daemon")
    # Whatever this sandbox's daemon left behind (if it died): every process in one of its pod
    # namespaces, then the namespaces, its node namespace and (if no other sandbox runs) the
    # host route. Other sandboxes' names differ, so they are never touched.
    node = network.NodeNetwork(state)
    pod_namespaces = node.pod_namespaces()
    for name in pod_namespaces:
        for pid in network.namespace_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    if pod_namespaces:
        removed.append(f"{len(pod_namespaces)} pod namespace(s)")
    node_existed = node.exists()
    node.teardown()
    if node_existed:
        removed.append("node namespace, bridge and service rules")
    if owners.leave(state):
        removed.append("host route")
    for mountpoint in recorded_mountpoints(state):
        remove_mountpoint(mountpoint, state)
    if not keep_kubeconfig:
        changed = kubeconfig.remove_recorded_contexts(state)
        if changed:
            removed.append(f"kubeconfig entries in {', '.join(changed)}")
    if state.root.exists():
        if keep_kubeconfig and state.kubeconfig_entries_file.exists():
            for child in state.root.iterdir():
                if child != state.kubeconfig_entries_file:
                    shutil.rmtree(
                        child
                    ) if child.is_dir() and not child.is_symlink() else child.unlink()
        else:
            shutil.rmtree(state.root)
            removed.append(f"state in {state.root}")
    return removed


def down(state: StateDir) -> int:
    require_root()
    removed = _teardown(state, keep_kubeconfig=False)
    print(
        "podside sandbox removed: " + ", ".join(removed)
        if removed
        else "podside sandbox was not running; nothing to remove"
    )
    return 0


def status(state: StateDir) -> int:
    running = healthy(state)
    if running is None:
        print("podside sandbox is down")
        return EXIT_DOWN
    port = int(running["port"])
    print(
        f"podside sandbox is up: API server {running['server']} (daemon pid {running['pid']}), context {admin_context(state)}"
    )
    pods = api_get(state, port, "/api/v1/pods")
    for pod in pods["items"]:
        status_body = pod.get("status") or {}
        print(
            f"  pod {pod['metadata']['namespace']}/{pod['metadata']['name']}: {status_body.get('phase', 'Pending')} {status_body.get('podIP', '')}".rstrip()
        )
    return 0
