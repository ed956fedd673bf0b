"""Sandbox entries in kubeconfig files: added by `up` and `add-user`, removed by `down`.

Only entries named by the sandbox are touched; other clusters, users and contexts stay as they
were. Which file got which entries is recorded in the state dir so `down` can undo exactly that.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
from pathlib import Path
from typing import Any

import yaml

from podside.sandbox.layout import StateDir


def user_kubeconfig_path() -> Path:
    """The kubeconfig kubectl would write to: the first $KUBECONFIG path, else ~/.kube/config.

    Under sudo, "~" is the invoking user's home, not root's: that is whose kubectl should see
    the sandbox.
    """
    configured = os.environ.get("KUBECONFIG", "")
    first = next((path for path in configured.split(os.pathsep) if path), "")
    if first:
        return Path(first)
    sudo_user = os.environ.get("SUDO_USER")
    home = Path(pwd.getpwnam(sudo_user).pw_dir) if sudo_user else Path.home()
    return home / ".kube" / "config"


def _load(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"apiVersion": "v1", "kind": "Config", "preferences": {}}
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} is not a kubeconfig")
    return loaded


def _save(path: Path, config: dict[str, Any]) -> None:
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".podside-tmp")
    temporary.write_text(yaml.safe_dump(config, default_flow_style=False, sort_keys=False))
    if created:
        os.chmod(temporary, 0o600)
        owner = path.parent.stat()
        # A file created for the invoking user under sudo must stay theirs.
        os.chown(temporary, owner.st_uid, owner.st_gid)
    else:
        stat = path.stat()
        os.chmod(temporary, stat.st_mode & 0o777)
        os.chown(temporary, stat.st_uid, stat.st_gid)
    temporary.replace(path)


def _upsert(
    entries: list[dict[str, Any]], name: str, body_key: str, body: dict[str, Any]
) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry.get("name") != name] + [
        {"name": name, body_key: body}
    ]


def context_entries(
    name: str, server: str, ca_pem: bytes, token: str, namespace: str = "default"
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(cluster, user, context) bodies; all three entries share `name`."""
    cluster = {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}
    user = {"token": token}
    context = {"cluster": name, "user": name, "namespace": namespace}
    return cluster, user, context


def add_context(
    state: StateDir,
    path: Path,
    name: str,
    server: str,
    ca_pem: bytes,
    token: str,
    admin: bool = False,
) -> bool:
    """Add or refresh one context (`admin`: the sandbox's own, which names its users');
    returns True if it became the current context."""
    config = _load(path)
    cluster, user, context = context_entries(name, server, ca_pem, token)
    config["clusters"] = _upsert(config.get("clusters") or [], name, "cluster", cluster)
    config["users"] = _upsert(config.get("users") or [], name, "user", user)
    config["contexts"] = _upsert(config.get("contexts") or [], name, "context", context)
    made_current = not config.get("current-context")
    if made_current:
        config["current-context"] = name
    _save(path, config)
    _record(state, path, name, made_current, admin)
    return made_current


def write_standalone(path: Path, name: str, server: str, ca_pem: bytes, token: str) -> None:
    cluster, user, context = context_entries(name, server, ca_pem, token)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    os.chmod(path, 0o600)


def _record(state: StateDir, path: Path, name: str, made_current: bool, admin: bool) -> None:
    records = _records(state)
    entry = records.setdefault(str(path), {"names": [], "current": None})
    if name not in entry["names"]:
        entry["names"].append(name)
    if made_current:
        entry["current"] = name
    if admin:
        entry["admin"] = name
    state.kubeconfig_entries_file.write_text(json.dumps(records, indent=2))


def recorded_names(state: StateDir, path: Path) -> list[str]:
    """The entries this sandbox added to the kubeconfig at `path`."""
    return list(_records(state).get(str(path), {}).get("names", []))


def recorded_admin(state: StateDir, path: Path) -> str | None:
    """The name of this sandbox's admin context in the kubeconfig at `path`, once added."""
    name = _records(state).get(str(path), {}).get("admin")
    return str(name) if name else None


def _records(state: StateDir) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(state.kubeconfig_entries_file.read_text())
    except FileNotFoundError:
        return {}
    return loaded


def remove_recorded_contexts(state: StateDir) -> list[str]:
    """Remove every entry the sandbox added; returns the files it changed."""
    changed = []
    for file_name, entry in _records(state).items():
        path = Path(file_name)
        if not path.exists():
            continue
        config = _load(path)
        names = set(entry["names"])
        for section in ("clusters", "users", "contexts"):
            config[section] = [
                item for item in config.get(section) or [] if item.get("name") not in names
            ]
        if config.get("current-context") in names:
            config["current-context"] = ""
        _save(path, config)
        changed.append(file_name)
    state.kubeconfig_entries_file.unlink(missing_ok=True)
    return changed
