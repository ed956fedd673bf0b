"""The agent's start in a plain python image: the program its container runs as `python -c`.

With no `--agent-image`, the agent's container is the official python image, which holds no
podside code, and its command is this file's text. It listens on the agent's port and waits
for the agent's code: a zip (podside_agent, podside_protocol, msgpack's pure-Python modules)
that the podside which started it sends over the port-forward, after `MAGIC`. The port can be
reached by other processes of the pod before that podside connects, so the code is taken only
if its SHA-256 is the one the container's arguments name (`--code-sha256`, `--code-size`):
any other delivery is answered `refused: ...` and closed, and the wait goes on. The verified
zip is run from a sealed memfd (zipimport), on the same listening socket (`--listen-fd`), so
no other process can put code or a listener in between.

`--enroll` needs no delivery: the enrollment client is here, in the standard library alone.
Nothing here may import podside: it runs before podside's code is in the container.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import hashlib
import hmac
import os
import socket
import sys
import time
from collections.abc import Sequence

MAGIC = b"podside-agent-code/1\n"
MINIMUM_PYTHON = (3, 10)
VERIFIER_ENV = "PODSIDE_AGENT_TOKEN_SHA256"  # podside_protocol.tokens.VERIFIER_ENV
LISTEN_ADDRESS = "127.0.0.1"  # the agent's default --listen: what a port-forward reaches
DELIVERY_SECONDS = 20.0  # for one connection to send the code
CODE_WAIT_SECONDS = 120.0  # for any connection to: then its starter is gone
MAX_DELIVERIES = 16  # connections read at once; a new one closes the oldest
OK = "ok"

_ENROLL_LINE_BYTES = 4096
_ENROLL_ANSWER_SECONDS = 10.0
_ENROLL_CONNECT_SECONDS = 10.0


class BootstrapFailed(Exception):
    """The agent cannot start; the message is one line for the user."""


class EnrollmentFailed(Exception):
    """The agent did not take the verifier; the message is one line for the user."""


def enrollment_socket(port: int) -> str:
    """The abstract socket of the agent listening on `port`: the port tells the agents of one
    pod apart, since only one of them can listen on it."""
    return f"\0podside-agent/{port}"


def enroll(port: int, verifier: str) -> None:
    """Hand `verifier` to the agent on `port` in this network namespace and wait for its answer.

    The agent may have just started: a missing socket is retried for a few seconds.
    """
    deadline = time.monotonic() + _ENROLL_CONNECT_SECONDS
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(_ENROLL_ANSWER_SECONDS)
        try:
            sock.connect(enrollment_socket(port))
            break
        # Refused: not listening yet; EAGAIN: its backlog is full (a flood of the pod's).
        except (ConnectionRefusedError, BlockingIOError):
            sock.close()
            if time.monotonic() > deadline:
                raise EnrollmentFailed(
                    f"no agent listens for enrollments on port {port} in this pod"
                ) from None
            time.sleep(0.2)
    with sock:
        # A refusing agent may close before the line is taken: its answer is still read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(f"{verifier}\n".encode())
        answer = b""
        while not answer.endswith(b"\n") and len(answer) < _ENROLL_LINE_BYTES:
            piece = sock.recv(_ENROLL_LINE_BYTES)
            if not piece:
                break
            answer += piece
    text = answer.decode(errors="replace").strip()
    if text != OK:
        raise EnrollmentFailed(text or "the agent closed the connection without an answer")


def listen(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LISTEN_ADDRESS, port))
        listener.listen(128)
    except OSError as error:
        listener.close()
        raise BootstrapFailed(
            f"cannot listen on {LISTEN_ADDRESS}:{port}: {error.strerror or error}"
        ) from None
    listener.setblocking(False)
    return listener


async def _read_delivery(conn: socket.socket, digest: str, size: int) -> bytes | None:
    """The code `conn` sends, if it is the one named; None if the peer is not delivering code
    (closed silently) or sent other code (told why)."""
    loop = asyncio.get_running_loop()
    expected = len(MAGIC) + size
    received = bytearray()
    while len(received) < expected:
        piece = await loop.sock_recv(conn, min(1 << 20, expected - len(received)))
        if not piece:
            return None
        received += piece
        # A podside client that came before the code is no delivery: closed at once, it
        # retries as it does while an agent is not yet listening.
        if not MAGIC.startswith(bytes(received[: len(MAGIC)])):
            return None
    code = bytes(received[len(MAGIC) :])
    if not hmac.compare_digest(hashlib.sha256(code).hexdigest(), digest):
        reason = "this code's SHA-256 is not the one the agent's container names"
        print(f"podside-agent: refused a delivery: {reason}", file=sys.stderr, flush=True)
        await loop.sock_sendall(conn, f"refused: {reason}\n".encode())
        return None
    return code


async def receive_code(
    listener: socket.socket, digest: str, size: int
) -> tuple[bytes, socket.socket]:
    """Accept connections until one delivers the code named; its connection is returned open,
    for the answer. Every other connection is closed."""
    loop = asyncio.get_running_loop()
    delivered: asyncio.Future[tuple[bytes, socket.socket]] = loop.create_future()
    readers: dict[socket.socket, asyncio.Task[None]] = {}

    async def read(conn: socket.socket) -> None:
        keep = False
        try:
            code = await asyncio.wait_for(_read_delivery(conn, digest, size), DELIVERY_SECONDS)
            if code is not None and not delivered.done():
                delivered.set_result((code, conn))
                keep = True
        except (OSError, asyncio.TimeoutError):  # noqa: UP041 (not the same before 3.11)
            pass
        finally:
            readers.pop(conn, None)
            if not keep:
                conn.close()

    async def accept() -> None:
        while True:
            conn, _ = await loop.sock_accept(listener)
            conn.setblocking(False)
            if len(readers) >= MAX_DELIVERIES:
                readers[next(iter(readers))].cancel()
            readers[conn] = loop.create_task(read(conn))

    acceptor = loop.create_task(accept())
    try:
        return await asyncio.wait_for(asyncio.shield(delivered), CODE_WAIT_SECONDS)
    except asyncio.TimeoutError:  # noqa: UP041 (not the same before 3.11)
        raise BootstrapFailed(
            f"no podside delivered the agent's code within {CODE_WAIT_SECONDS:g} s"
        ) from None
    finally:
        acceptor.cancel()
        for task in list(readers.values()):
            task.cancel()
        await asyncio.gather(acceptor, *readers.values(), return_exceptions=True)


def import_agent(code: bytes) -> None:
    """Put the verified zip first on sys.path, from a sealed memfd so no one can change it
    after the check, and import the agent from it (an error is told before the agent runs)."""
    fd = os.memfd_create("podside-agent.zip", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    view = memoryview(code)
    while view:
        view = view[os.write(fd, view) :]
    fcntl.fcntl(
        fd,
        fcntl.F_ADD_SEALS,
        fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE,
    )
    sys.path.insert(0, f"/proc/self/fd/{fd}")
    try:
        import podside_agent.main  # noqa: F401
    except Exception as error:
        raise BootstrapFailed(f"the delivered agent does not import: {error!r}") from None


def run_agent(port: int, digest: str, size: int, agent_args: list[str]) -> int:
    listener = listen(port)
    print(f"podside-agent bootstrap waiting for code on {LISTEN_ADDRESS}:{port}", flush=True)
    code, conn = asyncio.run(receive_code(listener, digest, size))
    with conn:
        conn.setblocking(True)
        try:
            import_agent(code)
        except BootstrapFailed as error:
            with contextlib.suppress(OSError):
                conn.sendall(f"refused: {error}\n".encode())
            raise
        with contextlib.suppress(OSError):
            conn.sendall(f"{OK}\n".encode())
    from podside_agent.main import main as agent_main

    fd = listener.detach()
    return agent_main([*agent_args, "--port", str(port), "--listen-fd", str(fd)])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="podside-agent-bootstrap", allow_abbrev=False)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--code-sha256", metavar="HEX", help="the SHA-256 of the agent's code")
    parser.add_argument("--code-size", type=int, metavar="BYTES", help="its size")
    parser.add_argument("--enroll", action="store_true", help="see `podside_agent --enroll`")
    args, agent_args = parser.parse_known_args(argv)
    try:
        if sys.version_info < MINIMUM_PYTHON:
            raise BootstrapFailed(
                "the agent needs Python {}.{} or newer; this image has {}".format(
                    *MINIMUM_PYTHON, sys.version.split()[0]
                )
            )
        if args.enroll:
            try:
                enroll(args.port, os.environ.get(VERIFIER_ENV, ""))
            except (EnrollmentFailed, OSError) as error:
                raise BootstrapFailed(
                    f"enrolling with the agent on port {args.port}: {error}"
                ) from None
            print(f"podside-agent: the agent on port {args.port} accepts one more token")
            return 0
        if not args.code_sha256 or args.code_size is None:
            raise BootstrapFailed("--code-sha256 and --code-size name the code to run")
        return run_agent(args.port, args.code_sha256.lower(), args.code_size, agent_args)
    except (BootstrapFailed, OSError) as error:
        print(f"podside-agent: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
