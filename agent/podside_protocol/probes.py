"""Kubelet probes: which HTTP requests to a pod's port are the kubelet's health checks.

The kubelet's HTTP probes (`httpGet`) are GET requests for the probe's path, sent with
`User-Agent: kube-probe/<major>.<minor>` unless the probe's `httpHeaders` set another one. Both
ends decide with this one rule: steal passes probes to the pod's app, mirror does not hold them
while a debugger is awaited, and the editor hides them from the traffic it shows.
"""

from __future__ import annotations

from collections.abc import Iterable

KUBE_PROBE_AGENT = "kube-probe/"


def is_kubelet_probe(
    method: str, target: str, probe_paths: Iterable[str], user_agents: Iterable[str] = ()
) -> bool:
    """A request (`method`, request `target`, its User-Agent values if known) is a kubelet probe
    of a port whose pod-spec probes have `probe_paths`.

    Only GET: the kubelet sends nothing else, so another method to a probe's path is the app's
    traffic. Paths compare without their query: the probe's identity is its path, and a query
    the spec adds (or a client appends) does not make it another endpoint of the app.
    """
    if method != "GET":
        return False
    if any(agent.startswith(KUBE_PROBE_AGENT) for agent in user_agents):
        return True
    path = _without_query(target)
    return any(_without_query(probe) == path for probe in probe_paths)


def _without_query(target: str) -> str:
    return target.split("?", 1)[0]
