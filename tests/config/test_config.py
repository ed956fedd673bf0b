"""The config file: found upwards from the current folder or named by --config, one key per
exec option (derived from argparse), the command line wins, and bad files fail in one line."""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from podside.cli import _subparser, build_parser
from podside.config import apply_config, keys_of
from podside.errors import PodsideError
from podside.schema_command import SCHEMA_FILE, exec_parser, schema_text
from tests.core.conftest import pod  # noqa: F401  (the core's pod with an agent)
from tests.topology import PYTHON, REPO, Pod

PACKAGE = REPO / "server" / "podside"


def parse(argv: list[str], cwd: Path) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    return apply_config(parser, _subparser(parser, "exec"), argv, args, cwd=cwd)


def write(folder: Path, settings: dict[str, object], name: str = "config.json") -> Path:
    (folder / ".podside").mkdir(parents=True, exist_ok=True)
    path = folder / ".podside" / name
    if name.endswith(".toml"):
        path.write_text(
            "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
        )
    else:
        path.write_text(json.dumps(settings))
    return path


def podside(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "podside", *argv], capture_output=True, text=True, cwd=cwd, timeout=60
    )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "project"
    (folder / "src" / "deep").mkdir(parents=True)
    yield folder


def test_the_nearest_config_above_the_current_folder_is_used(project: Path) -> None:
    write(project.parent, {"namespace": "outer"})
    write(project, {"target": "deployment/blog", "namespace": "staging"})
    args = parse(["exec", "--", "true"], cwd=project / "src" / "deep")
    assert (args.target, args.namespace) == ("deployment/blog", "staging")
    assert args.config_file == str(project / ".podside" / "config.json")


def test_toml_works_like_json(project: Path) -> None:
    write(project, {"target": "pod/api", "port-map": ["8080:80"], "fs": "read"}, "config.toml")
    args = parse(["exec", "--", "true"], cwd=project)
    assert (args.target, args.port_map, args.fs) == ("pod/api", ["8080:80"], "read")


def test_flags_on_the_command_line_win(project: Path) -> None:
    write(
        project,
        {"target": "deployment/blog", "mode": "off", "no-env": True, "agent-timeout": 5},
    )
    args = parse(["exec", "--target", "pod/other", "--mode", "mirror", "--", "true"], project)
    assert (args.target, args.mode, args.no_env, args.agent_timeout) == (
        "pod/other",
        "mirror",
        True,
        5,
    )


def test_repeatable_flags_add_to_the_file_and_come_last(project: Path) -> None:
    write(project, {"env": ["A=file", "B=file"], "fs-remote": ["^/etc/app"]})
    args = parse(["exec", "--env", "A=flag", "--fs-remote", "^/srv", "--", "true"], project)
    assert args.env == ["A=file", "B=file", "A=flag"]
    assert args.fs_remote == ["^/etc/app", "^/srv"]


def test_an_alias_flag_is_a_boolean_key(project: Path) -> None:
    write(project, {"no-fs": True})
    assert parse(["exec", "--fs", "read", "--", "true"], project).fs == "read"
    assert parse(["exec", "--", "true"], project).fs == "local"


def test_explicit_config_replaces_discovery(project: Path, tmp_path: Path) -> None:
    write(project, {"namespace": "found"})
    elsewhere = tmp_path / "team.json"
    elsewhere.write_text(json.dumps({"namespace": "named"}))
    args = parse(["exec", "--config", str(elsewhere), "--", "true"], project)
    assert args.namespace == "named"


def test_every_exec_option_has_a_key_of_its_type() -> None:
    keys = keys_of(exec_parser())
    expected = {
        "target": "string",
        "namespace": "string",
        "context": "string",
        "mode": "string",
        "port-map": "array",
        "env": "array",
        "fs": "string",
        "fs-remote": "array",
        "outgoing-local": "array",
        "no-outgoing": "boolean",
        "agent-timeout": "number",
    }
    assert {name: keys[name].kind for name in expected} == expected
    assert {"mirror", "off"} <= set(keys["mode"].choices or ())
    assert "config" not in keys and "command" not in keys


