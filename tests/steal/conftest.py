"""Fixtures for steal: a pod with an agent, and `podside exec --mode steal` running the same
echo server as the pod's app under another name, so every answer says who gave it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.topology import PYTHON, SERVERS, Pod, make_pod, run, wait_for


@pytest.fixture
def pod() -> Iterator[Pod]:
    with make_pod() as pod:
        pod.start_agent()
        yield pod


class LocalProgram:
    def __init__(self, process: subprocess.Popen[str], log_path: str) -> None:
        self.process = process
        self.log_path = log_path

    def output(self) -> str:
        with open(self.log_path) as log:
            return log.read()


@contextmanager
def stealing(
    pod: Pod, *options: str, name: str = "local", wait: bool = True, port: int = 8080
) -> Iterator[LocalProgram]:
    """`podside exec --mode steal OPTIONS -- echo_http.py 0.0.0.0 8080 NAME` against the pod."""
    with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
        process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "podside",
                "exec",
                "-v",
                "--agent",
                pod.agent_address,
                "--token",
                pod.token,
                "--mode",
                "steal",
                *(() if port == 8080 else ("--port-map", f"{port}:8080")),
                *options,
                "--",
                PYTHON,
                str(SERVERS / "echo_http.py"),
                "0.0.0.0",
                str(port),
                name,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        program = LocalProgram(process, log.name)
        try:
            if wait:
                wait_for(
                    lambda: (
                        (f"{name} listening" in program.output() and _stolen_by(pod, name))
                        or process.poll() is not None
                    ),
                    what="the steal to start",
                )
                assert process.poll() is None, program.output()
            yield program
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(15)


def _stolen_by(pod: Pod, name: str) -> bool:
    return bool(agent_status(pod).get("stolen_ports"))


def agent_status(pod: Pod) -> dict[str, Any]:
    from tests.core.agent_client import agent_status as status

    return status(pod)


def ask(
    pod: Pod,
    path: str = "/",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    connection: http.client.HTTPConnection | None = None,
) -> dict[str, Any]:
    """One request to the pod's port 8080 from outside the pod; the echo server's JSON."""
    own = connection is None
    conn = connection or http.client.HTTPConnection(pod.pod_ip, 8080, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        assert response.status == 200, (response.status, data)
        return dict(json.loads(data))
    finally:
        if own:
            conn.close()


def nft_tables(pod: Pod) -> str:
    return run(*pod.in_pod("nft", "list", "tables")).stdout


def redirected_ports(pod: Pod) -> str:
    """The pod's tproxy rules, as `nft` prints them ('' when nothing is redirected)."""
    ruleset = run(*pod.in_pod("nft", "list", "ruleset")).stdout
    return "\n".join(line.strip() for line in ruleset.splitlines() if "tproxy" in line)
