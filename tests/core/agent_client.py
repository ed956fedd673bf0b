"""A minimal protocol client for tests that ask the agent directly (its status)."""

from __future__ import annotations

import asyncio
from typing import Any

from podside.session import AgentSession
from podside_protocol import status
from tests.topology import Pod


def agent_status(pod: Pod) -> dict[str, Any]:
    async def ask() -> dict[str, Any]:
        session = AgentSession(pod.token, description="the test agent")
        host, port = pod.agent_address.split(":")
        await session.connect_tcp(host, int(port))
        try:
            result: dict[str, Any] = await session.request(status.STATUS)
        finally:
            await session.close()
        # This client itself is counted: report the others.
        result["clients"] -= 1
        return result

    return asyncio.run(ask())
