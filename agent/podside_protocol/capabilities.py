"""Agent capabilities: what the agent can do in the pod (for `podside doctor`).

`agent.capabilities` answers `{"net_raw": {"ok": bool, "detail": str}, "nftables": {...},
"identity": {"uid": int, "effective": int | None}}`: `net_raw` is whether it can open an
AF_PACKET socket (mirror), `nftables` whether it can add and remove an nftables table in the
pod's network namespace (steal, NET_ADMIN), `identity` the agent's effective uid and CapEff
mask (an older agent leaves it out).
"""

from __future__ import annotations

CAPABILITIES = "agent.capabilities"
