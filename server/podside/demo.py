"""`make demo`: a short guided tour of podside on the local sandbox, ending by itself.

It brings the sandbox up, runs the repository's copy of the blog (`server/podside/examples/blog/app.py`, package data) on
this machine under `podside exec --target deployment/blog`, and narrates what happens: the
environment the local copy got from the pod, the requests of the `traffic` deployment mirrored
to it, and its own calls to `http://auditor:9000`, a short name only the pod can resolve.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

TOUR_SECONDS = 14.0
BLOG = Path(__file__).resolve().parent / "examples" / "blog" / "app.py"


@dataclass
class Seen:
    requests: int = 0
    audits: int = 0
    title: str = ""


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _wait_for_ready_blog(context: str, timeout: float = 60.0) -> bool:
    from kubernetes import client

    from podside.kube.config import load_context

    core = client.CoreV1Api(load_context(context).api_client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pod in core.list_namespaced_pod("default", label_selector="app=blog").items:
            conditions = (pod.status.conditions if pod.status else None) or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                return True
        time.sleep(0.5)
    return False


def main() -> int:
    podside = [sys.executable, "-m", "podside"]
    say("podside sandbox up: a Kubernetes-compatible cluster on this machine")
    if subprocess.run([*podside, "sandbox", "up"]).returncode != 0:
        return 1
    from podside.sandbox.control import admin_context
    from podside.sandbox.layout import StateDir

    # Another sandbox may hold `podside-sandbox` in the same kubeconfig: use the name `up` chose.
    context = admin_context(StateDir.from_env())
    if not _wait_for_ready_blog(context):
        print("the sandbox's blog did not become ready within 60 s", file=sys.stderr)
        return 1
    subprocess.run(["kubectl", "--context", context, "get", "pods", "-o", "wide"])
    say(f"running {BLOG.relative_to(BLOG.parents[2])} here, in the context of deployment/blog")
    print(f"   podside exec --target deployment/blog -- python3 {BLOG}", flush=True)
    program = subprocess.Popen(
        [
            *podside,
            "exec",
            "--context",
            context,
            "--target",
            "deployment/blog",
            "-v",
            "--",
            sys.executable,
            str(BLOG),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert program.stdout is not None
    seen = Seen()

    def narrate() -> None:
        assert program.stdout is not None
        for line in program.stdout:
            line = line.rstrip()
            print(f"   [local blog] {line}", flush=True)
            if match := re.match(r"'(.*)': listening", line):
                seen.title = match.group(1)
            elif re.match(r"(GET|POST) /", line):
                seen.requests += 1
            elif "audit call" in line and "audited" in line:
                seen.audits += 1

    reader = threading.Thread(target=narrate, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while not seen.title and program.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if program.poll() is not None or not seen.title:
        reader.join(2)
        print("the local blog did not start", file=sys.stderr)
        program.kill()
        return 1
    say(
        f"BLOG_TITLE comes from the pod's environment: {seen.title!r}; "
        f"now waiting {TOUR_SECONDS:.0f} s for the traffic deployment's requests"
    )
    time.sleep(TOUR_SECONDS)
    program.send_signal(signal.SIGINT)
    try:
        program.wait(15)
    except subprocess.TimeoutExpired:
        program.kill()
    reader.join(5)
    say(
        f"done: the local copy received {seen.requests} mirrored requests and called the "
        f"auditor {seen.audits} times through the pod; the pod itself kept serving."
    )
    print(f"   try it yourself:  podside exec --target deployment/blog -- python3 {BLOG}")
    print("   stop the sandbox:  podside sandbox down")
    ok = seen.requests > 0 and seen.audits > 0
    if not ok:
        print("podside demo: expected mirrored requests and audit calls", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
