"""What doctor says of a target's user, from the pod's manifest alone."""

from __future__ import annotations

from typing import Any

from podside.doctor_command import target_user


def _pod(pod_context: dict[str, Any], container_context: dict[str, Any] | None = None) -> Any:
    container: dict[str, Any] = {"name": "main"}
    if container_context is not None:
        container["securityContext"] = container_context
    return {"spec": {"securityContext": pod_context, "containers": [container]}}


def test_a_pod_level_user_is_named_with_what_the_agent_does_about_it() -> None:
    said = target_user(_pod({"runAsUser": 1000}), "main")
    assert said.startswith(
        "container main runs as uid 1000 (the pod's securityContext), holding no capabilities; "
        "an ephemeral container inherits it, so the agent sets runAsUser 0"
    )


def test_the_containers_user_wins_over_the_pods() -> None:
    said = target_user(_pod({"runAsUser": 1000}, {"runAsUser": 0}), "main")
    assert said.startswith("container main runs as root (its securityContext); the agent sets")


def test_no_user_is_the_images_and_run_as_non_root_is_said() -> None:
    said = target_user(_pod({"runAsNonRoot": True}), "main")
    assert said.startswith(
        "container main runs as its image's user (no runAsUser) with runAsNonRoot"
    )


def test_a_failed_capability_check_says_who_the_agent_runs_as() -> None:
    from podside.doctor_command import _runs_as

    assert _runs_as({"uid": 1000, "effective": 0}) == (
        " (the agent runs as uid 1000, no effective capabilities)"
    )
    assert _runs_as({"uid": 0, "effective": 0x3000}) == (
        " (the agent runs as uid 0, effective capabilities 0x3000)"
    )
    assert _runs_as(None) == ""  # an agent from before the identity was reported
