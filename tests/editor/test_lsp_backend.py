"""`podside lsp` as the extension sees it: commands answered, sessions owned, one-line errors."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from tests.editor.conftest import Backend
from tests.topology import free_port

REPO = Path(__file__).resolve().parents[2]
SANDBOX_CONTEXT = "podside-sandbox"
SANDBOX_DEFAULT = ("--context", SANDBOX_CONTEXT, "-n", "default")


def loopback_listening_ports() -> set[int]:
    """The TCP ports something listens on at 127.0.0.1 or any address, from /proc/net/tcp."""
    listening = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state = line.split()[1:4]
        address, port = local.split(":")
        if state == "0A" and address in ("0100007F", "00000000"):
            listening.add(int(port, 16))
    return listening


def test_lists_the_sandbox_context_as_current(backend: Backend) -> None:
    answer = backend.command("podside.listContexts")
    assert SANDBOX_CONTEXT in answer["contexts"]
    assert answer["current"] == SANDBOX_CONTEXT


def test_lists_namespaces_of_a_context(backend: Backend) -> None:
    namespaces = backend.command("podside.listNamespaces", {"context": SANDBOX_CONTEXT})
    assert "default" in namespaces


def test_lists_workloads_and_pods_of_a_namespace(backend: Backend) -> None:
    targets = backend.command(
        "podside.listTargets", {"context": SANDBOX_CONTEXT, "namespace": "default"}
    )
    blog = next(t for t in targets if t["kind"] == "deployment" and t["name"] == "blog")
    assert blog == {
        "kind": "deployment",
        "name": "blog",
        "namespace": "default",
        "containers": ["blog"],
        "ports": [8080],
    }
    pods = [t for t in targets if t["kind"] == "pod" and t["name"].startswith("blog-")]
    assert pods and pods[0]["ports"] == [8080]


def test_targets_are_the_same_objects_as_podside_targets_json(backend: Backend) -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "podside", "targets", "-o", "json", *SANDBOX_DEFAULT],
        check=True,
        capture_output=True,
        text=True,
    )
    answer = backend.command(
        "podside.listTargets", {"context": SANDBOX_CONTEXT, "namespace": "default"}
    )
    assert answer == json.loads(listed.stdout)


def test_an_unknown_context_is_a_one_line_error(backend: Backend) -> None:
    with pytest.raises(JsonRpcException) as raised:
        backend.command("podside.listNamespaces", {"context": "no-such-context"})
    message = str(raised.value)
    assert "no-such-context" in message
    assert "\n" not in message


def python_launch(**fields: Any) -> dict[str, Any]:
    return {
        "name": "blog",
        "type": "podside",
        "request": "launch",
        "runtime": "python",
        "target": "deployment/blog",
        "context": SANDBOX_CONTEXT,
        "program": "/work/examples/blog/app.py",
        **fields,
    }


def test_resolve_launch_wraps_the_python_interpreter_with_podside_exec(backend: Backend) -> None:
    answer = backend.command("podside.resolveLaunch", python_launch())
    configuration = answer["debugConfiguration"]
    python = configuration["python"]
    assert python[python.index("exec") :][:6] == [
        "exec",
        "--target",
        "deployment/blog",
        "--context",
        SANDBOX_CONTEXT,
        "--",
    ]
    assert python[-1] == "python3"
    assert configuration["program"] == "/work/examples/blog/app.py"
    assert configuration["podsideSessionId"] == answer["sessionId"]
    assert "PODSIDE_EVENTS" in configuration["env"]
    assert answer["adapter"]["command"][-2:] == ["-m", "debugpy.adapter"]
    backend.wait_for(
        "podside/sessionState",
        lambda p: p["sessionId"] == answer["sessionId"] and p["state"] == "starting",
    )


def test_a_launch_without_target_fails_in_one_line_and_opens_no_session(backend: Backend) -> None:
    launch = python_launch()
    del launch["target"]
    with pytest.raises(JsonRpcException) as raised:
        backend.command("podside.resolveLaunch", launch)
    assert "deployment/blog" in str(raised.value)
    assert backend.command("podside.listSessions") == []


class Recorder(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_session_events_become_notifications_and_traffic_can_be_replayed(
    backend: Backend,
) -> None:
    program = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    program.paths = []  # type: ignore[attr-defined]
    threading.Thread(target=program.serve_forever, daemon=True).start()
    answer = backend.command("podside.resolveLaunch", python_launch())
    session_id = answer["sessionId"]
    events_path = answer["debugConfiguration"]["env"]["PODSIDE_EVENTS"]

    # What the wrapped `podside exec` reports while the debuggee runs.
    request = b"GET /posts/7 HTTP/1.1\r\nHost: blog\r\n\r\n"
    events = [
        {"event": "progress", "message": "agent starting in pod blog-1"},
        {"event": "state", "state": "running"},
        {
            "event": "traffic",
            "id": "r1",
            "time": "2025-01-01T00:00:00Z",
            "method": "GET",
            "path": "/posts/7",
            "status": 200,
            "duration": 0.004,
            "mode": "mirror",
            "localPort": program.server_address[1],
            "request": base64.b64encode(request).decode(),
        },
    ]
    with socket.socket(socket.AF_UNIX) as exec_side:
        exec_side.connect(events_path)
        exec_side.sendall(b"".join(json.dumps(e).encode() + b"\n" for e in events))
        backend.wait_for("podside/progress", lambda p: p["message"].startswith("agent starting"))
        backend.wait_for("podside/sessionState", lambda p: p["state"] == "running")
        traffic = backend.wait_for("podside/traffic", lambda p: p["id"] == "r1")
        assert traffic == {
            "sessionId": session_id,
            "id": "r1",
            "time": "2025-01-01T00:00:00Z",
            "method": "GET",
            "path": "/posts/7",
            "status": 200,
            "duration": 0.004,
            "mode": "mirror",
        }

        # The extension says so when the debugger has its breakpoints (configurationDone).
        attached = backend.command(
            "podside.debuggerAttached", {"sessionId": session_id, "attached": True}
        )
        assert attached["debuggerAttached"] is True
        exec_side.settimeout(5)
        assert exec_side.recv(4096) == b'{"command": "debugger", "attached": true}\n'
        replayed = backend.command(
            "podside.replayRequest",
            {"sessionId": session_id, "requestId": "r1", "withDebugger": True},
        )
        assert replayed["status"] == 204
        assert program.paths == ["/posts/7"]  # type: ignore[attr-defined]

        stopped = backend.command("podside.stopSession", {"sessionId": session_id})
        assert stopped["state"] == "stopped"
        assert exec_side.recv(1) == b"", "stopping the session closes the wrapped exec's socket"
    program.shutdown()


def test_a_session_whose_podside_exec_fails_reports_failed_in_one_line(backend: Backend) -> None:
    session = backend.command(
        "podside.startSession",
        {
            "target": "deployment/no-such-workload",
            "context": SANDBOX_CONTEXT,
            "command": ["true"],
        },
    )
    failed = backend.wait_for(
        "podside/sessionState",
        lambda p: p["sessionId"] == session["sessionId"] and p["state"] == "failed",
        timeout=60,
    )
    assert failed["message"]
    assert "\n" not in failed["message"]


def launch_held_blog(backend: Backend, **fields: Any) -> dict[str, Any]:
    """The blog of examples/ run by the backend with holdUntilAttached, on a free port here."""
    port = free_port()
    answer: dict[str, Any] = backend.command(
        "podside.resolveLaunch",
        python_launch(
            program=str(REPO / "examples" / "blog" / "app.py"),
            holdUntilAttached=True,
            execArgs=["--port-map", f"{port}:8080", "--env", f"PORT={port}"],
            **fields,
        ),
        timeout=200,
    )
    return answer


def test_a_launch_that_steals_with_a_filter_answers_only_the_matching_requests(
    backend: Backend,
) -> None:
    """The traffic deployment sends GET / every second and POST /posts every fifth: with
    methodFilter POST the local blog answers the POSTs, and the pod's app the rest."""
    answer = launch_held_blog(backend, mode="steal", methodFilter=["POST"])
    session_id = answer["sessionId"]
    try:
        backend.command("podside.debuggerAttached", {"sessionId": session_id, "attached": True})
        stolen = backend.wait_for(
            "podside/traffic", lambda p: p["sessionId"] == session_id, timeout=60
        )
        assert (stolen["mode"], stolen["method"], stolen["path"]) == ("steal", "POST", "/posts")
        assert stolen["status"] in (200, 201, 303), stolen
        # Seconds of GET / went by meanwhile: none of them reached the local blog.
        seen = backend.notifications["podside/traffic"]
        assert {p["method"] for p in seen if p["sessionId"] == session_id} == {"POST"}
    finally:
        backend.command("podside.stopSession", {"sessionId": session_id})


