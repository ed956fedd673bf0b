"""The `podside lsp` server: the commands and notifications the editor extension uses.

Every command takes one JSON object (the first argument of `workspace/executeCommand`) and
answers JSON. Expected failures answer a JSON-RPC error whose message is the one line the
extension shows; nothing here shows messages itself, so the editor decides how to tell the
user.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer

from podside import __version__
from podside.errors import PodsideError
from podside.kube import config, targets
from podside.lsp import launch
from podside.lsp.sessions import EVENTS_ENV, Sessions

# Agent start-up in the pod, the port-forward, and the program's start under its debugger.
START_TIMEOUT_SECONDS = 180.0


class BackendError(JsonRpcException):
    """A PodsideError on its way to the editor: the message is the whole story."""

    CODE = -32001  # in JSON-RPC's range for server-defined errors


class PodsideServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("podside", __version__)
        self.sessions = Sessions(self._notify)
        self.templates = launch.load_templates()

    def _notify(self, method: str, params: dict[str, Any]) -> None:
        self.protocol.notify(method, params)


Handler = Callable[[PodsideServer, dict[str, Any]], Awaitable[Any]]


def _params(args: tuple[Any, ...]) -> dict[str, Any]:
    if not args or args[0] is None:
        return {}
    if not isinstance(args[0], dict):
        raise BackendError("podside commands take one JSON object as their argument")
    return args[0]


def _string(params: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = params.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise BackendError(f"{key!r} must be a non-empty string")
    return value


def build_server() -> PodsideServer:
    server = PodsideServer()

    def command(name: str) -> Callable[[Handler], Handler]:
        """Register `handler` as command `name`, turning PodsideError into its one line."""

        def register(handler: Handler) -> Handler:
            async def run(ls: PodsideServer, *args: Any) -> Any:
                try:
                    return await handler(ls, _params(args))
                except PodsideError as error:
                    raise BackendError(error.message) from None

            server.command(name)(run)
            return handler

        return register

    @command("podside.listContexts")
    async def list_contexts(ls: PodsideServer, params: dict[str, Any]) -> Any:
        contexts, current = await asyncio.to_thread(config.list_contexts)
        return {"contexts": contexts, "current": current}

    @command("podside.listNamespaces")
    async def list_namespaces(ls: PodsideServer, params: dict[str, Any]) -> Any:
        context = _string(params, "context", required=False)
        return await asyncio.to_thread(lambda: config.list_namespaces(config.load_context(context)))

    @command("podside.listTargets")
    async def list_targets(ls: PodsideServer, params: dict[str, Any]) -> Any:
        context = _string(params, "context", required=False)
        namespace = _string(params, "namespace", required=False)
        every = bool(params.get("allNamespaces", False))
        return await asyncio.to_thread(
            lambda: targets.list_targets(config.load_context(context, namespace), namespace, every)
        )

    def _session_target(params: dict[str, Any]) -> str:
        """What a session is named by: its target, or "targetless" (a launch configuration
        with `"targetless": true` has none)."""
        return str(params.get("target") or "targetless")

    @command("podside.resolveLaunch")
    async def resolve_launch(ls: PodsideServer, params: dict[str, Any]) -> Any:
        if params.get("holdUntilAttached"):
            return await _resolve_attach(ls, params)
        # Validate before a session exists, so a bad configuration leaves nothing behind.
        launch.resolve(params, "check", ls.templates)
        session = await ls.sessions.open(_session_target(params), kind="debug")
        # Whoever runs the wrapped `podside exec` needs its events socket and the kubeconfig:
        # the debuggee for most runtimes (`env`), the debug adapter for delve (`adapterEnv`).
        wrapper_env = {EVENTS_ENV: str(session.events_path)}
        if "KUBECONFIG" in os.environ:
            wrapper_env["KUBECONFIG"] = os.environ["KUBECONFIG"]
        program_env = params.get("env")
        env = {**wrapper_env, **(program_env or {})}
        resolved = launch.resolve(
            {**params, "env": env, "programEnv": program_env, "adapterEnv": wrapper_env},
            session.id,
            ls.templates,
        )
        return {**resolved.to_json(), "sessionId": session.id}

    async def _resolve_attach(ls: PodsideServer, params: dict[str, Any]) -> Any:
        """Run the program with its debug server; answer once the debugger can attach."""
        launch.resolve_attach(params, "check", ls.templates)
        env = params.get("env", {})
        if not isinstance(env, dict):
            raise BackendError("'env' must be an object of NAME: VALUE")
        session = await ls.sessions.open(_session_target(params), kind="debug")
        session.attachable = True
        attach = launch.resolve_attach(params, session.id, ls.templates)
        await ls.sessions.run(
            session,
            attach.argv,
            attach.cwd,
            {str(name): str(value) for name, value in env.items()},
        )
        timeout = float(params.get("startTimeout", START_TIMEOUT_SECONDS))
        try:
            ready = await session.wait_until(
                lambda: attach.debug_port in session.listening, timeout
            )
        except TimeoutError:
            await ls.sessions.stop(session.id)
            raise BackendError(
                f"the program's debug server did not listen on port {attach.debug_port} "
                f"within {timeout:.0f} s"
            ) from None
        if not ready:
            raise BackendError(session.message or f"the session {session.state}")
        return {**attach.resolved.to_json(), "sessionId": session.id}

    @command("podside.startSession")
    async def start_session(ls: PodsideServer, params: dict[str, Any]) -> Any:
        program = params.get("command")
        if not isinstance(program, list) or not program:
            raise BackendError("'command' must be the program's argv, a non-empty list")
        argv = launch.exec_argv(params, launch.podside_command()) + [str(a) for a in program]
        session = await ls.sessions.open(_session_target(params), kind="process")
        await ls.sessions.run(session, argv, _string(params, "cwd", required=False))
        return session.describe()

    @command("podside.stopSession")
    async def stop_session(ls: PodsideServer, params: dict[str, Any]) -> Any:
        session_id = _string(params, "sessionId")
        assert session_id is not None
        return await ls.sessions.stop(session_id)

    @command("podside.debuggerAttached")
    async def debugger_attached(ls: PodsideServer, params: dict[str, Any]) -> Any:
        session_id = _string(params, "sessionId")
        assert session_id is not None
        return ls.sessions.debugger_attached(session_id, bool(params.get("attached", True)))

    @command("podside.listSessions")
    async def list_sessions(ls: PodsideServer, params: dict[str, Any]) -> Any:
        return ls.sessions.describe_all()

    @command("podside.replayRequest")
    async def replay_request(ls: PodsideServer, params: dict[str, Any]) -> Any:
        session_id = _string(params, "sessionId")
        request_id = _string(params, "requestId")
        assert session_id is not None and request_id is not None
        with_debugger = bool(params.get("withDebugger", False))
        return await ls.sessions.replay(session_id, request_id, with_debugger)

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: PodsideServer, params: None) -> None:
        await ls.sessions.stop_all()

    return server
