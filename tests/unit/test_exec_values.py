"""Values that would silently do something else are refused in one line, wherever they come
from: the command line, the config file, the editor's launch configuration, and (for steal
filters) a subscription the agent receives."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from podside import exec_values
from podside.cli import _subparser, build_parser
from podside.config import apply_config
from podside.errors import PodsideError
from podside.exec_command import parse_options
from podside.lsp import launch
from podside_protocol import steal

# (option dest, bad value, what the one line says); the flag and the config key are the dest's
# name with dashes (`_flag`).
BAD = [
    ("path_filter", "", "an empty regex matches every request"),
    ("path_filter", "(", "not a regular expression"),
    ("method_filter", ",", "an empty method"),
    ("method_filter", "", "an empty method"),
    ("method_filter", "GET,", "an empty method"),
    ("method_filter", "GET POST", "'GET POST' is not a method"),
    ("http_filter", "X-Dev:", "an empty regex"),
    ("http_filter", "X-Dev", "expected 'Header-Name: REGEX'"),
    ("http_filter", ": alice", "no header name"),
    ("http_filter", "X Dev: a", "'X Dev' is not a header name"),
    ("http_filter", "X-Dev: (", "not a regular expression"),
    ("fs_remote", "", "an empty regex matches every path"),
    ("fs_local", "[", "not a regular expression"),
]
each_bad_value = pytest.mark.parametrize(("dest", "value", "reason"), BAD)
BAD_TIMEOUTS = [0.0, -1.0, math.nan, math.inf, -math.inf]


def _key(dest: str) -> str:
    return dest.replace("_", "-")


@each_bad_value
def test_a_bad_value_is_refused_with_its_reason(dest: str, value: str, reason: str) -> None:
    with pytest.raises(exec_values.InvalidValue, match=reason.replace("(", r"\(")):
        exec_values.checked(dest, value)


@pytest.mark.parametrize("seconds", BAD_TIMEOUTS)
def test_an_agent_timeout_must_be_a_real_wait(seconds: float) -> None:
    with pytest.raises(exec_values.InvalidValue, match="above 0"):
        exec_values.agent_timeout(seconds)


def test_good_values_are_parsed() -> None:
    assert exec_values.http_filter(" X-Dev :  ^alice$ ") == ("X-Dev", "^alice$")
    assert exec_values.method_filter("get, POST") == ("GET", "POST")
    assert exec_values.path_filter("^/api/") == "^/api/"
    assert exec_values.agent_timeout(0.5) == 0.5


def _parse(argv: list[str], cwd: Path) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    return apply_config(parser, _subparser(parser, "exec"), argv, args, cwd=cwd)


def _exec_argv(*options: str) -> list[str]:
    return ["exec", "--agent", "127.0.0.1:1", "--token", "t", "--mode", "steal", *options, "true"]


@each_bad_value
def test_the_command_line_refuses_it_naming_the_flag(
    dest: str, value: str, reason: str, tmp_path: Path
) -> None:
    flag = f"--{_key(dest)}"
    with pytest.raises(PodsideError) as raised:
        parse_options(_parse(_exec_argv(f"{flag}={value}"), tmp_path))
    assert raised.value.exit_code == 2
    assert raised.value.message.startswith(f"{flag} {value!r}: {reason}")


@pytest.mark.parametrize("seconds", ["0", "-1", "nan", "inf"])
def test_the_command_line_refuses_a_bad_agent_timeout(seconds: str, tmp_path: Path) -> None:
    with pytest.raises(PodsideError) as raised:
        parse_options(_parse(_exec_argv("--agent-timeout", seconds), tmp_path))
    assert (
        raised.value.message == f"--agent-timeout {seconds}: expected a number of seconds above 0"
    )


def _config(folder: Path, settings: dict[str, object]) -> Path:
    (folder / ".podside").mkdir(exist_ok=True)
    path = folder / ".podside" / "config.json"
    path.write_text(json.dumps(settings))  # NaN and Infinity as Python's json writes them
    return path


@each_bad_value
def test_the_config_file_refuses_it_naming_the_file_and_key(
    dest: str, value: str, reason: str, tmp_path: Path
) -> None:
    key = _key(dest)
    repeatable = dest in ("http_filter", "fs_remote", "fs_local")
    path = _config(tmp_path, {key: [value] if repeatable else value})
    with pytest.raises(PodsideError) as raised:
        _parse(_exec_argv(), tmp_path)
    assert raised.value.exit_code == 2
    assert raised.value.message.startswith(f"{path}: key {key!r}: {reason}")


@pytest.mark.parametrize("seconds", BAD_TIMEOUTS)
def test_the_config_file_refuses_a_bad_agent_timeout(seconds: float, tmp_path: Path) -> None:
    path = _config(tmp_path, {"agent-timeout": seconds})
    with pytest.raises(PodsideError) as raised:
        _parse(_exec_argv(), tmp_path)
    assert raised.value.message.startswith(
        f"{path}: key 'agent-timeout': expected a number of seconds above 0"
    )


def test_the_schema_says_it_too() -> None:
    from podside.config import schema
    from podside.schema_command import exec_parser

    properties = schema(exec_parser())["properties"]
    assert properties["path-filter"]["minLength"] == 1
    assert properties["fs-remote"]["items"]["minLength"] == 1
    assert properties["agent-timeout"]["exclusiveMinimum"] == 0
    assert "pattern" in properties["method-filter"]


LAUNCH_FIELD = {
    "http_filter": "httpFilter",
    "path_filter": "pathFilter",
    "method_filter": "methodFilter",
}


@pytest.mark.parametrize(
    ("dest", "value", "reason"), [bad for bad in BAD if bad[0] in LAUNCH_FIELD]
)
def test_the_launch_configuration_refuses_it_naming_the_field(
    dest: str, value: str, reason: str
) -> None:
    field = LAUNCH_FIELD[dest]
    configuration = {"target": "deployment/blog", "mode": "steal", field: value}
    with pytest.raises(PodsideError) as raised:
        launch.exec_argv(configuration, ["podside"])
    assert raised.value.message.startswith(f"{field} {value!r}: {reason}")


def test_a_launch_configuration_method_list_is_checked_item_by_item() -> None:
    configuration = {"target": "deployment/blog", "mode": "steal", "methodFilter": ["GET", ""]}
    with pytest.raises(PodsideError, match="an empty method"):
        launch.exec_argv(configuration, ["podside"])
    configuration["methodFilter"] = ["GET", "post"]
    assert launch.exec_argv(configuration, ["podside"])[-3:] == [
        "--method-filter",
        "GET,post",
        "--",
    ]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"path": ""}, "an empty regex matches every request"),
        ({"methods": [""]}, "an empty method"),
        ({"methods": ["GET POST"]}, "is not a method"),
        ({"headers": [["X-Dev", ""]]}, "an empty regex"),
        ({"headers": [["", "a"]]}, "no header name"),
        ({"headers": [["X-Dev", "("]]}, "not a regular expression"),
    ],
)
def test_the_agent_refuses_a_subscription_with_a_bad_filter(
    params: dict[str, object], reason: str
) -> None:
    with pytest.raises(steal.InvalidFilter, match=reason.replace("(", r"\(")):
        steal.parse_subscribe({"port": 8080, **params})


def test_a_subscription_without_any_filter_is_a_whole_port_steal() -> None:
    assert steal.parse_subscribe({"port": 8080, "path": None, "methods": []}).filter.empty


def test_filter_match_any_reaches_the_subscription(tmp_path: Path) -> None:
    options = parse_options(
        _parse(_exec_argv("--path-filter", "^/a", "--filter-match", "any"), tmp_path)
    )
    assert options.steal is not None and options.steal.filter.match == "any"
    plain = parse_options(_parse(_exec_argv("--path-filter", "^/a"), tmp_path))
    assert plain.steal is not None and plain.steal.filter.match == "all"


def test_filter_match_from_the_config_file_reaches_the_subscription(tmp_path: Path) -> None:
    _config(tmp_path, {"path-filter": "^/a", "filter-match": "any"})
    options = parse_options(_parse(_exec_argv(), tmp_path))
    assert options.steal is not None and options.steal.filter.match == "any"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (_exec_argv("--filter-match", "any"), "--filter-match needs a filter (--http-filter"),
        (
            [
                "exec",
                "--agent",
                "127.0.0.1:1",
                "--token",
                "t",
                "--mode",
                "off",
                "--path-filter",
                "^/a",
                "true",
            ],
            "--path-filter needs --mode steal or mirror",
        ),
    ],
)
def test_filter_match_without_a_filter_or_a_mode_is_a_usage_error(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(PodsideError) as raised:
        parse_options(_parse(argv, tmp_path))
    assert raised.value.exit_code == 2
    assert raised.value.message.startswith(message)


def test_filters_in_mirror_mode_go_to_the_mirror_not_to_a_steal(tmp_path: Path) -> None:
    argv = ["exec", "--agent", "127.0.0.1:1", "--token", "t", "--path-filter", "^/api"]
    options = parse_options(_parse([*argv, "--filter-ports", "8080", "true"], tmp_path))
    assert options.steal is None
    assert options.mirror_filter.path == "^/api" and options.filter_ports == frozenset({8080})
    plain = parse_options(
        _parse(["exec", "--agent", "127.0.0.1:1", "--token", "t", "true"], tmp_path)
    )
    assert plain.mirror_filter.empty


def test_filter_ports_are_kept_and_misuse_is_a_usage_error(tmp_path: Path) -> None:
    options = parse_options(
        _parse(_exec_argv("--path-filter", "^/a", "--filter-ports", "8080, 9090"), tmp_path)
    )
    assert options.filter_ports == frozenset({8080, 9090})
    for argv, message in [
        (_exec_argv("--filter-ports", "8080"), "--filter-ports needs a filter"),
        (_exec_argv("--path-filter", "^/a", "--filter-ports", "80,x"), "--filter-ports 'x'"),
    ]:
        with pytest.raises(PodsideError) as raised:
            parse_options(_parse(argv, tmp_path))
        assert raised.value.exit_code == 2
        assert raised.value.message.startswith(message)
