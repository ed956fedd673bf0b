"""Who may call the sandbox API: bearer tokens mapped to users with Role-like rules.

The admin may do everything. Other users get rules (verbs x resources, optionally limited to
namespaces) so tests can exercise "permission denied" exactly as RBAC would answer it. The API
server re-reads the users file when it changes, so adding a user needs no restart.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podside.errors import PodsideError

ADMIN_USER = "podside-sandbox-admin"


@dataclass(frozen=True)
class Rule:
    """Like an RBAC PolicyRule: `resources` may name subresources (`pods/log`); `*` is any."""

    verbs: tuple[str, ...]
    resources: tuple[str, ...]
    namespaces: tuple[str, ...] = ()  # empty: every namespace and cluster-scoped resources

    def allows(self, verb: str, resource: str, namespace: str) -> bool:
        if self.namespaces and namespace not in self.namespaces:
            return False
        return ("*" in self.verbs or verb in self.verbs) and (
            "*" in self.resources or resource in self.resources
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "verbs": list(self.verbs),
            "resources": list(self.resources),
            "namespaces": list(self.namespaces),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Rule:
        return cls(
            tuple(data["verbs"]), tuple(data["resources"]), tuple(data.get("namespaces", ()))
        )

    @classmethod
    def parse(cls, text: str, namespaces: tuple[str, ...] = ()) -> Rule:
        """`get,list:pods,pods/log` -> verbs get and list on pods and pods/log."""
        verbs, separator, resources = text.partition(":")
        if not separator or not verbs or not resources:
            raise PodsideError(
                f"bad rule {text!r}: write VERBS:RESOURCES, e.g. get,list:pods,pods/log"
            )
        return cls(tuple(verbs.split(",")), tuple(resources.split(",")), namespaces)


ALLOW_EVERYTHING = (Rule(("*",), ("*",)),)


@dataclass
class User:
    name: str
    token: str
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def may(self, verb: str, resource: str, namespace: str) -> bool:
        return any(rule.allows(verb, resource, namespace) for rule in self.rules)


class UserTable:
    """The users file, cached and re-read when its modification time changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._mtime_ns = -1
        self._by_token: dict[str, User] = {}

    def by_token(self, token: str) -> User | None:
        stat = self._path.stat()
        if stat.st_mtime_ns != self._mtime_ns:
            self._by_token = {user.token: user for user in load_users(self._path)}
            self._mtime_ns = stat.st_mtime_ns
        user = self._by_token.get(token)
        # Compare in constant time so a token cannot be guessed byte by byte.
        if user is not None and secrets.compare_digest(user.token, token):
            return user
        return None


def load_users(path: Path) -> list[User]:
    data = json.loads(path.read_text())
    return [
        User(name, entry["token"], tuple(Rule.from_json(rule) for rule in entry["rules"]))
        for name, entry in data["users"].items()
    ]


def save_users(path: Path, users: list[User]) -> None:
    data = {
        "users": {
            user.name: {"token": user.token, "rules": [rule.to_json() for rule in user.rules]}
            for user in users
        }
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=2))
    os.chmod(temporary, 0o600)
    temporary.replace(path)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def create_admin(path: Path) -> User:
    admin = User(ADMIN_USER, new_token(), ALLOW_EVERYTHING)
    save_users(path, [admin])
    return admin


def add_user(path: Path, name: str, rules: tuple[Rule, ...]) -> User:
    """Add (or replace) a user with the given rules and a fresh token."""
    if name == ADMIN_USER:
        raise PodsideError(f"{name} is the sandbox's admin user; pick another name")
    users = [user for user in load_users(path) if user.name != name]
    user = User(name, new_token(), rules)
    save_users(path, [*users, user])
    return user
