"""`podside env`: print the pod's environment as a session would give it to the program.

It joins the pod as `podside exec` does (an agent in the pod, or `--agent HOST:PORT`) and
prints the target process's variables that a session takes, after the same filters
(`--exclude-env`, `--include-env`, `--env-map`, `--unset-env`). `-o dotenv` (the default)
reads back unchanged through `podside exec --env-file`; `-o json` is one object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from podside.environment import Mapping, dotenv_line, pod_variables, unset
from podside.errors import PodsideError
from podside.kube.agent_settings import AgentSettings, add_pull_arguments


def add_parser(subparsers: Any) -> None:
    from podside.exec_command import add_pod_env_arguments

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "env",
        help="print the pod's environment, as podside exec gives it to the program",
        description="Print the target process's environment variables that podside exec "
        "takes from the pod (not PATH, HOME and the other variables of this machine, unless "
        "--include-env names them), as a dotenv file --env-file reads back, or as JSON.",
    )
    target = parser.add_argument_group("which pod")
    target.add_argument("-t", "--target", metavar="KIND/NAME", help="the pod, as exec takes it")
    target.add_argument("--container", help="the target container (multi-container pods)")
    target.add_argument("--context", help="kubeconfig context (default: the current one)")
    target.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    target.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG)")
    target.add_argument("--agent-image", help="a prebuilt agent image, as exec takes it")
    target.add_argument(
        "--agent-python-image", metavar="IMAGE", help="the python image the agent runs in"
    )
    target.add_argument(
        "--agent-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the agent to run (default: 60)",
    )
    target.add_argument(
        "--agent", metavar="HOST:PORT", help="instead of Kubernetes: an agent already running"
    )
    target.add_argument(
        "--token",
        default=os.environ.get("PODSIDE_TOKEN"),
        help="with --agent: the agent's session token (default: $PODSIDE_TOKEN)",
    )
    add_pull_arguments(target, "a Secret the target pod pulls the agent's image with")
    env = parser.add_argument_group("which variables")
    env.add_argument(
        "-x",
        "--exclude-env",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out these pod variables (repeatable)",
    )
    env.add_argument(
        "--include-env",
        action="append",
        default=[],
        metavar="GLOB",
        help="only the pod variables matching these patterns; '*' for all (repeatable)",
    )
    add_pod_env_arguments(env)
    parser.add_argument(
        "-o",
        "--output",
        choices=("dotenv", "json"),
        default="dotenv",
        help='dotenv (default): NAME="VALUE" lines; json: one object of NAME: VALUE',
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    parser.set_defaults(run=run)


def format_variables(variables: dict[str, str], output: str) -> str:
    if output == "json":
        return json.dumps(variables, indent=2, ensure_ascii=False) + "\n"
    lines = []
    for name, value in variables.items():
        line = dotenv_line(name, value)
        if line is None:
            print(f"podside: left out {name!r}: a dotenv file cannot name it", file=sys.stderr)
        else:
            lines.append(line + "\n")
    return "".join(lines)


def run(args: argparse.Namespace) -> int:
    from podside.exec_command import KubeTarget, _checked

    if bool(args.target) == bool(args.agent):
        raise PodsideError("say which pod: one of --target KIND/NAME or --agent HOST:PORT", 2)
    mappings = [Mapping(*_checked("--env-map", text)) for text in args.env_map]
    unset_names = [_checked("--unset-env", text) for text in args.unset_env]
    timeout = _checked("--agent-timeout", args.agent_timeout)
    for name in args.image_pull_secret:
        _checked("--image-pull-secret", name)
    kube = None
    if args.target:
        kube = KubeTarget(
            target=args.target,
            container=args.container,
            context=args.context,
            namespace=args.namespace,
            kubeconfig=args.kubeconfig,
            image=args.agent_image,
            timeout=timeout,
            settings=AgentSettings(
                image_pull_policy=args.agent_image_pull_policy,
                image_pull_secrets=tuple(args.image_pull_secret),
            ),
            python_image=args.agent_python_image,
        )
    remote = asyncio.run(_pod_environment(args, kube))
    variables = pod_variables(
        remote, exclude=args.exclude_env, include=args.include_env, mappings=mappings
    )
    sys.stdout.write(format_variables(unset(variables, unset_names), args.output))
    return 0


async def _pod_environment(args: argparse.Namespace, kube: Any) -> dict[str, str]:
    from podside.exec_command import _ask
    from podside.session import AgentSession

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"podside: {message}", file=sys.stderr, flush=True)

    if kube is None:
        host, separator, port_text = args.agent.rpartition(":")
        if not separator or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise PodsideError(f"--agent {args.agent!r}: expected HOST:PORT", exit_code=2)
        if not args.token:
            raise PodsideError("the agent needs its token: --token TOKEN or $PODSIDE_TOKEN", 2)
        session = AgentSession(args.token, description=f"the agent at {host}:{port_text}")
        await session.connect_tcp(host.strip("[]"), int(port_text))
    else:
        from podside.kube import connect

        session = await connect.agent_session(kube, progress=progress)
    try:
        from podside_protocol import environment

        answer = await _ask(session, environment.GET, {}, "the pod's environment")
    finally:
        await session.close()
    found = answer.get("env") if isinstance(answer, dict) else None
    if not isinstance(found, dict):
        raise PodsideError(f"{session.description} sent no environment")
    return {str(name): str(value) for name, value in found.items()}
