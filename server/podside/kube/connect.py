"""From `--target` to a session: resolve the pod, start (or reuse) its agent, port-forward.

The Kubernetes client is synchronous, so its calls run in the default executor; the agent may
be running but not yet listening when its container is reported running, so the port-forward
and handshake (and, for a new agent of a plain python image, the delivery of its code) are
retried for a short while when the agent refuses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from podside.errors import PodsideError
from podside.kube.agent_code import AgentCode, deliver_code
from podside.kube.agent_settings import KubeTarget
from podside.kube.portforward import open_port_forward
from podside.session import AgentSession, AgentUnreachable

# From "container running" to "agent listening" takes the agent's start-up time.
LISTEN_GRACE_SECONDS = 20.0


async def agent_session(kube: KubeTarget, progress: Callable[[str], None]) -> AgentSession:
    from podside.kube import config, targets

    loop = asyncio.get_running_loop()

    def in_thread(function: Callable[[], Any]) -> Any:
        return loop.run_in_executor(None, function)

    context = await in_thread(
        lambda: config.load_context(kube.context, kube.namespace, kube.kubeconfig)
    )
    named = kube.target
    target = None
    if named is not None:
        target = await in_thread(lambda: targets.resolve_target(context, named, kube.container))
    session = await target_session(context, target, kube, progress)
    session.context = context
    return session


async def target_session(
    context: Any, target: Any, kube: KubeTarget, progress: Callable[[str], None]
) -> AgentSession:
    """The session to the agent in `target`'s pod (None: the targetless pod), started or
    reused with `kube`'s image and settings."""
    from podside.kube import agent

    loop = asyncio.get_running_loop()

    def in_thread(function: Callable[[], Any]) -> Any:
        return loop.run_in_executor(None, function)

    image = agent.AgentImage.of(kube.image, kube.python_image)
    settings = kube.settings

    def deliver_before_joining(namespace: str, pod: str, port: int, code: AgentCode) -> None:
        # Called from the thread that joins; the delivery runs on this loop. If it fails, the
        # enrollment that follows says why in its one line.
        delivery = deliver_code(
            context.configuration, namespace, pod, port, code, LISTEN_GRACE_SECONDS
        )
        with contextlib.suppress(PodsideError):
            asyncio.run_coroutine_threadsafe(delivery, loop).result()

    def start_agent() -> Any:
        if target is None:
            return agent.ensure_targetless_agent(
                context, image=image, progress=progress, timeout=kube.timeout, settings=settings
            )
        return agent.ensure_agent(
            context,
            target,
            image=image,
            progress=progress,
            timeout=kube.timeout,
            settings=settings,
            deliver=deliver_before_joining,
        )

    # A reused agent may reach its idle exit just as this session connects: then one new
    # agent is started before giving up.
    for attempt in range(2):
        endpoint = await in_thread(start_agent)
        try:
            session = await _connect(context, endpoint)
            session.probes = target.probes if target is not None else ()
            session.target = target
            return session
        except AgentUnreachable:
            if attempt or not endpoint.reused:
                raise
    raise AssertionError("unreachable")


async def _connect(context: Any, endpoint: Any) -> AgentSession:
    loop = asyncio.get_running_loop()
    description = f"the agent in pod {endpoint.namespace}/{endpoint.pod}"
    if endpoint.code is not None:
        try:
            await deliver_code(
                context.configuration,
                endpoint.namespace,
                endpoint.pod,
                endpoint.port,
                endpoint.code,
                LISTEN_GRACE_SECONDS,
            )
        except PodsideError as error:
            # A bootstrap that ended (an image's Python too old, say) said why in its status.
            from podside.kube.agent import why_agent_ended

            reason = await loop.run_in_executor(None, why_agent_ended, context, endpoint)
            raise PodsideError(reason or error.message) from None
    deadline = loop.time() + LISTEN_GRACE_SECONDS
    # A delivery the bootstrap closed may have lost to another's (then the agent answers) or
    # been dropped among too many connections of the pod's: sent once more if it does not.
    undelivered = endpoint.undelivered_code or endpoint.code
    while True:
        session = AgentSession(endpoint.token, description=description)
        try:
            await session.attach(
                lambda factory: open_port_forward(
                    context.configuration, endpoint.namespace, endpoint.pod, endpoint.port, factory
                )
            )
        except AgentUnreachable:
            if loop.time() > deadline:
                raise
            if undelivered is not None:
                # A reused agent whose starter ended before it sent the code: sent now, once.
                # If that fails too (the agent is ending, say), the handshake's retries and
                # their error decide, as for any reused agent.
                with contextlib.suppress(PodsideError):
                    await deliver_code(
                        context.configuration,
                        endpoint.namespace,
                        endpoint.pod,
                        endpoint.port,
                        undelivered,
                        0,
                    )
                undelivered = None
                continue
            await asyncio.sleep(0.2)
            continue
        return session
