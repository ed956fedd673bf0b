"""A wheel of podside, installed in a fresh venv outside the checkout, works on its own: the
sandbox comes up with its demo workloads (their programs are package data), `podside exec`
runs a command in the blog's context, `targets`, `doctor` and `lsp` answer, `sandbox down`
ends it. Nothing here may come from the source tree but the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv with the wheel built from this checkout installed."""
    root = tmp_path_factory.mktemp("wheel")
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        check=True,
        cwd=root,
    )
    (wheel,) = wheels.glob("podside-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "install", "-q", str(wheel)], check=True, cwd=root
    )
    return venv / "bin"


def _podside(
    bin_dir: Path, cwd: Path, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PODSIDE_SANDBOX_DIR"] = str(cwd / "state")
    env["KUBECONFIG"] = str(cwd / "kubeconfig")
    return subprocess.run(
        [bin_dir / "podside", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def sandbox_up(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The installed podside's own sandbox, in a state dir and kubeconfig of its own; the cwd
    it runs from."""
    cwd = tmp_path_factory.mktemp("cwd")
    up = _podside(installed, cwd, "sandbox", "up")
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield cwd
    finally:
        down = _podside(installed, cwd, "sandbox", "down")
        assert down.returncode == 0, down.stdout + down.stderr


def _wait_for_the_demo_pods(kubeconfig: Path, timeout: float = 90) -> list[str]:
    """Every pod of the demo workloads ready (their programs were found); their names."""
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
    deadline = time.monotonic() + timeout
    pods: list[object] = []
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod("default").items
        if len(pods) >= 3 and all(
            any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
            for pod in pods
        ):
            return sorted(pod.metadata.name for pod in pods)
        time.sleep(1)
    raise AssertionError(f"the demo pods did not become ready: {pods}")


def test_an_installed_wheel_runs_the_sandbox_and_a_program_in_a_pods_context(
    installed: Path, sandbox_up: Path
) -> None:
    cwd = sandbox_up
    where = subprocess.run(
        [installed / "python", "-c", "import podside; print(podside.__file__)"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(installed.parent)), where.stdout  # not the checkout
    names = _wait_for_the_demo_pods(cwd / "kubeconfig")
    assert [name.split("-")[0] for name in names] == ["auditor", "blog", "traffic"], names
    targets = _podside(installed, cwd, "targets")
    assert "deployment/blog" in targets.stdout, targets.stdout + targets.stderr
    exec_ = _podside(
        installed,
        cwd,
        "exec",
        "--target",
        "deployment/blog",
        "--",
        "sh",
        "-c",
        'echo "title=$BLOG_TITLE"',
    )
    assert exec_.returncode == 0, exec_.stdout + exec_.stderr
    assert "title=Staging blog" in exec_.stdout  # the pod's environment, from the pod

    doctor = _podside(installed, cwd, "doctor")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr

    initialize = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
    ).encode()
    lsp = subprocess.run(
        [installed / "podside", "lsp"],
        input=b"Content-Length: %d\r\n\r\n%s" % (len(initialize), initialize),
        cwd=cwd,
        capture_output=True,
        timeout=60,
    )
    assert b'"id": 1' in lsp.stdout or b'"id":1' in lsp.stdout, lsp
    assert b'"capabilities"' in lsp.stdout, lsp