def test_hold_until_attached_runs_the_program_and_holds_requests_until_the_editor_attaches(
    backend: Backend,
) -> None:
    """The sandbox's traffic deployment sends the blog a request every second."""
    answer = launch_held_blog(backend)
    session_id = answer["sessionId"]
    configuration = answer["debugConfiguration"]
    assert configuration["request"] == "attach"
    debug_port = configuration["connect"]["port"]
    try:
        # Answered only once debugpy's server listens, so the debugger can attach at once.
        # Looked up rather than connected to: a client that connects and leaves while
        # debugpy's adapter is still starting makes the adapter fail (it reports its
        # sockets to the first client and gets "No more messages").
        assert debug_port in loopback_listening_ports()
        try:
            asked = backend.wait_for(
                "podside/attachDebugger", lambda p: p["sessionId"] == session_id, timeout=60
            )
        except TimeoutError:
            raise AssertionError(f"no attach asked for: {dict(backend.notifications)}") from None
        assert "to port 8080 waits" in asked["reason"]
        # The kubelet's readiness probe (GET /healthz every 2 s) is not held: it reaches the
        # program with no debugger (and is marked); nothing else does until one attaches.
        probe = backend.wait_for(
            "podside/traffic",
            lambda p: p["sessionId"] == session_id and p["path"] == "/healthz",
            timeout=30,
        )
        assert (probe["probe"], probe["status"]) == (True, 200)
        delivered = [p for p in backend.notifications["podside/traffic"] if "probe" not in p]
        assert not delivered, "only probes are delivered while held"

        backend.command("podside.debuggerAttached", {"sessionId": session_id, "attached": True})
        traffic = backend.wait_for(
            "podside/traffic",
            lambda p: p["sessionId"] == session_id and "probe" not in p,
            timeout=30,
        )
        # GET / every second, POST /posts (201) every fifth: whichever waited first.
        assert (traffic["mode"], traffic["status"]) in (("mirror", 200), ("mirror", 201))
        page = backend.wait_for(
            "podside/traffic",
            lambda p: p["sessionId"] == session_id and p["path"] == "/",
            timeout=30,
        )
        assert "probe" not in page
    finally:
        stopped = backend.command("podside.stopSession", {"sessionId": session_id})
    assert stopped["state"] == "stopped"


