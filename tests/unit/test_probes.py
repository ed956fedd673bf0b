"""Which requests are the kubelet's HTTP probes: the one rule steal, mirror's hold and the
editor's traffic view share."""

from __future__ import annotations

from podside_protocol.probes import is_kubelet_probe


def test_a_get_with_the_kubelets_user_agent_is_a_probe_of_any_path() -> None:
    assert is_kubelet_probe("GET", "/anything", [], ["kube-probe/1.36"])


def test_another_method_is_never_a_probe() -> None:
    assert not is_kubelet_probe("POST", "/healthz", ["/healthz"], ["kube-probe/1.36"])
    assert not is_kubelet_probe("get", "/healthz", ["/healthz"])  # methods are case-sensitive


def test_a_probe_path_of_the_port_is_a_probe_without_the_user_agent() -> None:
    # A probe whose httpHeaders replace the User-Agent, or a side that never saw the headers.
    assert is_kubelet_probe("GET", "/healthz", ["/ready", "/healthz"], ["custom/1"])
    assert is_kubelet_probe("GET", "/healthz", ["/healthz"])


def test_queries_are_ignored_on_both_sides() -> None:
    assert is_kubelet_probe("GET", "/healthz?verbose=1", ["/healthz"])
    assert is_kubelet_probe("GET", "/healthz", ["/healthz?full"])
    assert is_kubelet_probe("GET", "/healthz?a", ["/healthz?b"])


def test_other_paths_and_agents_are_the_apps_traffic() -> None:
    assert not is_kubelet_probe("GET", "/healthz/deep", ["/healthz"])
    assert not is_kubelet_probe("GET", "/", [], ["curl/8", "Mozilla/5.0 kube-probe/1.36"])
    assert not is_kubelet_probe("GET", "/healthz", [])
