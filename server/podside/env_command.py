"""`podside env`: print the pod's environment as a session would give it to the program.

It joins the pod as `podside exec` does (the same "which pod" options, `pod_session`, and the
same config file) and prints the target process's variables that a session takes, after the
same filters (`--exclude-env`, `--include-env`, `--env-map`, `--unset-env`). `-o dotenv` (the default)
reads back unchanged through `podside exec --env-file`; `-o json` is one object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from podside import config, pod_session
from podside.environment import Mapping, dotenv_line, pod_variables, unset
from podside.errors import PodsideError
from podside.exec_values import checked_flag


def add_parser(subparsers: Any) -> None:
    from podside.exec_command import add_pod_env_arguments

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "env",
        help="print the pod's environment, as podside exec gives it to the program",
        description="Print the target process's environment variables that podside exec "
        "takes from the pod (not PATH, HOME and the other variables of this machine, unless "
        "--include-env names them), as a dotenv file --env-file reads back, or as JSON.",
    )
    pod_session.add_arguments(parser)
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
    config.add_argument(parser, "its pod and environment settings apply, as for podside exec")
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
    if args.targetless or not (args.target or args.agent):
        # --targetless is a pod choice of exec's, but its pod has no environment of the app's.
        raise PodsideError("say which pod: one of --target KIND/NAME or --agent HOST:PORT", 2)
    mappings = [Mapping(*checked_flag("--env-map", text)) for text in args.env_map]
    unset_names = [checked_flag("--unset-env", text) for text in args.unset_env]
    choice = pod_session.parse(args)
    remote = asyncio.run(_pod_environment(choice, args.quiet))
    variables = pod_variables(
        remote, exclude=args.exclude_env, include=args.include_env, mappings=mappings
    )
    sys.stdout.write(format_variables(unset(variables, unset_names), args.output))
    return 0


async def _pod_environment(choice: pod_session.PodChoice, quiet: bool) -> dict[str, str]:
    from podside_protocol import environment

    def progress(message: str) -> None:
        if not quiet:
            print(f"podside: {message}", file=sys.stderr, flush=True)

    session = await pod_session.connect(choice, progress)
    try:
        answer = await pod_session.ask(session, environment.GET, {}, "the pod's environment")
    finally:
        await session.close()
    found = answer.get("env") if isinstance(answer, dict) else None
    if not isinstance(found, dict):
        raise PodsideError(f"{session.description} sent no environment")
    return {str(name): str(value) for name, value in found.items()}
