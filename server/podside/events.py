"""Events for whoever started podside: the editor's backend listens on a Unix socket named by
`PODSIDE_EVENTS` and gets one JSON object per line (progress, state, traffic).

The socket also carries the session's life: when the backend closes it (the user stopped the
session in the editor), podside ends the program as if it had been sent SIGTERM. The backend
writes JSON lines back on it too: `{"command": "debugger", "attached": true|false}` says
whether a debugger is attached to the program, which releases or holds incoming connections
under `--hold-until-attached`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Literal, NotRequired, TypedDict

from podside.layer.http_watch import Exchange

log = logging.getLogger(__name__)

EVENTS_ENV = "PODSIDE_EVENTS"


# The events, one JSON object a line, as `EventReporter` writes them and the editor's backend
# (`lsp/sessions.py`) reads them back with `read_event`: one definition for both ends.
class ProgressEvent(TypedDict):
    event: Literal["progress"]
    message: str


class StateEvent(TypedDict):
    event: Literal["state"]
    state: str
    message: NotRequired[str]


class ListeningEvent(TypedDict):
    event: Literal["listening"]
    port: int


class HeldEvent(TypedDict):
    event: Literal["held"]
    localPort: int
    port: int
    source: str


class TrafficEvent(TypedDict):
    event: Literal["traffic"]
    id: str
    time: float
    method: str
    path: str
    status: int | None
    duration: float | None
    mode: str
    localPort: int  # camelCase: the JSON keys are the editor's
    probe: NotRequired[bool]
    request: NotRequired[str]  # base64 of the raw request, for replay


Event = ProgressEvent | StateEvent | ListeningEvent | HeldEvent | TrafficEvent


class DebuggerCommand(TypedDict):
    """What the backend writes back: whether a debugger is attached to the program."""

    command: Literal["debugger"]
    attached: bool


# Each event's fields a reader relies on, with their JSON types.
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "progress": {"message": str},
    "state": {"state": str},
    "listening": {"port": int},
    "held": {"port": int, "source": str},
    "traffic": {"id": str, "method": str, "path": str},
}


def read_event(value: object) -> Event | None:
    """`value` (a decoded JSON line) as an event, or None when it is not one a reader knows."""
    if not isinstance(value, dict):
        return None
    required = _REQUIRED.get(value.get("event"))  # type: ignore[arg-type]
    if required is None:
        return None
    for key, kind in required.items():
        field = value.get(key)
        if not isinstance(field, kind) or (isinstance(field, bool) and kind is int):
            return None
    return value  # type: ignore[return-value]


class EventReporter:
    """Writes events to the backend, or nowhere when podside runs on its own."""

    def __init__(self) -> None:
        self._writer: asyncio.StreamWriter | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Told each time the backend says whether a debugger is attached.
        self.on_debugger: Callable[[bool], None] | None = None

    @classmethod
    async def from_environment(cls, environment: dict[str, str]) -> EventReporter:
        """Connect to the socket named in `environment` (and drop it from there)."""
        reporter = cls()
        path = environment.pop(EVENTS_ENV, None)
        if path:
            try:
                reader, reporter._writer = await asyncio.open_unix_connection(path)
            except OSError as error:
                log.warning("cannot reach the editor's events socket %s: %s", path, error)
            else:
                asyncio.get_running_loop().create_task(reporter._watch(reader))
        return reporter

    async def _watch(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError, ValueError):  # ValueError: a line past the limit
            async for line in reader:
                self._on_command(line)
        if not self.closed.done():
            self.closed.set_result(None)

    def _on_command(self, line: bytes) -> None:
        try:
            command = json.loads(line)
        except ValueError:
            log.warning("the editor sent a line that is not JSON: %r", line[:80])
            return
        if not isinstance(command, dict):
            return
        if command.get("command") == "debugger" and self.on_debugger is not None:
            self.on_debugger(bool(command.get("attached")))

    def _send(self, event: Event) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(json.dumps(event).encode() + b"\n")

    def progress(self, message: str) -> None:
        self._send({"event": "progress", "message": message})

    def state(self, state: str, message: str = "") -> None:
        self._send({"event": "state", "state": state, "message": message})

    def listening(self, port: int) -> None:
        """The program listens on `port` of this machine."""
        self._send({"event": "listening", "port": port})

    def held(self, local_port: int, remote_port: int, source: tuple[str, int]) -> None:
        """A connection to the program waits for a debugger (`--hold-until-attached`)."""
        self._send(
            {
                "event": "held",
                "localPort": local_port,
                "port": remote_port,
                "source": f"{source[0]}:{source[1]}",
            }
        )

    def traffic(self, exchange: Exchange, local_port: int, mode: str, probe: bool = False) -> None:
        """One HTTP exchange; `probe`: it is the kubelet's health check of the pod."""
        event: TrafficEvent = {
            "event": "traffic",
            "id": str(exchange.id),
            "time": exchange.started,
            "method": exchange.method,
            "path": exchange.path,
            "status": exchange.status,
            "duration": exchange.duration,
            "mode": mode,
            "localPort": local_port,
        }
        if probe:
            event["probe"] = True
        if exchange.request is not None:
            event["request"] = base64.b64encode(exchange.request).decode()
        self._send(event)

    @property
    def active(self) -> bool:
        return self._writer is not None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
