"""up is idempotent, status reports, and down leaves nothing behind.

Marked to run last: `down` here ends the session's sandbox (the fixture's own `down` then
finds nothing to do, which also proves down is idempotent).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from podside.sandbox import control, owners
from podside.sandbox.layout import OWNERS_DIR

pytestmark = pytest.mark.ends_sandbox


def test_up_again_is_a_no_op_and_status_reports(sandbox: Any, capsys: Any) -> None:
    assert control.up(sandbox) == 0
    assert "already running" in capsys.readouterr().out
    assert control.status(sandbox) == 0
    report = capsys.readouterr().out
    assert "podside sandbox is up" in report and "default/blog-" in report


def test_down_removes_everything(sandbox: Any, kubeconfig: Path, core: Any) -> None:
    pod_uids = [pod.metadata.uid for pod in core.list_pod_for_all_namespaces().items]
    daemon_pid = control._read_state(sandbox)["pid"]  # type: ignore[index]
    # A sandbox of another state dir (`make demo`'s, say) may run beside this one: its names
    # differ and must stay, and so must the host route it shares.
    others = owners.running(excluding=sandbox)
    assert control.down(sandbox) == 0

    assert control.status(sandbox) == control.EXIT_DOWN
    namespaces = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert sandbox.node_netns not in namespaces and sandbox.pod_netns_prefix not in namespaces
    assert not any(uid.replace("-", "")[:8] in namespaces for uid in pod_uids)
    # The bridge and veths live in the node namespace; none ever appear on the host.
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert "podside0" not in links and "psv" not in links
    routes = subprocess.run(
        ["ip", "route", "show", "table", "all"], capture_output=True, text=True
    ).stdout
    assert ("198.18.0.0/15" in routes) == bool(others)
    assert not sandbox.owner_file.exists()
    # The last sandbox takes the owners' directory (and its lock) with it, unless a crashed
    # sandbox's owner file still waits there for that sandbox's own `down`.
    if not others and not any(OWNERS_DIR.glob("*.json")):
        assert not OWNERS_DIR.exists()
    assert not os.path.exists(f"/proc/{daemon_pid}")
    pauses = subprocess.run(["pgrep", "-x", "pause"], capture_output=True, text=True).stdout.split()
    assert not [
        pid
        for pid in pauses
        if str(sandbox.root) in Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    ]
    assert not sandbox.root.exists()
    config = yaml.safe_load(kubeconfig.read_text())
    assert not [c for c in config.get("contexts") or [] if c["name"].startswith("podside-sandbox")]
