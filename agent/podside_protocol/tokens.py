"""Session tokens and their verifiers.

An agent holds only verifiers, the SHA-256 digests of the tokens it accepts: what is visible
where the agent was started (a pod's spec, which `get pods` shows) grants nothing, and the
token itself stays with the sessions that may use the agent. A token is 256 random bits, so
an unsalted digest is as hard to invert as the token is to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from collections.abc import Iterable

__all__ = [
    "MAX_VERIFIERS",
    "VERIFIER_ENV",
    "Verifiers",
    "new_token",
    "parse_verifier",
    "verifier_of",
]

# How a verifier reaches an agent started by Kubernetes: its container's environment.
VERIFIER_ENV = "PODSIDE_AGENT_TOKEN_SHA256"

# Each enrollment adds a verifier, and a busy shared agent may never reach its idle exit: the
# set is bounded, and a full set drops the verifier unused longest rather than turn every
# newcomer away for as long as the agent lives.
MAX_VERIFIERS = 1024
_TOKEN_BYTES = 32
_HEX_DIGITS = frozenset(string.hexdigits.lower())


def new_token() -> str:
    return secrets.token_urlsafe(_TOKEN_BYTES)


def verifier_of(token: str) -> str:
    """The lowercase hex SHA-256 of the token's UTF-8 bytes."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_verifier(text: str) -> str:
    """`text` as a verifier (64 hex digits, any case), or ValueError saying what is wrong."""
    verifier = text.strip().lower()
    if len(verifier) != 64 or not set(verifier) <= _HEX_DIGITS:
        raise ValueError("a token verifier is the SHA-256 of the token: 64 hex digits")
    return verifier


class Verifiers:
    """The verifiers an agent accepts tokens against, at most MAX_VERIFIERS, the one added or
    matched longest ago first to go."""

    def __init__(self, verifiers: Iterable[str] = ()) -> None:
        # Ordered from the least to the most recently used: a dict keeps insertion order.
        self._digests: dict[bytes, None] = {}
        for verifier in verifiers:
            self.add(verifier)

    @classmethod
    def of_token(cls, token: str) -> Verifiers:
        return cls([verifier_of(token)])

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, verifier: str) -> bool:
        """Accept the token behind `verifier` from now on; True when the set was full and the
        verifier unused longest was dropped to make room."""
        digest = bytes.fromhex(parse_verifier(verifier))
        dropped = digest not in self._digests and len(self._digests) >= MAX_VERIFIERS
        if dropped:
            del self._digests[next(iter(self._digests))]
        self._used(digest)
        return dropped

    def accepts(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).digest()
        # Every verifier is compared, in constant time each, so how long a check takes says
        # nothing about which verifier (if any) matched.
        matched: bytes | None = None
        for known in self._digests:
            if hmac.compare_digest(digest, known):
                matched = known
        if matched is None:
            return False
        self._used(matched)
        return True

    def _used(self, digest: bytes) -> None:
        self._digests.pop(digest, None)
        self._digests[digest] = None
