"""Command line of the agent: `python -m podside_agent --port N (--token T | --token-sha256 H)
[...]`, and `--enroll`, which hands one more verifier to the agent already on port N."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from podside_agent import __version__
from podside_agent.bootstrap import EnrollmentFailed, enroll
from podside_agent.podnet import PodNetwork
from podside_agent.server import AgentServer
from podside_agent.target import TargetProcess, find_target_process
from podside_protocol.frames import PROTOCOL_ENV, PROTOCOL_VERSION
from podside_protocol.tokens import VERIFIER_ENV, Verifiers, parse_verifier

log = logging.getLogger("podside_agent")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument(
        "--token",
        default=os.environ.get("PODSIDE_AGENT_TOKEN"),
        help="a session token clients may present (default: $PODSIDE_AGENT_TOKEN)",
    )
    parser.add_argument(
        "--token-sha256",
        default=os.environ.get(VERIFIER_ENV),
        metavar="HEX",
        help="accept the token whose SHA-256 this is, so the token itself need not be where "
        f"the agent is started (default: ${VERIFIER_ENV})",
    )
    parser.add_argument(
        "--enroll",
        action="store_true",
        help="do not serve: make the agent already listening on --port in this pod accept "
        "the token of --token-sha256 too, then exit",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1",
        help="address to listen on; 127.0.0.1 (the default) is what a port-forward reaches "
        "and keeps the agent off the pod network",
    )
    parser.add_argument(
        "--listen-fd",
        type=int,
        metavar="FD",
        help="serve on this listening socket, already bound to --port (the bootstrap's: "
        "it received the agent's code on it)",
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


def verifiers_of(args: argparse.Namespace) -> Verifiers:
    verifiers = Verifiers.of_token(args.token) if args.token else Verifiers()
    if args.token_sha256:
        try:
            verifiers.add(args.token_sha256)
        except ValueError as error:
            raise AgentStartError(f"--token-sha256: {error}") from None
    if not verifiers:
        raise AgentStartError(
            f"a session token is required (--token, --token-sha256 or ${VERIFIER_ENV})"
        )
    return verifiers


def enroll_with_agent(args: argparse.Namespace) -> None:
    if not args.token_sha256:
        raise AgentStartError(f"--enroll hands over --token-sha256 (or ${VERIFIER_ENV})")
    try:
        enroll(args.port, parse_verifier(args.token_sha256))
    except ValueError as error:
        raise AgentStartError(f"--token-sha256: {error}") from None
    except (EnrollmentFailed, OSError) as error:
        raise AgentStartError(f"enrolling with the agent on port {args.port}: {error}") from None
    print(f"podside-agent: the agent on port {args.port} accepts one more token", flush=True)


def check_protocol_marker() -> None:
    """podside marks its agents with the protocol version it expects them to speak, and reuses
    an agent by that mark: an image whose agent speaks another one must not run under it."""
    marker = os.environ.get(PROTOCOL_ENV)
    if marker is not None and marker != str(PROTOCOL_VERSION):
        raise AgentStartError(
            f"this agent speaks protocol version {PROTOCOL_VERSION}, but its container is "
            f"marked {PROTOCOL_ENV}={marker}: use the agent image of the same podside release"
        )


async def serve(args: argparse.Namespace) -> None:
    check_protocol_marker()
    verifiers = verifiers_of(args)
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
        verifiers=verifiers,
        network=network,
        target=target,
        heartbeat_timeout=args.heartbeat_timeout,
        idle_exit=args.idle_exit,
    )
    try:
        if args.listen_fd is not None:
            await server.start_on(socket.socket(fileno=args.listen_fd))
        else:
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
        if args.enroll:
            enroll_with_agent(args)
        else:
            asyncio.run(serve(args))
    except AgentStartError as error:
        print(f"podside-agent: {error}", file=sys.stderr)
        return 1
    return 0
