"""A container's environment as a node builds it, from the pod, the image and the services."""

from __future__ import annotations

import platform
from typing import Any

from podside.sandbox.node.container_env import container_env, linked_services
from podside.sandbox.node.images import DEFAULT_PATH, IMAGE_PYTHON, image_env, image_id


def _service(namespace: str, name: str, ip: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name},
        "spec": {"clusterIP": ip, "ports": [{"port": 80}]},
    }


def _pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-1", "namespace": "shop"}, "spec": spec}


CONTROL_PLANE = _service("default", "kubernetes", "10.0.0.1")
SERVICES = [CONTROL_PLANE, _service("shop", "cart", "10.0.0.7"), _service("other", "x", "10.0.0.9")]


def test_control_plane_service_is_linked_even_when_links_are_off() -> None:
    linked = linked_services(_pod(), SERVICES)
    assert [s["metadata"]["name"] for s in linked] == ["kubernetes", "cart"]
    off = linked_services(_pod(enableServiceLinks=False), SERVICES)
    assert [s["metadata"]["name"] for s in off] == ["kubernetes"]


def test_a_same_named_service_of_the_namespace_wins_over_the_control_plane() -> None:
    own = _service("shop", "kubernetes", "10.0.0.5")
    (linked,) = linked_services(_pod(), [CONTROL_PLANE, own])
    assert linked is own


def test_python_image_variables_then_spec_and_nothing_else() -> None:
    env = container_env(
        _pod(),
        {"image": "python:3.11-slim", "env": [{"name": "LANG", "value": "de_DE.UTF-8"}]},
        SERVICES,
        lambda kind, name: None,
    )
    assert env["HOSTNAME"] == "web-1"
    assert env["HOME"] == "/root"
    assert env["PYTHON_VERSION"] == platform.python_version()
    assert env["PATH"] == "/usr/local/bin:" + DEFAULT_PATH
    assert env["LANG"] == "de_DE.UTF-8"  # the spec overrides the image
    assert env["KUBERNETES_SERVICE_HOST"] == "10.0.0.1" and env["CART_SERVICE_HOST"] == "10.0.0.7"
    assert not [name for name in env if name.startswith("X_")]


def test_other_images_get_the_runtime_default_path_only() -> None:
    assert image_env("busybox") == {"PATH": DEFAULT_PATH}
    assert "PYTHON_VERSION" in image_env("ghcr.io/podside/agent:0.1.0")
    assert "PYTHON_VERSION" in image_env("docker.io/library/python:3.12@sha256:abc")
    assert "PYTHON_VERSION" not in image_env("example.com/pythonic/app:1")


def test_only_a_python_images_id_names_the_interpreter_it_runs() -> None:
    expected = f"podside-sandbox:{IMAGE_PYTHON[0]} (Python {platform.python_version()})"
    assert image_id("python:3.10-slim") == expected
    assert image_id("mirror.example/library/python:3.13@sha256:abc") == expected
    assert image_id("busybox") == ""
    assert image_id("ghcr.io/podside/agent:0.1.0") == ""
