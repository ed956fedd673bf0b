"""The sessions the backend owns: one per debug launch or per program it runs itself.

A session is born in `podside.resolveLaunch` (the debugger then starts the wrapped debuggee)
or in `podside.startSession` (the backend runs `podside exec` as its own child). Either way
the backend listens on a Unix socket named in the wrapped process's `PODSIDE_EVENTS`, where
`podside exec` writes one JSON object per line:

    {"event": "progress", "message": "agent starting"}
    {"event": "state", "state": "running"}
    {"event": "traffic", "id": ..., "time": ..., "method": ..., "path": ..., "status": ...,
     "duration": ..., "mode": "mirror", "localPort": 8080, "request": "<base64 bytes>"}
    {"event": "listening", "port": 5678}
    {"event": "held", "port": 8080, "localPort": 8080, "source": "10.0.0.7:41234"}

Each becomes a notification to the editor, and traffic is kept for replay. Stopping a session
closes that socket (the wrapped `podside exec` ends when it closes) and ends a child.

The backend writes back `{"command": "debugger", "attached": true|false}` whenever the editor
says a debugger attached to or left the session's program (`podside.debuggerAttached`). A
held connection (`podside exec --hold-until-attached`) or a replay with the debugger, while
none is attached, asks the editor to attach one: `podside/attachDebugger`.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podside.errors import PodsideError
from podside.events import DebuggerCommand, Event, TrafficEvent, read_event

log = logging.getLogger(__name__)

EVENTS_ENV = "PODSIDE_EVENTS"
# Recorded requests kept per session for replay; older ones are forgotten first.
TRAFFIC_KEPT = 200
STOP_GRACE_SECONDS = 5.0
# A line of the child's output (`podside/output`) is cut to this.
LINE_LIMIT = 300
_EXIT_STATUS = re.compile(r"exit status \d+")
# How long a replay with the debugger waits for the editor to attach one.
ATTACH_TIMEOUT_SECONDS = 120.0

Notify = Callable[[str, dict[str, Any]], None]


@dataclass
class Session:
    id: str
    target: str
    kind: str  # "debug": the debugger runs the wrapped debuggee; "process": our child
    events_path: Path
    state: str = "starting"
    message: str = ""
    process: asyncio.subprocess.Process | None = None
    # Why the wrapper said it failed (a refused steal, a lost agent), for the program we run.
    wrapper_failure: str = ""
    traffic: dict[str, dict[str, Any]] = field(default_factory=dict)
    server: asyncio.AbstractServer | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    # Whether a debugger can attach to the program later (it runs with a debug server).
    attachable: bool = False
    attached: bool = False
    # Set on every change of `attached`, of `listening` or of the state.
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    listening: set[int] = field(default_factory=set)
    # An attach was asked for and not answered yet: held connections do not ask again.
    attach_asked: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "sessionId": self.id,
            "target": self.target,
            "kind": self.kind,
            "state": self.state,
            "message": self.message,
            "attachable": self.attachable,
            "debuggerAttached": self.attached,
        }

    def notify_changed(self) -> None:
        """Wake whoever waits in `wait_until` to look again."""
        self.changed.set()
        self.changed.clear()

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until `condition()` or the session's end; answers `condition()`."""
        async with asyncio.timeout(timeout):
            while not condition() and self.state not in ("stopped", "failed"):
                waiter = asyncio.ensure_future(self.changed.wait())
                try:
                    await waiter
                finally:
                    waiter.cancel()
        return condition()


