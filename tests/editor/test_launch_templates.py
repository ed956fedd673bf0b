"""launch_templates/: every runtime resolves, and the placeholder rules hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from podside.errors import PodsideError
from podside.lsp import launch

TEMPLATES = launch.load_templates()
PODSIDE = ["/venv/bin/python", "-m", "podside"]


def base(runtime: str, /, **fields: object) -> dict[str, object]:
    """A launch configuration; `fields` may override anything, `runtime` too."""
    return {
        "name": "demo",
        "type": "podside",
        "request": "launch",
        "runtime": runtime,
        "target": "deployment/blog",
        "program": "/src/app",
        "command": "./server --port 8080",
        **fields,
    }


def test_there_is_a_template_for_python_node_go_and_any_command() -> None:
    assert set(TEMPLATES) == {"python", "node", "go", "command"}


@pytest.mark.parametrize("runtime", sorted(TEMPLATES))
def test_every_template_resolves_without_placeholders_left(runtime: str) -> None:
    resolved = launch.resolve(base(runtime), "s1", TEMPLATES, PODSIDE)
    text = repr(resolved.to_json())
    assert "{{" not in text
    assert resolved.debug_configuration["podsideSessionId"] == "s1"


def test_node_runs_the_runtime_through_podside_exec() -> None:
    configuration = launch.resolve(
        base("node", namespace="shop", mode="mirror"), "s1", TEMPLATES, PODSIDE
    ).debug_configuration
    assert configuration["type"] == "node"
    assert configuration["runtimeExecutable"] == "/venv/bin/python"
    assert configuration["runtimeArgs"] == [
        *("-m", "podside", "exec", "--target", "deployment/blog"),
        *("-n", "shop", "--mode", "mirror", "--", "node"),
    ]


def test_go_wraps_delve_so_the_program_it_starts_is_wrapped_too() -> None:
    adapter = launch.resolve(base("go"), "s1", TEMPLATES, PODSIDE).adapter
    assert adapter is not None
    assert adapter["command"][3:] == [
        *("exec", "--target", "deployment/blog", "--"),
        *("dlv", "dap", "--listen=127.0.0.1:0"),
    ]


def test_go_attach_runs_delves_headless_server_in_the_programs_folder() -> None:
    attach = launch.resolve_attach(
        base("go", program="${workspaceFolder}/cmd/api", holdUntilAttached=True, args=["-v"]),
        "s3",
        TEMPLATES,
        PODSIDE,
        debug_port=5998,
    )
    program = attach.argv[attach.argv.index("--") + 1 :]
    assert program == [
        *("dlv", "debug", "--headless", "--listen=127.0.0.1:5998", "--accept-multiclient"),
        *("--api-version=2", "--continue", "--wd=.", "${workspaceFolder}/cmd/api", "--", "-v"),
    ]
    assert attach.cwd == "${workspaceFolder}/cmd/api"  # `dlv debug` builds where it runs
    configuration = attach.resolved.debug_configuration
    assert (configuration["request"], configuration["mode"]) == ("attach", "remote")
    # delve's headless server speaks DAP too: the editor attaches to it, and leaves it running.
    assert attach.resolved.adapter == {"server": {"host": "127.0.0.1", "port": 5998}}
    with_cwd = launch.resolve_attach(
        base("go", holdUntilAttached=True, cwd="/srv/data"), "s4", TEMPLATES, PODSIDE
    )
    assert "--wd=/srv/data" in with_cwd.argv and with_cwd.cwd == "/src/app"


def test_steal_and_its_filters_become_podside_exec_flags() -> None:
    fields = {
        "mode": "steal",
        "httpFilter": ["X-Dev: ^alice$", "X-Team: core"],
        "pathFilter": "^/api/",
        "methodFilter": ["GET", "POST"],
        "filterMatch": "any",
        "filterPorts": [8080, 9090],
    }
    adapter = launch.resolve(base("go", **fields), "s1", TEMPLATES, PODSIDE).adapter
    assert adapter is not None
    wrapper = adapter["command"][3 : adapter["command"].index("--")]
    assert wrapper == [
        *("exec", "--target", "deployment/blog", "--mode", "steal"),
        *("--http-filter", "X-Dev: ^alice$", "--http-filter", "X-Team: core"),
        *("--path-filter", "^/api/", "--method-filter", "GET,POST"),
        *("--filter-match", "any", "--filter-ports", "8080,9090"),
    ]


def test_delve_builds_in_the_programs_folder_even_before_vscode_fills_in_variables(
    tmp_path: Path,
) -> None:
    def build_folder(program: str) -> object:
        resolved = launch.resolve(base("go", program=program), "s1", TEMPLATES, PODSIDE)
        return resolved.debug_configuration["dlvCwd"]

    assert build_folder("${workspaceFolder}/cmd/server") == "${workspaceFolder}/cmd/server"
    assert build_folder("${workspaceFolder}/cmd/server/main.go") == "${workspaceFolder}/cmd/server"
    assert build_folder("${file}") == "${fileDirname}"  # the editor's current file
    (tmp_path / "server").write_text("package main\n")  # an existing file, without a suffix
    assert build_folder(str(tmp_path / "server")) == str(tmp_path)
    assert build_folder(str(tmp_path)) == str(tmp_path)


def test_the_command_template_runs_the_line_in_a_terminal() -> None:
    configuration = launch.resolve(base("command"), "s1", TEMPLATES, PODSIDE).debug_configuration
    assert configuration["type"] == "node-terminal"
    assert configuration["command"] == (
        "/venv/bin/python -m podside exec --target deployment/blog -- ./server --port 8080"
    )


def test_optional_fields_are_dropped_and_defaults_apply() -> None:
    configuration = launch.resolve(base("python"), "s1", TEMPLATES, PODSIDE).debug_configuration
    assert "cwd" not in configuration
    assert configuration["args"] == []
    assert configuration["justMyCode"] is True
    with_cwd = launch.resolve(base("python", cwd="/src", justMyCode=False), "s1", TEMPLATES)
    assert with_cwd.debug_configuration["cwd"] == "/src"
    assert with_cwd.debug_configuration["justMyCode"] is False


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"runtime": "cobol"}, "runtime 'cobol' has no launch template"),
        ({"target": "blog"}, '"target": "deployment/blog"'),
        ({"mode": "stael"}, "mode 'stael' is not one of mirror, steal, off"),
        (
            {"mode": "off", "pathFilter": "^/api/"},
            'pathFilter filters what is stolen or mirrored: it needs "mode": "steal" or "mirror"',
        ),
        ({"mode": "steal", "pathFilter": ["^/a", "^/b"]}, "pathFilter is one regex"),
        ({"mode": "off", "filterMatch": "any"}, "filterMatch filters what is stolen or mirrored"),
        ({"filterMatch": "any"}, "filterMatch needs a filter (httpFilter"),
        ({"mode": "steal", "filterMatch": "any"}, "filterMatch needs a filter (httpFilter"),
        ({"mode": "steal", "filterPorts": [80]}, "filterPorts needs a filter (httpFilter"),
        ({"mode": "steal", "pathFilter": "^/a", "filterPorts": "80"}, "filterPorts is a list"),
        (
            {"mode": "steal", "pathFilter": "^/a", "filterMatch": "some"},
            "filterMatch 'some' is not",
        ),
        ({"program": None}, "the python launch configuration needs 'program'"),
    ],
)
def test_a_bad_launch_configuration_is_a_one_line_error(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(PodsideError) as raised:
        launch.resolve(base("python", **fields), "s1", TEMPLATES, PODSIDE)
    assert message in raised.value.message


def test_python_attach_runs_the_program_under_debugpys_server_on_an_ignored_port() -> None:
    attach = launch.resolve_attach(
        base("python", holdUntilAttached=True, args=["--port", "8080"]),
        "s2",
        TEMPLATES,
        PODSIDE,
        debug_port=5999,
    )
    assert attach.argv[: attach.argv.index("--")] == [
        *PODSIDE,
        *("exec", "--target", "deployment/blog", "--hold-until-attached"),
        *("--ignore-port", "5999"),
    ]
    program = attach.argv[attach.argv.index("--") + 1 :]
    assert program == [
        *("python3", "-Xfrozen_modules=off", launch.debugpy_path()),
        *("--listen", "127.0.0.1:5999", "/src/app", "--port", "8080"),
    ]
    configuration = attach.resolved.debug_configuration
    assert configuration["request"] == "attach"
    assert configuration["connect"] == {"host": "127.0.0.1", "port": 5999}
    assert configuration["podsideSessionId"] == "s2"
    # `debugpy --listen` makes the program's own adapter listen: the editor talks to it.
    assert attach.resolved.adapter == {"server": {"host": "127.0.0.1", "port": 5999}}


def test_node_attach_uses_the_inspector_and_js_debug() -> None:
    attach = launch.resolve_attach(
        base("node", holdUntilAttached=True), "s3", TEMPLATES, PODSIDE, debug_port=9339
    )
    assert attach.argv[attach.argv.index("--") + 1 :] == [
        *("node", "--inspect=127.0.0.1:9339", "/src/app")
    ]
    configuration = attach.resolved.debug_configuration
    assert (configuration["type"], configuration["request"], configuration["port"]) == (
        "node",
        "attach",
        9339,
    )
    assert attach.resolved.adapter is None


def test_a_runtime_that_cannot_attach_later_says_which_can() -> None:
    with pytest.raises(PodsideError, match="runtime 'command' cannot attach a debugger later"):
        launch.resolve_attach(base("command", holdUntilAttached=True), "s4", TEMPLATES, PODSIDE)


def test_go_gives_the_wrapper_its_environment_through_the_adapter() -> None:
    wrapper_env = {"PODSIDE_EVENTS": "/run/s1.sock"}
    resolved = launch.resolve(
        base("go", env={"A": "1", **wrapper_env}, programEnv={"A": "1"}, adapterEnv=wrapper_env),
        "s1",
        TEMPLATES,
        PODSIDE,
    )
    # delve runs inside the wrapper: the wrapper's variables go to it, the program gets its own.
    assert resolved.adapter is not None and resolved.adapter["env"] == wrapper_env
    assert resolved.debug_configuration["env"] == {"A": "1"}
