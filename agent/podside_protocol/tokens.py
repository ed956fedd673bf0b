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

# Enrollment adds verifiers for the agent's lifetime; each needs someone allowed to add an
# ephemeral container, but the set is bounded all the same.
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
    """The verifiers an agent accepts tokens against."""

    def __init__(self, verifiers: Iterable[str] = ()) -> None:
        self._digests: list[bytes] = []
        for verifier in verifiers:
            self.add(verifier)

    @classmethod
    def of_token(cls, token: str) -> Verifiers:
        return cls([verifier_of(token)])

    def __len__(self) -> int:
        return len(self._digests)

    def add(self, verifier: str) -> bool:
        """Accept the token behind `verifier` from now on; False when the set is full."""
        digest = bytes.fromhex(parse_verifier(verifier))
        if digest in self._digests:
            return True
        if len(self._digests) >= MAX_VERIFIERS:
            return False
        self._digests.append(digest)
        return True

    def accepts(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).digest()
        # Every verifier is compared, in constant time each, so how long a check takes says
        # nothing about which verifier (if any) matched.
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(digest, known)
        return matched
