"""One stolen connection failing never ends the steal session: only that connection goes."""

from __future__ import annotations

import time

from tests.steal.conftest import ask, stealing
from tests.topology import Pod, run


def test_a_client_that_gives_up_before_the_answer_does_not_end_the_session(pod: Pod) -> None:
    with stealing(pod) as program:
        for _ in range(2):
            # curl gives up after 1 s and closes; the program answers at 2 s, into a socket
            # already gone.
            gave_up = run("curl", "-sS", "-m", "1", f"http://{pod.pod_ip}:8080/slow", check=False)
            assert gave_up.returncode == 28, gave_up.stderr  # curl's "operation timed out"
            time.sleep(2.5)  # the program's late answer reaches the agent
            assert program.process.poll() is None, program.output()
            assert ask(pod, "/after")["server"] == "local"
        assert "lost the connection" not in program.output()
    assert "Traceback" not in pod.log("agent.log")
