"""Steal through Kubernetes: the sandbox's traffic deployment is answered by the local program."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.topology import PYTHON, SERVERS, wait_for


def test_the_traffic_deployments_requests_are_answered_by_the_local_program(
    sandbox: Any,
) -> None:
    with tempfile.NamedTemporaryFile("w+") as log:
        process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "podside",
                "exec",
                "-v",
                "--context",
                "podside-sandbox",
                "--target",
                "deployment/blog",
                "--mode",
                "steal",
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
            wait_for(
                lambda: (
                    "stole GET / -> 200" in Path(log.name).read_text() or process.poll() is not None
                ),
                timeout=90,
                what="a stolen request from the traffic deployment",
            )
            assert process.poll() is None, Path(log.name).read_text()
            assert "local-blog GET / from" in Path(log.name).read_text()
        finally:
            process.terminate()
            process.wait(30)
