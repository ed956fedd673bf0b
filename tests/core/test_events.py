"""What podside tells the editor's backend (PODSIDE_EVENTS) and, with -v, the user."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.core.agent_client import agent_status
from tests.topology import PYTHON, SERVERS, Pod, wait_for


class Backend:
    """The editor backend's end of PODSIDE_EVENTS: collects events, sends commands."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.lines: list[dict[str, object]] = []
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(self.path)
        self._listener.listen()
        self._connection: socket.socket | None = None
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        self._connection, _ = self._listener.accept()
        buffer = b""
        while chunk := self._connection.recv(65536):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self.lines.append(json.loads(line))

    def events(self, kind: str) -> list[dict[str, object]]:
        return [line for line in self.lines if line["event"] == kind]

    def debugger_attached(self, attached: bool) -> None:
        assert self._connection is not None
        message = {"command": "debugger", "attached": attached}
        self._connection.sendall(json.dumps(message).encode() + b"\n")

    def hang_up(self) -> None:
        """What the editor does to stop the session."""
        assert self._connection is not None
        self._connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._listener.close()


def test_events_report_progress_state_and_each_mirrored_exchange(pod: Pod, tmp_path: Path) -> None:
    backend = Backend(tmp_path / "events.sock")
    lines = backend.lines
    program = subprocess.Popen(
        [
            *pod.podside_exec(),
            "--",
            PYTHON,
            str(SERVERS / "echo_http.py"),
            "0.0.0.0",
            "8080",
            "local",
        ],
        env={**os.environ, "PODSIDE_EVENTS": backend.path},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: {"event": "state", "state": "running", "message": ""} in lines,
            what="the running state",
        )
        wait_for(lambda: 8080 in agent_status(pod)["mirrored_ports"], what="the subscription")
        subprocess.run(
            ["curl", "-sS", "-m", "5", "-d", "x=1", f"http://{pod.pod_ip}:8080/seen?a=b"],
            capture_output=True,
            check=True,
        )
        wait_for(lambda: backend.events("traffic"), what="a traffic event")
        traffic = backend.events("traffic")[0]
        assert (traffic["method"], traffic["path"], traffic["status"], traffic["mode"]) == (
            "POST",
            "/seen?a=b",
            200,
            "mirror",
        )
        assert traffic["localPort"] == 8080
        request = base64.b64decode(str(traffic["request"]))
        assert request.startswith(b"POST /seen?a=b HTTP/1.1\r\n") and request.endswith(b"x=1")
        assert backend.events("progress")
        # The backend closing the socket stops the session.
        backend.hang_up()
        assert program.wait(30) == 143
    finally:
        if program.poll() is None:
            program.kill()
        backend.close()


def test_verbose_prints_each_mirrored_request(pod: Pod, tmp_path: Path) -> None:
    errors = tmp_path / "stderr"
    with errors.open("w") as sink:
        program = subprocess.Popen(
            [
                *pod.podside_exec("-v"),
                "--",
                PYTHON,
                str(SERVERS / "echo_http.py"),
                "0.0.0.0",
                "8080",
                "local",
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
        try:
            wait_for(lambda: 8080 in agent_status(pod)["mirrored_ports"], what="the subscription")
            subprocess.run(
                ["curl", "-sS", "-m", "5", f"http://{pod.pod_ip}:8080/verbose"],
                capture_output=True,
                check=True,
            )
            wait_for(
                lambda: "podside: mirrored GET /verbose -> 200" in errors.read_text(),
                what="the exchange on stderr",
            )
        finally:
            program.terminate()
            program.wait(30)


def test_the_program_never_sees_the_backends_socket(pod: Pod, tmp_path: Path) -> None:
    path = str(tmp_path / "events.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    result = subprocess.run(
        [
            *pod.podside_exec(),
            "--",
            "sh",
            "-c",
            "echo ${PODSIDE_EVENTS:-unset}",
        ],
        env={**os.environ, "PODSIDE_EVENTS": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    listener.close()
    assert result.stdout.strip() == "unset", result.stderr


def test_hold_until_attached_delivers_only_while_a_debugger_is_attached(
    pod: Pod, tmp_path: Path
) -> None:
    backend = Backend(tmp_path / "events.sock")
    output = tmp_path / "program.out"
    with output.open("w") as sink:
        program = subprocess.Popen(
            [
                *pod.podside_exec("--hold-until-attached"),
                "--",
                PYTHON,
                str(SERVERS / "echo_http.py"),
                "0.0.0.0",
                "8080",
                "local",
            ],
            env={**os.environ, "PODSIDE_EVENTS": backend.path},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: 8080 in agent_status(pod)["mirrored_ports"], what="the subscription")
        assert {"event": "listening", "port": 8080} in backend.lines
        # The pod's app answers its client at once; the copy for the program waits.
        answer = subprocess.run(
            ["curl", "-sS", "-m", "5", f"http://{pod.pod_ip}:8080/first"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert '"server": "pod-app"' in answer.stdout
        wait_for(lambda: backend.events("held"), what="a held connection")
        held = backend.events("held")[0]
        assert (held["port"], held["localPort"]) == (8080, 8080)
        # Give a wrong delivery time to happen before looking for it.
        time.sleep(1)
        assert "GET /first" not in output.read_text()
        assert not backend.events("traffic")

        backend.debugger_attached(True)
        wait_for(lambda: "local GET /first" in output.read_text(), what="the held request")
        wait_for(lambda: backend.events("traffic"), what="its traffic event")
        # Attached: the next one goes straight through, without a held event.
        subprocess.run(["curl", "-sS", "-m", "5", f"http://{pod.pod_ip}:8080/second"], check=True)
        wait_for(lambda: "local GET /second" in output.read_text(), what="the second request")
        assert len(backend.events("held")) == 1

        # Detached again: held again.
        backend.debugger_attached(False)
        subprocess.run(["curl", "-sS", "-m", "5", f"http://{pod.pod_ip}:8080/third"], check=True)
        wait_for(lambda: len(backend.events("held")) == 2, what="the second hold")
        time.sleep(1)
        assert "GET /third" not in output.read_text()
        backend.debugger_attached(True)
        wait_for(lambda: "local GET /third" in output.read_text(), what="the third request")
    finally:
        program.terminate()
        program.wait(30)
        backend.close()


def test_hold_until_attached_without_the_editor_is_one_line_and_exit_2(pod: Pod) -> None:
    result = subprocess.run(
        [*pod.podside_exec("--hold-until-attached"), "--", "true"],
        env={key: value for key, value in os.environ.items() if key != "PODSIDE_EVENTS"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "podside: --hold-until-attached needs the editor (podside lsp) to attach a debugger "
        "and release connections; run it from the editor"
    ]


def test_an_ignored_port_stays_local(pod: Pod, tmp_path: Path) -> None:
    backend = Backend(tmp_path / "events.sock")
    program = subprocess.Popen(
        [
            *pod.podside_exec("--ignore-port", "8080"),
            "--",
            PYTHON,
            str(SERVERS / "echo_http.py"),
            "0.0.0.0",
            "8080",
            "local",
        ],
        env={**os.environ, "PODSIDE_EVENTS": backend.path},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: {"event": "listening", "port": 8080} in backend.lines, what="the listen")
        assert 8080 not in agent_status(pod)["mirrored_ports"]
    finally:
        program.terminate()
        program.wait(30)
        backend.close()


def test_ignore_port_takes_only_ports(pod: Pod) -> None:
    result = subprocess.run(
        [*pod.podside_exec("--ignore-port", "http"), "--", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "podside: --ignore-port 'http': expected a port (1-65535)"
