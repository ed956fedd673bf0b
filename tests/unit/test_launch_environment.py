"""The environment fields of a launch configuration become `podside exec` flags."""

from __future__ import annotations

import pytest

from podside.cli import build_parser
from podside.errors import PodsideError
from podside.exec_command import parse_options
from podside.lsp import launch


def test_environment_fields_become_exec_flags_that_exec_reads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env_file = tmp_path / "app.env"
    env_file.write_text("FROM_FILE=1\n")
    argv = launch.exec_argv(
        {
            "target": "pod/web",
            "envFile": str(env_file),
            "envMap": {"DB_URL": "POD_DB_URL", "STAGING_(.*)": r"\1"},
            "unsetEnv": ["AWS_*"],
        },
        ["podside"],
    )
    assert argv[argv.index("--env-file") + 1] == str(env_file)
    assert [argv[i + 1] for i, word in enumerate(argv) if word == "--env-map"] == [
        "DB_URL=POD_DB_URL",
        r"STAGING_(.*)=\1",
    ]
    options = parse_options(build_parser().parse_args([*argv[1:], "true"]))
    assert options.env_file == {"FROM_FILE": "1"}
    assert options.unset_env == ["AWS_*"]
    assert [m.renamed("STAGING_KEY") for m in options.env_mappings] == [None, "KEY"]


def test_a_bad_env_map_names_its_field() -> None:
    with pytest.raises(PodsideError, match=r"^envMap '\(=X': POD_NAME is not a regex"):
        launch.exec_argv({"target": "pod/web", "envMap": {"(": "X"}}, ["podside"])
    with pytest.raises(PodsideError, match=r"^unsetEnv must be a list of strings$"):
        launch.exec_argv({"target": "pod/web", "unsetEnv": "AWS_*"}, ["podside"])
