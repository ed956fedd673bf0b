"""Which pod a command works in, and the session to its agent.

`podside exec` and `podside port-forward` take the same options for this (`--target`,
`--targetless` or `--agent`, the kubeconfig, the agent's image and pod settings), parse them
the same way into a `PodChoice`, and open the session with `connect`; `ask` and
`read_pod_file` are the first questions such a command puts to the agent. Importing this
module does not import the Kubernetes client: `connect` loads it only for a Kubernetes target.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podside.errors import PodsideError
from podside.exec_values import checked_flag
from podside.kube.agent_settings import AgentSettings, KubeTarget, add_pull_arguments
from podside.session import AgentSession
from podside_agent.peer import RequestFailed
from podside_protocol import files
from podside_protocol.addresses import port_from_text


@dataclass
class PodChoice:
    """Exactly one of: an agent reached directly (`agent`, with `token`) or `kube`."""

    agent: tuple[str, int] | None
    token: str
    kube: KubeTarget | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The "which pod" options and the agent pod's settings, as argument groups of `parser`."""
    target = parser.add_argument_group("which pod")
    target.add_argument(
        "-t",
        "--target",
        metavar="KIND/NAME",
        help="the pod to run in the context of: pod/, deployment/, statefulset/, daemonset/, "
        "replicaset/, job/ or service/NAME",
    )
    target.add_argument("--container", help="the target container (multi-container pods)")
    target.add_argument(
        "--targetless",
        action="store_true",
        help="no target pod: an agent pod in the namespace, for outgoing traffic and DNS only",
    )
    target.add_argument("--context", help="kubeconfig context (default: the current one)")
    target.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    target.add_argument(
        "--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"
    )
    target.add_argument(
        "--agent-image",
        help="a prebuilt agent image (agent/Dockerfile, `make agent-image`) instead of the "
        "agent's code delivered by this podside to a plain python image",
    )
    target.add_argument(
        "--agent-python-image",
        metavar="IMAGE",
        help="the python image (3.10 or newer) the agent runs in without --agent-image, e.g. "
        "from your registry's mirror (default: python:3.12-slim)",
    )
    target.add_argument(
        "--agent-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the agent to run (default: 60)",
    )
    target.add_argument(
        "--agent",
        metavar="HOST:PORT",
        help="instead of Kubernetes: an agent already running and reachable from here",
    )
    target.add_argument(
        "--token",
        default=os.environ.get("PODSIDE_TOKEN"),
        help="with --agent: the agent's session token (default: $PODSIDE_TOKEN)",
    )
    agent_pod = parser.add_argument_group(
        "the agent's containers and the targetless pod (real clusters)"
    )
    add_pull_arguments(
        agent_pod,
        "a Secret the node pulls the agent's image with (repeatable); the targetless pod gets "
        "it, a target pod must already have it (an ephemeral container uses its pod's)",
    )
    agent_pod.add_argument(
        "--targetless-namespace",
        metavar="NAME",
        help="the namespace of the targetless pod (default: --namespace, else the context's)",
    )
    for kind, what in (
        ("label", "a label of the targetless pod"),
        (
            "annotation",
            "an annotation of the targetless pod (it always has "
            "sidecar.istio.io/inject=false and linkerd.io/inject=disabled unless set here)",
        ),
        ("node-selector", "the targetless pod runs only on nodes with this label"),
    ):
        agent_pod.add_argument(
            f"--targetless-{kind}",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"{what} (repeatable)",
        )
    agent_pod.add_argument(
        "--targetless-toleration",
        action="append",
        default=[],
        metavar="KEY[=VALUE][:EFFECT]",
        help="the targetless pod tolerates this taint, written as kubectl taint writes it "
        "(repeatable)",
    )
    for kind in ("requests", "limits"):
        agent_pod.add_argument(
            f"--targetless-{kind}",
            metavar="cpu=Q,memory=Q",
            help=f"the targetless agent container's resource {kind}, e.g. cpu=50m,memory=64Mi",
        )


