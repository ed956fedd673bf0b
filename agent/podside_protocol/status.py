"""Agent status: who is connected and what they subscribed (for tests, doctor and the editor)."""

from __future__ import annotations

STATUS = "agent.status"