class Sessions:
    """Every session of this backend, and the notifications they cause."""

    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self._sessions: dict[str, Session] = {}
        self._ids = itertools.count(1)
        self._directory = Path(tempfile.mkdtemp(prefix="podside-lsp-"))
        # The sessions' sockets live here; nothing of the backend may outlive it.
        atexit.register(shutil.rmtree, self._directory, True)
        # Watchers of our children, held so that they are not collected while running.
        self._watchers: set[asyncio.Task[None]] = set()

    def get(self, session_id: str) -> Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise PodsideError(f"no session {session_id!r} in this editor") from None

    def describe_all(self) -> list[dict[str, Any]]:
        return [session.describe() for session in self._sessions.values()]

    async def open(self, target: str, kind: str) -> Session:
        session_id = f"s{next(self._ids)}"
        session = Session(
            id=session_id,
            target=target,
            kind=kind,
            events_path=self._directory / f"{session_id}.sock",
        )
        session.server = await asyncio.start_unix_server(
            lambda reader, writer: self._follow(session, reader, writer),
            path=str(session.events_path),
        )
        self._sessions[session_id] = session
        self._set_state(session, "starting")
        return session

    async def run(
        self,
        session: Session,
        argv: list[str],
        cwd: str | None,
        env_overrides: dict[str, str] | None = None,
    ) -> None:
        """Run the wrapped program as our child; its end ends the session."""
        env = {**os.environ, **(env_overrides or {}), EVENTS_ENV: str(session.events_path)}
        try:
            session.process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as error:
            await self.close(session, "failed", f"cannot run {argv[0]}: {error.strerror}")
            raise PodsideError(session.message) from None
        watcher = asyncio.create_task(self._watch(session, session.process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, session: Session, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        last_lines: list[str] = []
        async for raw in process.stdout:
            line = raw.decode(errors="replace").rstrip()[:LINE_LIMIT]
            if line:
                last_lines = [*last_lines[-1:], line]
                self._notify("podside/output", {"sessionId": session.id, "line": line})
        code = await process.wait()
        if session.state in ("stopping", "stopped"):
            await self.close(session, "stopped", "stopped")
        elif code == 0:
            await self.close(session, "stopped", "the program exited")
        else:
            reason = session.wrapper_failure or _failure(last_lines)
            await self.close(session, "failed", reason or f"exit status {code}")

    async def _follow(
        self, session: Session, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        session.writers.append(writer)
        if session.attached:
            _write_command(writer, {"command": "debugger", "attached": True})
        try:
            async for raw in reader:
                try:
                    event = json.loads(raw)
                except ValueError:
                    log.warning("session %s: not a JSON event: %r", session.id, raw[:80])
                    continue
                known = read_event(event)
                if known is not None:
                    self._on_event(session, known)
        finally:
            if writer in session.writers:
                session.writers.remove(writer)
            writer.close()

    def _on_event(self, session: Session, event: Event) -> None:
        if event["event"] == "progress":
            message = _one_line(event["message"])
            self._notify("podside/progress", {"sessionId": session.id, "message": message})
        elif event["event"] == "state":
            if session.state in ("stopping", "stopped", "failed"):
                return
            state = event["state"]
            if session.process is not None and state in ("stopped", "failed"):
                # A program the backend runs: _watch tells its end once it has exited, with
                # the wrapper's reason when it gave one, else the program's last lines.
                if state == "failed":
                    session.wrapper_failure = _one_line(str(event.get("message", "")))
                return
            self._set_state(session, state, str(event.get("message", "")))
        elif event["event"] == "traffic":
            self._record(session, event)
        elif event["event"] == "listening":
            session.listening.add(event["port"])
            session.notify_changed()
        elif event["event"] == "held" and not session.attached:
            source, port = event["source"], event["port"]
            self._ask_to_attach(session, f"a request from {source} to port {port} waits")

    def _ask_to_attach(self, session: Session, reason: str) -> None:
        if session.attach_asked or not session.attachable:
            return
        session.attach_asked = True
        self._notify("podside/attachDebugger", {"sessionId": session.id, "reason": reason})

    def debugger_attached(self, session_id: str, attached: bool) -> dict[str, Any]:
        """The editor's word that a debugger attached to (or left) the session's program."""
        session = self.get(session_id)
        session.attached = attached
        session.attach_asked = False
        for writer in session.writers:
            _write_command(writer, {"command": "debugger", "attached": attached})
        session.notify_changed()
        self._notify("podside/sessionState", session.describe())
        return session.describe()

    def _record(self, session: Session, event: TrafficEvent) -> None:
        record: dict[str, Any] = {key: value for key, value in event.items() if key != "event"}
        request_id = str(record.get("id", len(session.traffic) + 1))
        record["id"] = request_id
        session.traffic[request_id] = record
        while len(session.traffic) > TRAFFIC_KEPT:
            del session.traffic[next(iter(session.traffic))]
        shown = ("id", "time", "method", "path", "status", "duration", "mode", "probe")
        self._notify(
            "podside/traffic",
            {"sessionId": session.id, **{key: record[key] for key in shown if key in record}},
        )

    def _set_state(self, session: Session, state: str, message: str = "") -> None:
        session.state = state
        session.message = message
        session.notify_changed()
        self._notify("podside/sessionState", session.describe())

    async def stop(self, session_id: str) -> dict[str, Any]:
        session = self.get(session_id)
        if session.state in ("stopped", "failed"):
            return session.describe()
        self._set_state(session, "stopping")
        process = session.process
        if process is not None and process.returncode is None:
            _signal_group(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                _signal_group(process, signal.SIGKILL)
                await process.wait()
        await self.close(session, "stopped", "stopped")
        return session.describe()

    async def close(self, session: Session, state: str, message: str) -> None:
        if session.server is not None:
            session.server.close()
            session.server = None
        for writer in list(session.writers):
            writer.close()
        session.events_path.unlink(missing_ok=True)
        if session.state not in ("stopped", "failed"):
            self._set_state(session, state, message)

    async def replay(self, session_id: str, request_id: str, with_debugger: bool) -> dict[str, Any]:
        """Send a recorded request to the local program again; answers its status line."""
        session = self.get(session_id)
        record = session.traffic.get(request_id)
        if record is None:
            raise PodsideError(f"session {session_id} has no recorded request {request_id!r}")
        if with_debugger and session.kind != "debug":
            raise PodsideError(
                f"session {session_id} runs without a debugger; start it with Run with cluster context"
            )
        if session.state != "running":
            raise PodsideError(f"session {session_id} is {session.state}, not running")
        if with_debugger and not session.attached:
            self._ask_to_attach(session, f"replaying {record.get('method')} {record.get('path')}")
            try:
                await session.wait_until(lambda: session.attached, ATTACH_TIMEOUT_SECONDS)
            except TimeoutError:
                raise PodsideError(
                    f"no debugger attached to session {session_id} within "
                    f"{ATTACH_TIMEOUT_SECONDS:.0f} s; the request was not replayed"
                ) from None
            if not session.attached:
                raise PodsideError(f"session {session_id} is {session.state}, not running")
        if "request" not in record or "localPort" not in record:
            raise PodsideError(f"request {request_id!r} was recorded without its bytes")
        payload = base64.b64decode(record["request"])
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(record["localPort"]))
        except OSError as error:
            raise PodsideError(
                f"the program does not accept connections on port {record['localPort']}: "
                f"{error.strerror}"
            ) from None
        try:
            writer.write(payload)
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
        return {"sessionId": session_id, "requestId": request_id, "status": _status(status_line)}

    async def stop_all(self) -> None:
        for session_id in list(self._sessions):
            await self.stop(session_id)


def _write_command(writer: asyncio.StreamWriter, command: DebuggerCommand) -> None:
    if not writer.is_closing():
        writer.write(json.dumps(command).encode() + b"\n")


def _signal_group(process: asyncio.subprocess.Process, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def _failure(last_lines: list[str]) -> str:
    """The line that says why the program failed: its last one, unless that only says how it
    exited (a build that failed in delve or `go run` ends with "exit status 2" after the
    compiler's message), then the one before as well."""
    if len(last_lines) == 2 and _EXIT_STATUS.fullmatch(last_lines[1].strip()):
        return _one_line(f"{last_lines[0]}; {last_lines[1]}")
    return _one_line(last_lines[-1]) if last_lines else ""


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:LINE_LIMIT] if lines else ""


def _status(status_line: bytes) -> int | None:
    parts = status_line.split()
    if len(parts) >= 2 and parts[1].isdigit():
        return int(parts[1])
    return None
