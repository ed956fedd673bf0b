"""Which agent of a pod a session may reuse or join (running, or on its way: another session
just added it), and the cache that holds the tokens for them."""

from __future__ import annotations

import stat
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from podside.kube.agent import PodAgent, pod_agents
from podside.kube.agent_tokens import TokenCache, default_directory
from podside.kube.targets import Target

IMAGE = "ghcr.io/podside/agent:0.1.0"
VERIFIER = "0" * 64


def _container(name: str, env: dict[str, str], args: list[str], **fields: Any) -> Any:
    return SimpleNamespace(
        name=name,
        image=fields.get("image", IMAGE),
        args=args,
        env=[SimpleNamespace(name=key, value=value) for key, value in env.items()],
        target_container_name=fields.get("target", "main"),
    )


RUNNING = SimpleNamespace(running=object(), waiting=None, terminated=None)
STARTING = SimpleNamespace(
    running=None, waiting=SimpleNamespace(reason="ContainerCreating"), terminated=None
)
PULL_FAILED = SimpleNamespace(
    running=None, waiting=SimpleNamespace(reason="ImagePullBackOff", message="no"), terminated=None
)
ENDED = SimpleNamespace(
    running=None,
    waiting=None,
    terminated=SimpleNamespace(exit_code=0, reason="Completed", message=None),
)


def _pod(*containers: Any, states: dict[str, Any] | None = None) -> Any:
    """A pod whose containers run, unless `states` says otherwise (None: no status yet)."""
    states = states or {}
    statuses = [
        SimpleNamespace(name=c.name, state=states.get(c.name, RUNNING))
        for c in containers
        if states.get(c.name, RUNNING) is not None
    ]
    return SimpleNamespace(
        spec=SimpleNamespace(ephemeral_containers=list(containers)),
        status=SimpleNamespace(ephemeral_container_statuses=statuses),
    )


TARGET = Target("pod", "app", "ns", "app", "main", None)
AGENT_ENV = {"PODSIDE_AGENT_TOKEN_SHA256": VERIFIER, "PODSIDE_AGENT_PROTOCOL": "1"}


def test_agents_are_listed_newest_first() -> None:
    pod = _pod(
        _container("podside-agent-a", AGENT_ENV, ["--port", "20001"]),
        _container("podside-agent-b", AGENT_ENV, ["--port", "20002"]),
    )
    assert pod_agents(pod, TARGET) == [
        PodAgent("podside-agent-b", 20002, running=True),
        PodAgent("podside-agent-a", 20001, running=True),
    ]


def test_an_agent_another_session_just_added_is_one_to_join() -> None:
    """Not running yet (no status at all, or its container being created): a session that
    added a second one would race the first to the pod's single agent."""
    pod = _pod(
        _container("podside-agent-a", AGENT_ENV, ["--port", "20001"]),
        _container("podside-agent-b", AGENT_ENV, ["--port", "20002"]),
        states={"podside-agent-a": STARTING, "podside-agent-b": None},
    )
    assert pod_agents(pod, TARGET) == [
        PodAgent("podside-agent-b", 20002, running=False),
        PodAgent("podside-agent-a", 20001, running=False),
    ]


def test_an_agent_of_an_older_podside_with_its_token_in_the_spec_is_never_reused() -> None:
    pod = _pod(
        _container("podside-agent-old", {"PODSIDE_AGENT_TOKEN": "secret"}, ["--port", "20001"]),
        _container(
            "podside-agent-both", {**AGENT_ENV, "PODSIDE_AGENT_TOKEN": "x"}, ["--port", "20002"]
        ),
    )
    assert pod_agents(pod, TARGET) == []


def test_enrollments_other_targets_and_agents_that_will_not_run_are_not_agents() -> None:
    pod = _pod(
        _container("podside-enroll-a", AGENT_ENV, ["--enroll", "--port", "20001"]),
        _container("podside-agent-c", AGENT_ENV, ["--port", "20003"], target="side"),
        _container("podside-agent-d", AGENT_ENV, ["--port", "20004"]),
        _container("podside-agent-e", AGENT_ENV, ["--port", "20005"]),
        states={"podside-agent-d": ENDED, "podside-agent-e": PULL_FAILED},
    )
    assert pod_agents(pod, TARGET) == []


def test_an_agent_is_reused_whatever_its_image() -> None:
    bootstrap_args = ["--code-sha256", "ab" * 32, "--code-size", "1000", "--port", "20002"]
    pod = _pod(
        _container("podside-agent-a", AGENT_ENV, ["--port", "20001"], image="my.registry/x:1"),
        _container("podside-agent-b", AGENT_ENV, bootstrap_args, image="python:3.12-slim"),
    )
    # The bootstrap's code is remembered: a session may have to deliver it.
    assert pod_agents(pod, TARGET) == [
        PodAgent("podside-agent-b", 20002, running=True, code_sha256="ab" * 32),
        PodAgent("podside-agent-a", 20001, running=True),
    ]


def test_only_an_agent_marked_with_this_protocol_and_named_by_podside_is_reused() -> None:
    unmarked = {"PODSIDE_AGENT_TOKEN_SHA256": VERIFIER}
    pod = _pod(
        _container("podside-agent-old", unmarked, ["--port", "20001"]),
        _container(
            "podside-agent-v0", {**AGENT_ENV, "PODSIDE_AGENT_PROTOCOL": "0"}, ["--port", "20002"]
        ),
        _container("debugger", AGENT_ENV, ["--port", "20003"]),
    )
    assert pod_agents(pod, TARGET) == []


def test_the_cache_keeps_tokens_per_pod_and_container_private(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path / "agents")
    assert cache.get("uid-1", "podside-agent-a") is None
    cache.put("uid-1", "podside-agent-a", "token-a")
    cache.put("uid-1", "podside-agent-b", "token-b")
    cache.put("uid-2", "podside-agent-a", "token-c")
    assert cache.get("uid-1", "podside-agent-a") == "token-a"
    assert cache.get("uid-1", "podside-agent-b") == "token-b"
    assert cache.get("uid-2", "podside-agent-a") == "token-c"
    assert stat.S_IMODE((tmp_path / "agents").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "agents" / "uid-1.json").stat().st_mode) == 0o600


def test_concurrent_sessions_lose_no_token(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    threads = [
        threading.Thread(target=cache.put, args=("uid", f"agent-{n}", f"token-{n}"))
        for n in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [cache.get("uid", f"agent-{n}") for n in range(20)] == [f"token-{n}" for n in range(20)]


def test_a_damaged_cache_file_is_no_token(tmp_path: Path) -> None:
    (tmp_path / "uid.json").write_text("{not json")
    assert TokenCache(tmp_path).get("uid", "agent") is None


@pytest.mark.parametrize(("value", "expected"), [("/x/cache", "/x/cache"), ("relative", None)])
def test_the_cache_follows_xdg_cache_home(
    value: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", value)
    root = Path(expected) if expected else Path.home() / ".cache"
    assert default_directory() == root / "podside" / "agents"
