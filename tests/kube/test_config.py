"""Kubeconfig contexts through the official client: several files, several contexts, the
namespace each ends up with, and one-line errors when something is missing or unreachable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from podside.errors import PodsideError
from podside.kube.config import list_contexts, list_namespaces, load_context


def _sandbox_entries(kubeconfig: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sandbox's cluster and user entries, to build other kubeconfigs from."""
    loaded = yaml.safe_load(kubeconfig.read_text())
    cluster = next(c for c in loaded["clusters"] if c["name"] == "podside-sandbox")
    user = next(u for u in loaded["users"] if u["name"] == "podside-sandbox")
    return cluster, user


def _write(
    path: Path,
    cluster: dict[str, Any],
    user: dict[str, Any],
    contexts: dict[str, str | None],
    current: str | None,
) -> Path:
    """A kubeconfig whose contexts (name -> namespace or None) all use `cluster` and `user`."""
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [user],
        "contexts": [
            {
                "name": name,
                "context": {
                    "cluster": cluster["name"],
                    "user": user["name"],
                    **({"namespace": namespace} if namespace else {}),
                },
            }
            for name, namespace in contexts.items()
        ],
    }
    if current:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def two_kubeconfigs(kubeconfig: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    cluster, user = _sandbox_entries(kubeconfig)
    first = _write(
        tmp_path / "first", cluster, user, {"alpha": "kube-system", "beta": None}, "alpha"
    )
    # The second file's current-context loses to the first's, as with kubectl; its
    # `alpha` loses to the first file's too.
    second = _write(
        tmp_path / "second", cluster, user, {"gamma": "kube-public", "alpha": "default"}, "gamma"
    )
    merged = f"{first}:{second}"
    monkeypatch.setenv("KUBECONFIG", merged)
    return merged


def test_contexts_from_several_files_merge_like_kubectl(two_kubeconfigs: str) -> None:
    assert list_contexts() == (["alpha", "beta", "gamma"], "alpha")


def test_namespace_is_the_flag_else_the_contexts_else_default(two_kubeconfigs: str) -> None:
    current = load_context()
    assert (current.name, current.namespace) == ("alpha", "kube-system")
    assert load_context("gamma").namespace == "kube-public"
    assert load_context("beta").namespace == "default"
    assert load_context("alpha", namespace="elsewhere").namespace == "elsewhere"


def test_a_loaded_context_talks_to_the_cluster_with_its_credentials(two_kubeconfigs: str) -> None:
    ctx = load_context("gamma")
    assert ctx.configuration.host.startswith("https://")
    assert any(key.startswith("Bearer ") for key in ctx.configuration.api_key.values())
    assert "default" in list_namespaces(ctx)


def test_the_kubeconfig_flag_wins_over_the_environment(
    kubeconfig: Path, tmp_path: Path, two_kubeconfigs: str
) -> None:
    cluster, user = _sandbox_entries(kubeconfig)
    only = _write(tmp_path / "only", cluster, user, {"solo": None}, "solo")
    assert list_contexts(str(only)) == (["solo"], "solo")
    assert load_context(kubeconfig=str(only)).name == "solo"


def test_unknown_context_lists_the_closest(two_kubeconfigs: str) -> None:
    with pytest.raises(PodsideError, match=r"context 'gama' not found in .*did you mean gamma\?"):
        load_context("gama")
    with pytest.raises(PodsideError, match=r"existing contexts: alpha, beta, gamma"):
        load_context("production")


def test_no_current_context_asks_for_one(kubeconfig: Path, tmp_path: Path) -> None:
    cluster, user = _sandbox_entries(kubeconfig)
    path = _write(tmp_path / "config", cluster, user, {"one": None, "two": None}, None)
    with pytest.raises(PodsideError, match=r"sets no current context: choose one with --context"):
        load_context(kubeconfig=str(path))
    assert load_context("two", kubeconfig=str(path)).name == "two"


def test_no_kubeconfig_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(PodsideError, match=r"no kubeconfig found at .*podside sandbox up"):
        load_context()


def test_unreachable_api_names_the_url_and_the_reason(kubeconfig: Path, tmp_path: Path) -> None:
    cluster, user = _sandbox_entries(kubeconfig)
    # Port 1 on loopback: nothing listens, so the connection is refused at once.
    dead = {**cluster, "cluster": {**cluster["cluster"], "server": "https://127.0.0.1:1"}}
    path = _write(tmp_path / "config", dead, user, {"dead": None}, "dead")
    ctx = load_context(kubeconfig=str(path))
    with pytest.raises(PodsideError) as error:
        list_namespaces(ctx)
    assert error.value.message == (
        "cannot reach the Kubernetes API at https://127.0.0.1:1 (context dead): "
        "Failed to establish a new connection: [Errno 111] Connection refused"
    )
