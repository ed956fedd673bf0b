"""A client and an agent connection wired together in memory (like h11's ConnectionPair)."""

from __future__ import annotations

from podside_protocol import Connection, Event, Role

TOKEN = "s3cret-token"


class ConnectionPair:
    def __init__(self, *, agent_token: str = TOKEN, client_version: int | None = None) -> None:
        client_kwargs = {} if client_version is None else {"version": client_version}
        self.client = Connection(Role.CLIENT, TOKEN, name="test-client", **client_kwargs)
        self.agent = Connection(Role.AGENT, agent_token, name="test-agent", session_id="s1")

    def to_agent(self) -> list[Event]:
        """Deliver everything the client queued; return the agent's events."""
        return self.agent.receive_data(b"".join(self.client.data_to_send()))

    def to_client(self) -> list[Event]:
        return self.client.receive_data(b"".join(self.agent.data_to_send()))

    def handshake(self) -> None:
        self.to_agent()
        self.to_client()
