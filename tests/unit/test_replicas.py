"""Which pods of a workload join a session and which leave (`podside.replicas.changes`), and
the opt-out `--one-pod` as a flag, a config key and a launch field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from podside.cli import build_parser
from podside.errors import PodsideError
from podside.exec_command import parse_options
from podside.kube.targets import longest_ready_first
from podside.lsp import launch
from podside.replicas import ListingOutage, changes


def test_ready_pods_not_covered_join_in_the_order_listed() -> None:
    assert changes([], ["web-c", "web-a", "web-b"], primary="web-c") == (["web-a", "web-b"], [])


def test_covered_pods_no_longer_ready_leave_and_the_rest_stay() -> None:
    joining, leaving = changes(["web-a", "web-b"], ["web-p", "web-b", "web-d"], primary="web-p")
    assert joining == ["web-d"]
    assert leaving == ["web-a"]


def test_the_primary_never_joins_nor_leaves() -> None:
    # Its own session covers it; losing it ends the session, which the poll does not decide.
    assert changes(["web-a"], ["web-a"], primary="web-p") == ([], [])
    assert changes(["web-p", "web-a"], [], primary="web-p") == ([], ["web-a"])


def test_a_pod_listed_twice_joins_once() -> None:
    assert changes([], ["web-a", "web-a"], primary="web-p") == (["web-a"], [])


def test_one_pod_is_a_flag_of_exec_a_config_key_and_a_launch_field() -> None:
    argv = launch.exec_argv({"target": "deployment/web", "onePod": True}, ["podside"])
    assert "--one-pod" in argv
    assert parse_options(build_parser().parse_args([*argv[1:], "true"])).one_pod
    assert "--one-pod" not in launch.exec_argv({"target": "deployment/web"}, ["podside"])
    assert "--one-pod" not in launch.exec_argv(
        {"target": "deployment/web", "onePod": False}, ["podside"]
    )
    with pytest.raises(PodsideError, match=r"^onePod must be true or false$"):
        launch.exec_argv({"target": "deployment/web", "onePod": "yes"}, ["podside"])
    manifest = Path(__file__).parents[2] / "editor-extension" / "package.json"
    attributes = json.loads(manifest.read_text())["contributes"]["debuggers"][0]
    assert "onePod" in attributes["configurationAttributes"]["launch"]["properties"]
    schema = json.loads(
        (Path(__file__).parents[2] / "server/podside/config.schema.json").read_text()
    )
    assert schema["properties"]["one-pod"]["type"] == "boolean"


def test_one_pod_without_a_target_is_a_usage_error() -> None:
    for choice in (["--targetless"], ["--agent", "127.0.0.1:7000", "--token", "t"]):
        args = build_parser().parse_args(["exec", *choice, "--one-pod", "--", "true"])
        with pytest.raises(PodsideError, match=r"^--one-pod is for a workload") as error:
            parse_options(args)
        assert error.value.exit_code == 2


def _pod(name: str, ready_at: int | None, created: int, restarts: int = 0) -> SimpleNamespace:
    def at(second: int) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=second)

    conditions = (
        []
        if ready_at is None
        else [SimpleNamespace(type="Ready", status="True", last_transition_time=at(ready_at))]
    )
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name, creation_timestamp=at(created)),
        status=SimpleNamespace(
            conditions=conditions,
            container_statuses=[SimpleNamespace(restart_count=restarts)],
        ),
    )


def _names(pods: list[SimpleNamespace]) -> list[str]:
    return [pod.metadata.name for pod in longest_ready_first(pods)]


def test_the_primary_is_the_pod_ready_longest_not_the_newest() -> None:
    # Created later but ready earlier wins: readiness is what a scale-down ranks by.
    pods = [_pod("new", 30, 20), _pod("old-slow", 40, 10), _pod("steady", 15, 12)]
    assert _names(pods) == ["steady", "new", "old-slow"]


def test_ties_go_to_fewer_restarts_then_the_oldest() -> None:
    pods = [_pod("restarted", 5, 1, restarts=2), _pod("young", 5, 3), _pod("elder", 5, 2)]
    assert _names(pods) == ["elder", "young", "restarted"]


def test_a_pod_without_a_ready_time_ranks_by_its_creation() -> None:
    assert _names([_pod("timeless", None, 50), _pod("ready", 60, 1)]) == ["timeless", "ready"]


def test_a_pod_list_that_keeps_failing_is_said_once_and_its_end_too() -> None:
    listing = ListingOutage()
    assert listing.succeeded() is None
    first = listing.failed("connection refused")
    assert first is not None and "connection refused" in first
    assert listing.failed("connection refused") is None  # the next polls, 2 s apart
    changed = listing.failed("403 Forbidden")
    assert changed is not None and "403 Forbidden" in changed
    assert listing.succeeded() == "can list the pods of the target again"
    assert listing.succeeded() is None
    assert listing.failed("connection refused") is not None  # a new outage is said again
