"""The agent's code as this podside delivers it to an agent container's bootstrap.

With no `--agent-image` the agent runs in a plain python image: its command is the bootstrap
(`podside_agent.bootstrap`), its arguments the SHA-256 and size of one zip of the packages
this podside runs itself (so client and agent never differ in version), and this podside
sends that zip over the port-forward once the container runs. Delivered rather than put in
the spec: ephemeral containers can never be removed, and ~110 KB of base64 per agent in the
pod object would reach etcd's 1.5 MiB limit after about a dozen agents (and be sent to every
watcher of the pod with each status change).
"""

from __future__ import annotations

import ast
import asyncio
import functools
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

import podside_agent
import podside_protocol
from podside.errors import PodsideError
from podside.kube.portforward import PortForwardClosed, open_port_forward
from podside_agent import bootstrap
from podside_agent.bootstrap import MAGIC, OK

# Each package's .py files. msgpack's are its pure-Python implementation, which it uses when
# its C extension is missing: the extension is built for one Python and platform, the image's
# may be another.
PACKAGES = (podside_agent, podside_protocol, msgpack)
# Zip entries carry no times of this machine, so one podside always delivers the same bytes.
_ENTRY_TIME = (1980, 1, 1, 0, 0, 0)
ANSWER_SECONDS = 15.0
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True)
class AgentCode:
    """The zip, and what the container's arguments say of it."""

    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


@functools.cache
def agent_code() -> AgentCode:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for package in PACKAGES:
            folder = Path(package.__file__ or "").parent
            for path in sorted(folder.glob("*.py")):
                entry = zipfile.ZipInfo(f"{folder.name}/{path.name}", _ENTRY_TIME)
                entry.compress_type = zipfile.ZIP_DEFLATED
                entry.external_attr = 0o644 << 16
                archive.writestr(entry, path.read_bytes(), compresslevel=9)
    data = buffer.getvalue()
    return AgentCode(data, hashlib.sha256(data).hexdigest())


@functools.cache
def bootstrap_source() -> str:
    """The bootstrap's text for `python -c`, without docstrings and comments: it stays in the
    pod's spec for as long as the pod lives."""
    tree = ast.parse(Path(bootstrap.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, _DOCUMENTED) and ast.get_docstring(node, clean=False) is not None:
            node.body = node.body[1:] or [ast.Pass()]
    return ast.unparse(tree)


class _NoAnswer(ConnectionError):
    """Closed cleanly without a line: the agent itself answered (it closes a connection that
    does not begin with a frame it takes), not a bootstrap, or the bootstrap took another
    session's delivery of the same code meanwhile."""


class _Delivery(asyncio.Protocol):
    """Sends the code and takes the bootstrap's one-line answer."""

    def __init__(self, code: AgentCode) -> None:
        self.code = code
        self.answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._received = b""

    def connection_made(self, transport: Any) -> None:
        transport.write(MAGIC + self.code.data)

    def data_received(self, data: bytes) -> None:
        self._received += bytes(data)
        if b"\n" in self._received and not self.answer.done():
            line = self._received.split(b"\n", 1)[0]
            self.answer.set_result(line.decode(errors="replace").strip())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc or _NoAnswer("closed without an answer"))


async def _deliver_once(
    configuration: Any, namespace: str, pod: str, port: int, code: AgentCode
) -> str:
    """One delivery: the bootstrap's answer line."""
    delivery = _Delivery(code)
    transport = await open_port_forward(configuration, namespace, pod, port, lambda: delivery)
    try:
        return await asyncio.wait_for(delivery.answer, ANSWER_SECONDS)
    finally:
        transport.close()


async def deliver_code(
    configuration: Any,
    namespace: str,
    pod: str,
    port: int,
    code: AgentCode,
    patience: float,
) -> None:
    """Send the code to the bootstrap listening on `port` in `pod`: retried for `patience`
    seconds while it is not listening yet (the port-forward fails then). Done, too, when the
    agent runs already: the code is public and the bootstrap checks only its digest, so any
    session of this podside may deliver it (the one that started the agent, one reusing it,
    one joining it), and the first delivery starts the agent."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    where = f"pod {namespace}/{pod}"
    while True:
        try:
            answer = await _deliver_once(configuration, namespace, pod, port, code)
        except _NoAnswer:
            return
        except (ConnectionError, PortForwardClosed, TimeoutError) as error:
            if loop.time() > deadline:
                raise PodsideError(
                    f"cannot deliver the agent's code to its container in {where}: "
                    f"{error or 'no answer'}"
                ) from None
            await asyncio.sleep(0.2)
            continue
        if answer != OK:
            raise PodsideError(f"the agent's container in {where} did not start: {answer}")
        return