def test_the_shipped_schema_is_the_derived_one() -> None:
    shipped = (PACKAGE / SCHEMA_FILE).read_text()
    assert shipped == schema_text(), (
        "an exec option changed: run `podside schema > server/podside/config.schema.json`"
    )


def test_podside_schema_prints_it(tmp_path: Path) -> None:
    result = podside("schema", cwd=tmp_path)
    assert result.returncode == 0
    document = json.loads(result.stdout)
    assert document["properties"]["fs"]["enum"] == ["local", "read", "write"]
    assert document["additionalProperties"] is False


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tagret": "pod/x"}, "unknown key 'tagret' (did you mean 'target'?)"),
        ({"mode": "mirrror"}, "key 'mode': expected one of 'mirror', "),
        ({"no-env": "yes"}, "key 'no-env': expected true or false, got \"yes\""),
        ({"agent-timeout": "10"}, "key 'agent-timeout': expected a number, got \"10\""),
        ({"env": "A=1"}, "key 'env': expected a list of strings, got \"A=1\""),
        ({"port-map": [8080]}, "key 'port-map': expected a list of strings, got [8080]"),
        ({"fs": "remote"}, "key 'fs': expected one of 'local', 'read', 'write', got \"remote\""),
    ],
)
def test_a_bad_value_is_one_line_naming_file_and_key(
    project: Path, settings: dict[str, object], message: str
) -> None:
    path = write(project, settings)
    result = podside("exec", "--agent", "127.0.0.1:9", "--token", "t", "--", "true", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith(f"podside: {path}: {message}")
    assert result.stderr.count("\n") == 1


def test_broken_syntax_names_the_line(project: Path) -> None:
    (project / ".podside").mkdir()
    (project / ".podside" / "config.json").write_text('{\n  "target": "pod/x",\n}\n')
    with pytest.raises(PodsideError, match=r"config\.json:3:1: not valid JSON"):
        parse(["exec", "--", "true"], project)
    (project / ".podside" / "config.json").unlink()
    (project / ".podside" / "config.toml").write_text("target = \n")
    with pytest.raises(PodsideError, match=r"config\.toml: not valid TOML"):
        parse(["exec", "--", "true"], project)


def test_a_missing_explicit_config_is_an_error(project: Path) -> None:
    result = podside("exec", "--config", "nope.json", "--", "true", cwd=project)
    assert (result.returncode, result.stderr) == (2, "podside: --config nope.json: no such file\n")


def test_a_real_run_takes_agent_token_and_env_from_the_file(
    pod: Pod,  # noqa: F811
    project: Path,
) -> None:
    write(
        project,
        {
            "agent": pod.agent_address,
            "token": pod.token,
            "env": ["FROM_CONFIG=file", "BOTH=file"],
            "quiet": True,
        },
    )
    result = podside(
        "exec", "--env", "BOTH=flag", "--", "sh", "-c", 'echo "$FROM_CONFIG $BOTH"', cwd=project
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "file flag\n", "")


def test_port_forward_takes_the_pod_settings_of_the_file_and_passes_over_the_rest(
    project: Path,
) -> None:
    write(project, {"target": "deployment/blog", "namespace": "staging", "mode": "steal"})
    argv = ["port-forward", "-L", "5432:db:5432"]
    parser = build_parser()
    port_forward, exec_parser = _subparser(parser, "port-forward"), _subparser(parser, "exec")
    args = apply_config(
        parser, port_forward, argv, parser.parse_args(argv), cwd=project, every=exec_parser
    )
    assert (args.target, args.namespace, args.forwards) == ("deployment/blog", "staging", argv[2:])
    assert not hasattr(args, "mode")  # exec's own key: valid in the file, not port-forward's
    write(project, {"target": "deployment/blog", "mod": "steal"})
    with pytest.raises(PodsideError, match="unknown key 'mod'"):
        apply_config(parser, port_forward, argv, args, cwd=project, every=exec_parser)
    write(project, {"target": "deployment/blog", "mode": "sideways"})
    with pytest.raises(PodsideError, match="'mode'"):  # checked although passed over
        apply_config(parser, port_forward, argv, args, cwd=project, every=exec_parser)