def test_a_replay_with_the_debugger_asks_for_one_and_waits_until_it_is_attached(
    backend: Backend,
) -> None:
    answer = launch_held_blog(backend)
    session_id = answer["sessionId"]
    try:
        # The session's first held request asks once; the editor attaching answers it.
        backend.wait_for("podside/attachDebugger", lambda p: p["sessionId"] == session_id, 60)
        backend.command("podside.debuggerAttached", {"sessionId": session_id, "attached": True})
        traffic = backend.wait_for(
            "podside/traffic",
            lambda p: p["sessionId"] == session_id and (p["method"], p["path"]) == ("GET", "/"),
            30,
        )
        backend.command("podside.debuggerAttached", {"sessionId": session_id, "attached": False})
        asked_before = len(backend.notifications["podside/attachDebugger"])

        async def replay_after_attach() -> Any:
            replay = asyncio.ensure_future(
                backend.client.workspace_execute_command_async(
                    types.ExecuteCommandParams(
                        command="podside.replayRequest",
                        arguments=[
                            {
                                "sessionId": session_id,
                                "requestId": traffic["id"],
                                "withDebugger": True,
                            }
                        ],
                    )
                )
            )
            while len(backend.notifications["podside/attachDebugger"]) == asked_before:
                await asyncio.sleep(0.05)
            assert not replay.done(), "the replay waits for the debugger"
            await backend.client.workspace_execute_command_async(
                types.ExecuteCommandParams(
                    command="podside.debuggerAttached",
                    arguments=[{"sessionId": session_id, "attached": True}],
                )
            )
            return await replay

        replayed = backend.run(replay_after_attach(), 60)
        # The ask may be the replay's or, if it came first, a held request's from the traffic
        # deployment: either way one ask covers both, and the replay went on only once attached.
        asked = backend.notifications["podside/attachDebugger"][asked_before]
        assert asked["reason"].startswith(("replaying GET ", "a request from "))
        assert replayed["status"] == 200
    finally:
        backend.command("podside.stopSession", {"sessionId": session_id})
