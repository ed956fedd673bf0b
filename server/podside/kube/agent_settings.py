"""What a session asks of its cluster: the target (`KubeTarget`) and what a real cluster may
need of podside's agent pods (pull secrets and policy; for the targetless pod its namespace,
labels, annotations, scheduling and resources), kept apart from `agent` so that `podside exec`
parses them without importing the Kubernetes client."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def add_pull_arguments(parser: Any, secret_help: str) -> None:
    """`--agent-image-pull-policy` and `--image-pull-secret`, as exec and doctor take them."""
    parser.add_argument(
        "--agent-image-pull-policy",
        choices=PULL_POLICIES,
        help="when the node pulls the agent's image (default: the cluster's, from the tag)",
    )
    parser.add_argument(
        "--image-pull-secret", action="append", default=[], metavar="NAME", help=secret_help
    )


@dataclass(frozen=True)
class AgentSettings:
    """What a real cluster may need of the agent's containers (both forms) and of the
    targetless pod. An ephemeral container can carry no resources, ports or probes, and pulls
    with its pod's own imagePullSecrets: those settings are the targetless pod's alone."""

    image_pull_policy: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    namespace: str | None = None  # the targetless pod's (default: the context's)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, str], ...] = ()
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)


@dataclass
class KubeTarget:
    """The pod a session joins (None: targetless), how to reach the cluster, and its agent."""

    target: str | None  # None: targetless
    container: str | None
    context: str | None
    namespace: str | None
    kubeconfig: str | None
    image: str | None
    timeout: float
    settings: AgentSettings = field(default_factory=AgentSettings)
    python_image: str | None = None
