"""Merging the pod's environment into this machine's."""

from __future__ import annotations

from podside.environment import merge

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
