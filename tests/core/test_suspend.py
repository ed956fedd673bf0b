"""A podside suspended longer than the agent waits (Ctrl-Z, SIGSTOP) says so when it resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

from tests.core.agent_client import agent_status
from tests.topology import Pod, wait_for


def test_a_podside_stopped_longer_than_the_agent_waits_says_why_the_session_ended(
    pod: Pod,
) -> None:
    with tempfile.TemporaryFile("w+") as output:
        podside = subprocess.Popen(
            [*pod.podside_exec(), "--", "sleep", "60"],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:

            def running() -> bool:
                output.seek(0)
                return "running in the context" in output.read()

            wait_for(running, what="the program to run")
            os.kill(podside.pid, signal.SIGSTOP)
            # The agent drops a client silent for 3 s; it gives its ports back then.
            wait_for(lambda: agent_status(pod)["clients"] == 0, timeout=20, what="the drop")
            time.sleep(1)
            os.kill(podside.pid, signal.SIGCONT)
            code = podside.wait(30)
        finally:
            if podside.poll() is None:
                os.killpg(podside.pid, signal.SIGKILL)
                podside.wait()
        output.seek(0)
        said = output.read()
    assert code != 0
    lines = [line for line in said.splitlines() if "ended the session" in line]
    assert len(lines) == 1, said
    assert "podside was suspended (Ctrl-Z or SIGSTOP) for" in lines[0], said
    assert "longer than the 3 s the agent waits for a silent client" in lines[0], said
    assert "Traceback" not in said
