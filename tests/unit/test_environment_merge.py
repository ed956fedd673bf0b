"""Merging the pod's environment into this machine's."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podside import exec_values
from podside.environment import (
    Mapping,
    dotenv_line,
    merge,
    parse_assignments,
    pod_variables,
    read_env_file,
)
from podside.errors import PodsideError

LOCAL = {"PATH": "/here/bin", "HOME": "/home/me", "A": "local"}
REMOTE = {"PATH": "/pod/bin", "HOME": "/root", "A": "pod", "DB_URL": "postgres://db", "LC_ALL": "C"}


def test_pod_values_win_except_for_machine_variables() -> None:
    merged = merge(LOCAL, REMOTE, exclude=[], include=[], overrides={})
    assert merged == {
        "PATH": "/here/bin",
        "HOME": "/home/me",
        "A": "pod",
        "DB_URL": "postgres://db",
    }


def test_include_replaces_the_machine_list() -> None:
    merged = merge(LOCAL, REMOTE, exclude=[], include=["PATH", "DB_*"], overrides={})
    assert merged["PATH"] == "/pod/bin" and merged["A"] == "local" and "LC_ALL" not in merged


def test_overrides_win() -> None:
    assert merge(LOCAL, REMOTE, exclude=["A"], include=[], overrides={"A": "mine"})["A"] == "mine"


def _mapping(text: str) -> Mapping:
    return Mapping(*exec_values.env_map(text))


def test_env_file_wins_over_the_pod_and_env_wins_over_the_file() -> None:
    merged = merge(
        LOCAL,
        REMOTE,
        exclude=[],
        include=[],
        overrides={"B": "flag"},
        from_file={"A": "file", "B": "file", "PATH": "/file/bin"},
    )
    assert merged["A"] == "file" and merged["B"] == "flag" and merged["PATH"] == "/file/bin"


def test_unset_removes_names_of_every_side_in_any_case_but_not_env() -> None:
    merged = merge(
        {**LOCAL, "Aws_Profile": "dev"},
        REMOTE,
        exclude=[],
        include=[],
        overrides={"DB_KEEP": "1"},
        from_file={"DB_FILE": "x"},
        unset_names=["aws_profile", "db_*", "a"],
    )
    assert "Aws_Profile" not in merged and "A" not in merged
    assert "DB_URL" not in merged and "DB_FILE" not in merged
    assert merged["DB_KEEP"] == "1"


def test_env_map_renames_pod_variables_after_the_filters() -> None:
    remote = {"DB_URL": "postgres://db", "STAGING_KEY": "k", "STAGING_SKIP": "s"}
    taken = pod_variables(
        remote,
        exclude=["STAGING_SKIP"],
        include=[],
        mappings=[_mapping("DB_URL=POD_DB_URL"), _mapping(r"STAGING_(.*)=\1")],
    )
    assert taken == {"POD_DB_URL": "postgres://db", "KEY": "k"}
    # a pattern matches the whole name only
    assert pod_variables(
        {"DB_URL_2": "x"}, exclude=[], include=[], mappings=[_mapping("DB_URL=Y")]
    ) == {"DB_URL_2": "x"}


def test_a_renamed_variable_leaves_this_machines_value_under_the_old_name() -> None:
    merged = merge(
        LOCAL, REMOTE, exclude=[], include=[], overrides={}, mappings=[_mapping("A=POD_A")]
    )
    assert merged["A"] == "local" and merged["POD_A"] == "pod"


def test_env_map_refuses_names_that_are_no_variable_names() -> None:
    with pytest.raises(exec_values.InvalidValue):
        exec_values.env_map("NOEQUALS")
    with pytest.raises(exec_values.InvalidValue):
        exec_values.env_map("(unclosed=X")
    with pytest.raises(PodsideError, match="not a variable name"):
        pod_variables({"A": "1"}, exclude=[], include=[], mappings=[_mapping(r"A()=\1")])


def test_env_file_syntax(tmp_path: Path) -> None:
    path = tmp_path / "app.env"
    path.write_text(
        "# a comment\n"
        "\n"
        "PLAIN=value # trailing comment\n"
        "export EXPORTED=yes\n"
        "SINGLE='it\\'s $HOME'\n"
        'DOUBLE="line1\\nline2 \\"quoted\\" \\\\ $HOME"\n'
        "EMPTY=\n"
        'MULTI="a\nb"\n'
    )
    assert read_env_file(str(path)) == {
        "PLAIN": "value",
        "EXPORTED": "yes",
        "SINGLE": "it's $HOME",
        "DOUBLE": 'line1\nline2 "quoted" \\ $HOME',
        "EMPTY": "",
        "MULTI": "a\nb",
    }


def test_env_file_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.env"
    path.write_text("A=1\n\n# fine\nnot an assignment\n")
    with pytest.raises(PodsideError, match=rf"--env-file {path}:4: expected NAME=VALUE") as error:
        read_env_file(str(path))
    assert error.value.exit_code == 2
    with pytest.raises(PodsideError, match="No such file") as error:
        read_env_file(str(tmp_path / "missing.env"))
    assert error.value.exit_code == 2


@pytest.mark.parametrize("content", [b"A=1\n\x00B=2\n", b"A=1\nB=x\x00y\n", b"A=1\n'B=C'=2\n"])
def test_env_file_names_and_values_no_process_can_hold_are_refused(
    tmp_path: Path, content: bytes
) -> None:
    # execve refuses a NUL anywhere and an = in a name: one line at the start, not a failed launch
    path = tmp_path / "odd.env"
    path.write_bytes(content)
    with pytest.raises(PodsideError, match=rf"--env-file {path}:2: ") as error:
        read_env_file(str(path))
    assert error.value.exit_code == 2 and "\n" not in error.value.message


@pytest.mark.parametrize("value", ["A\0B=1", "A=1\0", "NAME", "=1"])
def test_env_assignments_that_are_none_are_usage_errors(value: str) -> None:
    # argv cannot hold a NUL, but a config file's "env" list can ("\u0000")
    with pytest.raises(PodsideError, match="--env ") as error:
        parse_assignments([value])
    assert error.value.exit_code == 2


@given(
    st.dictionaries(
        st.one_of(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True),
            st.text(
                alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="=\0"),
                min_size=1,
            ),
        ),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")),
    )
)
def test_dotenv_lines_read_back_the_same(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]
) -> None:
    path = tmp_path_factory.mktemp("dotenv") / "round.env"
    lines = [dotenv_line(name, value) for name, value in env.items()]
    path.write_text("".join(f"{line}\n" for line in lines if line is not None))
    left_out = [name for name, line in zip(env, lines, strict=True) if line is None]
    assert all({"'", "\n", "\r"} & set(name) for name in left_out)
    env = {name: value for name, value in env.items() if name not in left_out}
    assert read_env_file(str(path)) == env


def test_an_env_file_fifo_nobody_writes_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from podside import environment

    monkeypatch.setattr(environment, "ENV_PIPE_SECONDS", 0.2)
    fifo = tmp_path / "env.fifo"
    os.mkfifo(fifo)
    with pytest.raises(PodsideError, match=r"env\.fifo: nothing ended it in") as raised:
        read_env_file(str(fifo))
    assert raised.value.exit_code == 2


def test_an_env_file_pipe_is_read_to_its_end(tmp_path: Path) -> None:
    """`--env-file <(sops -d app.env)`: the shell hands over a pipe its writer fills."""
    reader, writer = os.pipe()
    threading.Thread(
        target=lambda: (time.sleep(0.1), os.write(writer, b"A=1\n"), os.close(writer)),
        daemon=True,
    ).start()
    try:
        assert read_env_file(f"/proc/self/fd/{reader}") == {"A": "1"}
    finally:
        os.close(reader)


@pytest.mark.parametrize("path", ["/dev/zero", "/"])
def test_an_env_file_that_is_no_file_is_refused(path: str) -> None:
    with pytest.raises(PodsideError, match="expected a dotenv file"):
        read_env_file(path)