def parse(args: argparse.Namespace) -> PodChoice:
    """The pod `args` name; one line and exit 2 for a choice that is missing or contradicts."""
    chosen = [
        flag
        for flag, value in (
            ("--target", args.target),
            ("--targetless", args.targetless),
            ("--agent", args.agent),
        )
        if value
    ]
    if len(chosen) != 1:
        raise PodsideError(
            "say which pod: one of --target KIND/NAME, --targetless or --agent HOST:PORT"
            + (f" (not {' and '.join(chosen)})" if chosen else ""),
            exit_code=2,
        )
    agent_timeout = checked_flag("--agent-timeout", args.agent_timeout)
    if args.agent:
        host, separator, port_text = args.agent.rpartition(":")
        if not separator or not host or port_from_text(port_text) is None:
            raise PodsideError(f"--agent {args.agent!r}: expected HOST:PORT", exit_code=2)
        if not args.token:
            raise PodsideError(
                "the agent needs its token: --token TOKEN or $PODSIDE_TOKEN", exit_code=2
            )
        return PodChoice(agent=(host.strip("[]"), int(port_text)), token=args.token, kube=None)
    kube = KubeTarget(
        target=args.target,
        container=args.container,
        context=args.context,
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        image=args.agent_image,
        timeout=agent_timeout,
        settings=agent_settings(args),
        python_image=args.agent_python_image,
    )
    return PodChoice(agent=None, token=args.token or "", kube=kube)


def agent_settings(args: argparse.Namespace) -> AgentSettings:
    """The agent pod settings, each value checked as its config key and launch field are."""

    def each(flag: str, values: list[str]) -> list[Any]:
        return [checked_flag(flag, value) for value in values]

    def optional(flag: str, value: str | None) -> Any:
        return None if value is None else checked_flag(flag, value)

    if not args.targetless:
        for flag, value in (
            ("--targetless-namespace", args.targetless_namespace),
            ("--targetless-label", args.targetless_label),
            ("--targetless-annotation", args.targetless_annotation),
            ("--targetless-node-selector", args.targetless_node_selector),
            ("--targetless-toleration", args.targetless_toleration),
            ("--targetless-requests", args.targetless_requests),
            ("--targetless-limits", args.targetless_limits),
        ):
            if value not in (None, []):
                raise PodsideError(f"{flag} is for the pod --targetless starts", exit_code=2)
    return AgentSettings(
        image_pull_policy=args.agent_image_pull_policy,
        image_pull_secrets=tuple(each("--image-pull-secret", args.image_pull_secret)),
        namespace=optional("--targetless-namespace", args.targetless_namespace),
        labels=dict(each("--targetless-label", args.targetless_label)),
        annotations=dict(each("--targetless-annotation", args.targetless_annotation)),
        node_selector=dict(each("--targetless-node-selector", args.targetless_node_selector)),
        tolerations=tuple(each("--targetless-toleration", args.targetless_toleration)),
        requests=optional("--targetless-requests", args.targetless_requests) or {},
        limits=optional("--targetless-limits", args.targetless_limits) or {},
    )


async def connect(choice: PodChoice, progress: Callable[[str], None]) -> AgentSession:
    """The session to the chosen pod's agent, started or reused; `progress` hears each step."""
    if choice.agent is not None:
        host, port = choice.agent
        session = AgentSession(choice.token, description=f"the agent at {host}:{port}")
        await session.connect_tcp(host, port)
        return session
    assert choice.kube is not None
    from podside.kube import connect as kube_connect

    return await kube_connect.agent_session(choice.kube, progress=progress)


async def ask(session: AgentSession, method: str, params: dict[str, Any], what: str) -> Any:
    try:
        return await session.request(method, params)
    except RequestFailed as error:
        raise PodsideError(f"{session.description} could not give {what}: {error}") from None
    except ConnectionError as error:
        raise PodsideError(f"lost {session.description}: {error}") from None


async def read_pod_file(session: AgentSession, path: str) -> bytes:
    result = await ask(session, *files.Read(path).message(), f"the pod's {path}")
    data = result.get("data") if isinstance(result, dict) else None
    if not isinstance(data, bytes):
        raise PodsideError(f"{session.description} sent no contents for {path}")
    return data
