"""Which local program a container image stands for, and the environment the image sets.

The sandbox pulls nothing: it knows the podside agent image and the demo images, and runs
any other image only when the container says what to run (`command`). A python image's
`python` is this machine's interpreter, whatever its tag (the container status's imageID
says which), but never podside's virtual environment: like the official image, it holds no
podside code.
"""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path
from typing import Any

import podside
from podside_protocol.frames import PROTOCOL_ENV

EXAMPLES_DIR = Path(podside.__file__).resolve().parent / "examples"
AGENT_REPOSITORY_SUFFIX = "podside/agent"
DEMO_PROGRAMS = {
    "podside/demo-blog": "blog/app.py",
    "podside/demo-auditor": "auditor/app.py",
    "podside/demo-traffic": "traffic/app.py",
}


# containerd's PATH for an image that sets none; busybox's image sets exactly this one.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The release manager's key the official python image's Dockerfile checks the source with.
PYTHON_RELEASE_KEYS = {
    "3.10": "A035C8C19219BA821ECEA86B64E628F8D684696D",
    "3.11": "A035C8C19219BA821ECEA86B64E628F8D684696D",
    "3.12": "7169605F62C751356D054A26A821E680E5FA6305",
    "3.13": "7169605F62C751356D054A26A821E680E5FA6305",
}


# The interpreter outside any virtual environment (the sandbox runs in podside's), without
# the user's site-packages (`-s`): the official image has neither. Not `-I`: the image's
# python honours PYTHON* variables a spec sets.
IMAGE_PYTHON = [getattr(sys, "_base_executable", None) or sys.executable, "-s"]
_PYTHON_COMMAND = re.compile(r"(/usr/local/bin/)?python(3(\.\d+)?)?")


class ImageUnavailable(Exception):
    """The container cannot run here: the message is what the status reports."""


def repository(image: str) -> str:
    """`ghcr.io/podside/agent:0.1.0@sha256:..` -> `ghcr.io/podside/agent`."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    tag_colon = name.rfind(":")
    return name[:tag_colon] if tag_colon > last_slash else name


def is_agent_image(image: str) -> bool:
    return repository(image).endswith(AGENT_REPOSITORY_SUFFIX)


def _is_python_image(image: str) -> bool:
    """The official python image, and the images built on it: the agent's (agent/Dockerfile)
    and the demo programs'."""
    repo = repository(image)
    return (
        repo.rsplit("/", 1)[-1] == "python"
        or is_agent_image(image)
        or any(repo.endswith(suffix) for suffix in DEMO_PROGRAMS)
    )


def image_env(image: str) -> dict[str, str]:
    """The variables the image's config sets (its Dockerfile's ENV lines).

    A python image here runs this machine's interpreter, so its variables describe that one:
    PYTHON_VERSION is the interpreter's. PYTHON_SHA256 (the source tarball's digest, in newer
    images) is left out, since no tarball was ever on this machine to take it from.
    """
    if not _is_python_image(image):
        return {"PATH": DEFAULT_PATH}
    env = {
        # The official image puts /usr/local/bin in front of the default PATH.
        "PATH": "/usr/local/bin:" + DEFAULT_PATH,
        "LANG": "C.UTF-8",
        "PYTHON_VERSION": platform.python_version(),
    }
    key = PYTHON_RELEASE_KEYS.get("{}.{}".format(*sys.version_info[:2]))
    if key:
        env["GPG_KEY"] = key
    return env


def image_id(image: str) -> str:
    """What a container status's imageID says of `image`. A real node names the digest it
    pulled; the sandbox pulls nothing, and a python image's tag names a Python version this
    machine's interpreter may not be (`python:3.10-slim` runs it too), so its ID names the
    interpreter that runs instead."""
    if repository(image).rsplit("/", 1)[-1] != "python":
        return ""
    return f"podside-sandbox:{IMAGE_PYTHON[0]} (Python {platform.python_version()})"


def resolve_argv(container: dict[str, Any], target_pid: int | None = None) -> list[str]:
    """The argv a container runs; `target_pid` is the main process of the ephemeral
    container's target, handed to the agent (see `--target-pid` below)."""
    image = container.get("image", "")
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    repo = repository(image)
    if command and _is_python_image(image) and _PYTHON_COMMAND.fullmatch(command[0]):
        entrypoint = IMAGE_PYTHON + command[1:]
    elif command:
        entrypoint = command
    elif is_agent_image(image):
        entrypoint = [sys.executable, "-m", "podside_agent"]
    elif (
        program := next((p for suffix, p in DEMO_PROGRAMS.items() if repo.endswith(suffix)), None)
    ) is not None:
        path = EXAMPLES_DIR / program
        if not path.exists():
            raise ImageUnavailable(
                f'failed to pull image "{image}": the demo program {path} is missing'
            )
        entrypoint = [sys.executable, str(path)]
    else:
        raise ImageUnavailable(
            f'failed to pull image "{image}": the podside sandbox pulls no images; it runs the '
            "podside agent image (*/podside/agent), the demo images (podside/demo-blog, "
            "podside/demo-auditor, podside/demo-traffic) and containers that set a command"
        )
    argv = entrypoint + args
    if target_pid is not None and (is_agent_image(image) or _is_podside_agent(container)):
        # A real cluster puts an ephemeral container with targetContainerName into the target
        # container's PID namespace. Sandbox pods share the host's PID namespace, so the agent
        # is told the target's main process instead.
        argv += ["--target-pid", str(target_pid)]
    return argv


def _is_podside_agent(container: dict[str, Any]) -> bool:
    """A podside agent (or enrollment) in any image: podside marks each with its protocol."""
    return any(item.get("name") == PROTOCOL_ENV for item in container.get("env") or [])
