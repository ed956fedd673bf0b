"""Command line of the agent: `python -m podside_agent --port N --token T [...]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence

from podside_agent import __version__
from podside_agent.podnet import PodNetwork
from podside_agent.server import AgentServer
from podside_agent.target import TargetProcess, find_target_process

log = logging.getLogger("podside_agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument(
        "--token",
        default=os.environ.get("PODSIDE_AGENT_TOKEN"),
        help="session token every client must present (default: $PODSIDE_AGENT_TOKEN)",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1",
        help="address to listen on; 127.0.0.1 (the default) is what a port-forward reaches "
        "and keeps the agent off the pod network",
    )
    parser.add_argument(
        "--target-pid",
        type=int,
        help="the pod's process (default: the oldest process sharing the agent's network "
        "namespace)",
    )
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="exit this long after the last client left (default: never)",
    )
    parser.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help="drop a client silent for this long (default: 3)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


class AgentStartError(Exception):
    """The agent cannot start; the message is one line for the user."""


async def serve(args: argparse.Namespace) -> None:
    if not args.token:
        raise AgentStartError("a session token is required (--token or $PODSIDE_AGENT_TOKEN)")
    target_pid = args.target_pid
    if target_pid is None:
        target_pid = find_target_process()
        if target_pid is None:
            log.warning("no target process shares this network namespace; env and files are off")
    elif not os.path.exists(f"/proc/{target_pid}"):
        raise AgentStartError(f"no process with pid {target_pid}")
    try:
        target = TargetProcess(target_pid, pinned=args.target_pid is not None)
    except OSError as error:
        raise AgentStartError(f"cannot look at process {target_pid}: {error.strerror}") from None
    network = PodNetwork(target_pid)
    server = AgentServer(
        token=args.token,
        network=network,
        target=target,
        heartbeat_timeout=args.heartbeat_timeout,
        idle_exit=args.idle_exit,
    )
    try:
        await server.start(args.listen, args.port)
    except OSError as error:
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise AgentStartError(f"cannot listen on {args.listen}:{args.port}: {reason}") from None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    listening = ", ".join(f"{host}:{port}" for host, port in server.addresses())
    # This line is what launchers wait for before connecting.
    print(
        f"podside-agent {__version__} listening on {listening} target pid {target_pid}", flush=True
    )
    try:
        await server.stopped
    finally:
        server.stop()
        network.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="podside-agent", description="podside's in-pod agent")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s podside-agent %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(args))
    except AgentStartError as error:
        print(f"podside-agent: {error}", file=sys.stderr)
        return 1
    return 0
