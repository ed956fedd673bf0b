"""What podside tells the editor's backend (PODSIDE_EVENTS) and, with -v, the user."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
from pathlib import Path

from tests.core.agent_client import agent_status
from tests.topology import PYTHON, SERVERS, Pod, wait_for


def test_events_report_progress_state_and_each_mirrored_exchange(pod: Pod, tmp_path: Path) -> None:
    path = str(tmp_path / "events.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen()
    lines: list[dict[str, object]] = []
    connected: list[socket.socket] = []

    def collect() -> None:
        connection, _ = listener.accept()
        connected.append(connection)
        buffer = b""
        while chunk := connection.recv(65536):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                lines.append(json.loads(line))

    threading.Thread(target=collect, daemon=True).start()
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
        env={**os.environ, "PODSIDE_EVENTS": path},
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
        wait_for(lambda: any(line["event"] == "traffic" for line in lines), what="a traffic event")
        traffic = next(line for line in lines if line["event"] == "traffic")
        assert (traffic["method"], traffic["path"], traffic["status"], traffic["mode"]) == (
            "POST",
            "/seen?a=b",
            200,
            "mirror",
        )
        assert traffic["localPort"] == 8080
        request = base64.b64decode(str(traffic["request"]))
        assert request.startswith(b"POST /seen?a=b HTTP/1.1\r\n") and request.endswith(b"x=1")
        assert any(line["event"] == "progress" for line in lines)
        # The backend closing the socket stops the session.
        connected[0].shutdown(socket.SHUT_RDWR)
        assert program.wait(30) == 143
    finally:
        if program.poll() is None:
            program.kill()
        listener.close()


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
