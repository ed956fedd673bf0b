"""`podside agent`: run the agent here (the same program as `python -m podside_agent`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    from podside_agent.main import add_arguments

    parser: argparse.ArgumentParser = subparsers.add_parser(
        "agent",
        help="run the podside agent (normally started in the pod by podside itself)",
        description="Run the podside agent in this network namespace.",
    )
    add_arguments(parser)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from podside_agent.main import run

    return run(args)
