"""The pod's hostname on the sandbox: a pod is named after spec.hostname, else its name, and
the program under `podside exec --target` sees that name."""

from __future__ import annotations

import os
from typing import Any

from tests.kube.test_env_command import _podside
from tests.sandbox.conftest import pod_phase, run_pod, wait_for
from tests.topology import PYTHON

SCRIPT = "import os, socket; print(socket.gethostname()); print(os.uname().nodename)"


def test_the_program_sees_the_pods_hostname(sandbox: Any, core: Any, namespace: str) -> None:
    run_pod(core, namespace, "app", ["sleep", "600"], terminationGracePeriodSeconds=1)
    run_pod(
        core, namespace, "named", ["sleep", "600"], hostname="db-0", terminationGracePeriodSeconds=1
    )
    for name in ("app", "named"):
        wait_for(lambda name=name: pod_phase(core, namespace, name) == "Running", what=name)
    where = ("--context", "podside-sandbox", "-n", namespace, "-q")
    plain = _podside("exec", *where, "--target", "pod/app", "--", PYTHON, "-c", SCRIPT)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == ["app", "app"]
    named = _podside("exec", *where, "--target", "pod/named", "--", "uname", "-n")
    assert named.returncode == 0, named.stderr
    assert named.stdout.splitlines() == ["db-0"]
    assert os.uname().nodename not in ("app", "db-0")
