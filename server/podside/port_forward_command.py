"""`podside port-forward`: local ports that reach any address the pod can reach.

Unlike `kubectl port-forward`, which reaches only the pod's own ports, each `-L
[[BIND:]LOCAL:]HOST:PORT` listens here and connects, from the pod, to HOST:PORT: a Service
name, another pod, a database outside the cluster the pod may reach. HOST is looked up as the
pod looks it up (`pod_resolver`), again for every connection, so a Service that moves is
followed. All connections are streams of one session to one agent, as a program's under
`podside exec` are (outgoing): no new port-forward of the API server per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import ipaddress
import logging
import os
import re
import signal
import socket
import struct
import sys
from dataclasses import dataclass
from typing import Any

from podside import config, pod_session
from podside.errors import PodsideError
from podside.layer.served_files import HOSTS, RESOLV_CONF
from podside.pod_resolver import LookupFailed, PodResolver
from podside.session import AgentSession
from podside_agent.peer import SocketRelay, StreamRefusedError
from podside_protocol.outgoing import STREAM_TCP, open_params

log = logging.getLogger(__name__)

_HOSTNAME = re.compile(r"(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+")
_LISTEN_BACKLOG = 512


@dataclass(frozen=True)
class Forward:
    bind: str
    local_port: int  # 0: any free port, named when it listens
    host: str
    port: int

    def remote(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "port-forward",
        help="local ports that reach any address the pod can reach",
        description="Listen on local ports and connect each connection, from the pod, to "
        "HOST:PORT: a Service, another pod, anything the pod can reach. HOST is looked up "
        "with the pod's DNS. Runs until interrupted (Ctrl-C).",
        usage="podside port-forward (--target KIND/NAME | --targetless | --agent HOST:PORT) "
        "-L [[BIND:]LOCAL:]HOST:PORT [-L ...] [options]",
    )
    parser.add_argument(
        "-L",
        "--local",
        dest="forwards",
        action="append",
        default=[],
        required=True,
        metavar="[[BIND:]LOCAL:]HOST:PORT",
        help="listen on LOCAL (default: PORT; 0 picks a free port) at BIND (default: "
        "127.0.0.1; * for every interface) and connect to HOST:PORT from the pod (repeatable; "
        "IPv6 addresses in brackets)",
    )
    pod_session.add_arguments(parser)
    output = parser.add_argument_group("output")
    output.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    output.add_argument(
        "-v", "--verbose", action="store_true", help="also print each forwarded connection"
    )
    config.add_argument(parser, "its pod settings apply, as for podside exec")
    parser.set_defaults(run=run)


def _split(text: str) -> list[str]:
    """`text` split at colons outside brackets; the brackets stay."""
    parts = [""]
    depth = 0
    for character in text:
        if character == "[":
            depth += 1
        elif character == "]":
            depth -= 1
        if character == ":" and depth == 0:
            parts.append("")
        else:
            parts[-1] += character
    return parts


def _port(text: str, spec: str, *, zero: bool = False) -> int:
    low = 0 if zero else 1
    # ASCII only: "²".isdigit() holds but int() refuses it; int() reads "\u0661" as 1
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= 65535:
        raise PodsideError(f"-L {spec!r}: {text!r} is not a port ({low}-65535)", exit_code=2)
    return int(text)


def parse_forward(spec: str) -> Forward:
    """One `-L` value; one line and exit 2 when it is not [[BIND:]LOCAL:]HOST:PORT."""
    parts = _split(spec)
    # Only BIND may be empty (`:8080:db:5432`, every interface, as ssh -L reads it).
    if len(parts) not in (2, 3, 4) or not all(parts[-3:]):
        raise PodsideError(
            f"-L {spec!r}: expected [[BIND:]LOCAL:]HOST:PORT, e.g. 5432:db:5432", exit_code=2
        )
    port = _port(parts[-1], spec)
    host = parts[-2]
    if host.startswith("["):
        if not host.endswith("]"):
            raise PodsideError(f"-L {spec!r}: unclosed [ in {host!r}", exit_code=2)
        host = host[1:-1]
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise PodsideError(f"-L {spec!r}: {host!r} is not a host name", exit_code=2) from None
    local_port = _port(parts[-3], spec, zero=True) if len(parts) >= 3 else port
    bind = "127.0.0.1"
    if len(parts) == 4:
        bind = _bind_address(parts[0], spec)
    return Forward(bind, local_port, host, port)


def _bind_address(text: str, spec: str) -> str:
    if text in ("", "*"):
        return "0.0.0.0"
    if text == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise PodsideError(
            f"-L {spec!r}: listen address {text!r}: expected an IP address, localhost or *",
            exit_code=2,
        ) from None


def _listen(forward: Forward, spec: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in forward.bind else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((forward.bind, forward.local_port))
        listener.listen(_LISTEN_BACKLOG)
        listener.setblocking(False)
    except OSError as error:
        listener.close()
        where = f"[{forward.bind}]" if family == socket.AF_INET6 else forward.bind
        raise PodsideError(
            f"-L {spec!r}: cannot listen on {where}:{forward.local_port}: "
            f"{os.strerror(error.errno) if error.errno else error}"
        ) from None
    return listener


def run(args: argparse.Namespace) -> int:
    specs: list[str] = list(args.forwards)
    forwards = [parse_forward(spec) for spec in specs]
    choice = pod_session.parse(args)
    seen: dict[tuple[str, int], str] = {}
    for spec, forward in zip(specs, forwards, strict=True):
        if forward.local_port and (forward.bind, forward.local_port) in seen:
            first = seen[forward.bind, forward.local_port]
            raise PodsideError(f"-L {spec!r} and -L {first!r} listen on one port", exit_code=2)
        seen[forward.bind, forward.local_port] = spec
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("podside: %(message)s"))
    podside_logger = logging.getLogger("podside")
    podside_logger.addHandler(handler)
    podside_logger.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    # Every port is ours before anything is asked of the cluster.
    listeners: list[socket.socket] = []
    try:
        for spec, forward in zip(specs, forwards, strict=True):
            listeners.append(_listen(forward, spec))
        return asyncio.run(_serve(choice, forwards, listeners, args.quiet, args.verbose))
    finally:
        for listener in listeners:
            listener.close()


def _say(quiet: bool, message: str) -> None:
    if not quiet:
        print(f"podside: {message}", file=sys.stderr, flush=True)


async def _serve(
    choice: pod_session.PodChoice,
    forwards: list[Forward],
    listeners: list[socket.socket],
    quiet: bool,
    verbose: bool,
) -> int:
    loop = asyncio.get_running_loop()
    stopped: asyncio.Future[int] = loop.create_future()

    def stop(number: int) -> None:
        if not stopped.done():
            stopped.set_result(number)

    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(number, stop, number)
    session = await pod_session.connect(choice, lambda message: _say(quiet, message))
    accepting: list[asyncio.Task[None]] = []
    try:
        resolv_conf = await pod_session.read_pod_file(session, RESOLV_CONF)
        hosts = await pod_session.read_pod_file(session, HOSTS)
        resolver = PodResolver(_peer(session), resolv_conf, hosts)
        for forward, listener in zip(forwards, listeners, strict=True):
            bound = listener.getsockname()
            where = f"[{bound[0]}]" if listener.family == socket.AF_INET6 else bound[0]
            # On stdout, as kubectl port-forward says it: a script waits for this line.
            print(f"Forwarding from {where}:{bound[1]} -> {forward.remote()}", flush=True)
            forwarder = _Forwarder(session, resolver, forward, verbose)
            accepting.append(loop.create_task(forwarder.accept(listener)))
        _say(quiet, f"forwarding through {session.description}; Ctrl-C to stop")
        waiting: list[asyncio.Future[Any]] = [stopped, session.lost]
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if session.lost in done and not stopped.done():
            _say(False, session.describe_loss())
            return 1
        return 0
    finally:
        for task in accepting:
            task.cancel()
        for task in accepting:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await session.close()


def _peer(session: AgentSession) -> Any:
    assert session.peer is not None
    return session.peer


class _Forwarder:
    """The connections of one `-L`: each looked up and connected from the pod, then relayed."""

    def __init__(
        self, session: AgentSession, resolver: PodResolver, forward: Forward, verbose: bool
    ) -> None:
        self._session = session
        self._resolver = resolver
        self._forward = forward
        self._verbose = verbose
        self._connections: set[asyncio.Task[None]] = set()

    async def accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    connection, _ = await loop.sock_accept(listener)
                except OSError as error:
                    if error.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        log.warning("cannot accept a connection: %s", os.strerror(error.errno))
                        await asyncio.sleep(0.1)  # descriptors run out: others may close
                        continue
                    raise
                task = loop.create_task(self._forward_one(connection))
                self._connections.add(task)
                task.add_done_callback(self._connections.discard)
        finally:
            for task in list(self._connections):
                task.cancel()

    async def _forward_one(self, connection: socket.socket) -> None:
        forward = self._forward
        connection.setblocking(False)
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            addresses = await self._resolver.resolve(forward.host)
            relay = await self._connect(addresses)
        except (LookupFailed, StreamRefusedError, ConnectionError) as error:
            log.warning("%s: %s", forward.remote(), _reason(error))
            _reset(connection)
            return
        except BaseException:
            _reset(connection)
            raise
        if self._verbose:
            log.info("forwarding a connection to %s", forward.remote())
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: relay, connection)
        except OSError:
            _reset(connection)  # the local client left meanwhile: the relay's close ends it

    async def _connect(self, addresses: list[str]) -> SocketRelay:
        """A relay whose stream is connected in the pod to the first address that accepts."""
        peer = _peer(self._session)
        failure: BaseException = LookupFailed("no address")
        for address in addresses:
            if peer.closed.done():
                raise ConnectionError("the session to the agent ended")
            relay = SocketRelay(peer)
            answered: asyncio.Future[dict[str, object] | BaseException] = (
                asyncio.get_running_loop().create_future()
            )
            relay.stream_id = peer.open_stream_then(
                STREAM_TCP,
                open_params((address, self._forward.port)),
                relay.endpoint,
                functools.partial(_answer, answered),
            )
            try:
                result = await answered
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    peer.reset_stream(relay.stream_id, "podside port-forward stopped")
                raise
            if not isinstance(result, BaseException):
                return relay
            failure = result
        raise failure


def _answer(
    answered: asyncio.Future[dict[str, object] | BaseException],
    result: dict[str, object] | BaseException,
) -> None:
    if not answered.done():
        answered.set_result(result)


def _reason(error: BaseException) -> str:
    if isinstance(error, StreamRefusedError) and error.errno:
        return f"the pod could not connect: {os.strerror(error.errno)}"
    return str(error)


def _reset(connection: socket.socket) -> None:
    """Close with a reset, as a refused connection looks to the local client."""
    with contextlib.suppress(OSError):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()
