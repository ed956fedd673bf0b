"""What a new agent container holds without --agent-image, and the code delivered to it: the
bootstrap's command and arguments, one zip of the agent's sources always the same bytes, and
the sandbox running a python image's `python` outside podside's environment."""

from __future__ import annotations

import ast
import hashlib
import io
import sys
import zipfile

from podside.kube.agent import DEFAULT_PYTHON_IMAGE, AgentImage, _agent_container
from podside.kube.agent_code import agent_code, bootstrap_source
from podside.kube.agent_settings import AgentSettings
from podside.sandbox.node.images import resolve_argv
from podside_agent import bootstrap
from podside_protocol.tokens import VERIFIER_ENV, verifier_of


def test_the_zip_holds_the_agent_protocol_and_pure_python_msgpack_sources_only() -> None:
    code = agent_code()
    assert code.sha256 == hashlib.sha256(code.data).hexdigest()
    names = zipfile.ZipFile(io.BytesIO(code.data)).namelist()
    assert {"podside_agent/main.py", "podside_protocol/frames.py", "msgpack/fallback.py"} <= set(
        names
    )
    assert all(name.endswith(".py") for name in names)  # no C extension, no bytecode
    assert {name.split("/")[0] for name in names} == {
        "podside_agent",
        "podside_protocol",
        "msgpack",
    }


def test_the_zip_is_the_same_bytes_each_time_it_is_built() -> None:
    first = agent_code().data
    agent_code.cache_clear()
    assert agent_code().data == first


def test_the_bootstrap_in_the_spec_is_the_module_without_its_docstrings() -> None:
    source = bootstrap_source()
    tree = ast.parse(source)
    assert ast.get_docstring(tree) is None
    assert all(
        ast.get_docstring(node) is None
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    )
    assert "import podside" not in source.replace("import podside_agent.main", "")
    assert bootstrap.VERIFIER_ENV == VERIFIER_ENV


def test_a_new_agent_without_agent_image_is_the_bootstrap_in_a_python_image() -> None:
    image = AgentImage.of(None)
    assert image == AgentImage(DEFAULT_PYTHON_IMAGE, prebuilt=False)
    container = _agent_container(
        "podside-agent-x", image, ["--port", "20001"], "token", AgentSettings()
    )
    code = agent_code()
    assert container["image"] == "python:3.12-slim"
    assert container["command"] == ["python", "-c", bootstrap_source()]
    assert container["args"] == [
        *("--code-sha256", code.sha256, "--code-size", str(code.size)),
        *("--port", "20001"),
    ]
    assert container["env"] == [
        {"name": VERIFIER_ENV, "value": verifier_of("token")},
        {"name": "PODSIDE_AGENT_PROTOCOL", "value": "1"},
    ]
    enroll = _agent_container(
        "podside-enroll-x", image, ["--enroll", "--port", "1"], "t", AgentSettings()
    )
    assert enroll["command"] == container["command"]
    assert enroll["args"] == ["--enroll", "--port", "1"]  # needs no code


def test_a_prebuilt_image_runs_its_own_entrypoint() -> None:
    image = AgentImage.of("registry.example/agent:1", "python:3.13-slim")
    assert image.prebuilt and image.code() is None
    container = _agent_container(
        "podside-agent-x", image, ["--port", "20001"], "token", AgentSettings()
    )
    assert "command" not in container
    assert container["args"] == ["--port", "20001"]
    assert AgentImage.of(None, "mirror.example/library/python:3.12-slim").name == (
        "mirror.example/library/python:3.12-slim"
    )


def test_the_sandbox_runs_a_python_images_python_outside_podsides_environment() -> None:
    marked = [{"name": "PODSIDE_AGENT_PROTOCOL", "value": "1"}]
    argv = resolve_argv(
        {
            "image": "python:3.12-slim",
            "command": ["python", "-c", "x"],
            "args": ["a"],
            "env": marked,
        },
        target_pid=7,
    )
    assert argv == [sys._base_executable, "-s", "-c", "x", "a", "--target-pid", "7"]
    assert resolve_argv({"image": "python:3.12-slim", "command": ["/usr/local/bin/python3"]})[
        :2
    ] == [sys._base_executable, "-s"]
    # Not marked by podside: no --target-pid; not a python image: its command as it is.
    assert resolve_argv({"image": "python:3", "command": ["python3"]}, 7)[2:] == []
    assert resolve_argv({"image": "busybox", "command": ["python"]}) == ["python"]
