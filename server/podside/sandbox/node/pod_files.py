"""The files a pod sees: its resolv.conf and hosts, and its volumes' contents."""

from __future__ import annotations

import base64
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from podside.sandbox.layout import CLUSTER_DNS_IP, CLUSTER_DOMAIN


class MissingReference(Exception):
    """A configMap or secret the pod needs does not exist (yet): CreateContainerConfigError."""


def resolv_conf(namespace: str) -> str:
    return (
        f"search {namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}\n"
        f"nameserver {CLUSTER_DNS_IP}\n"
        "options ndots:5\n"
    )


def hosts_file(pod: dict[str, Any], pod_ip: str) -> str:
    spec, metadata = pod["spec"], pod["metadata"]
    hostname = spec.get("hostname") or metadata["name"]
    names = hostname
    if spec.get("subdomain"):
        names = f"{hostname}.{spec['subdomain']}.{metadata['namespace']}.svc.{CLUSTER_DOMAIN}\t{hostname}"
    return (
        "# Kubernetes-managed hosts file.\n"
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "fe00::0\tip6-mcastprefix\n"
        "fe00::1\tip6-allnodes\n"
        "fe00::2\tip6-allrouters\n"
        f"{pod_ip}\t{names}\n"
    )


def _write_items(
    directory: Path, data: dict[str, bytes], items: list[dict[str, Any]] | None
) -> None:
    """The kubelet's atomic-writer layout, so the pod sees what it sees on a real node: the
    files in a timestamped folder, `..data` naming that folder, and each top-level name a
    symlink through `..data` (`app.json -> ..data/app.json`)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():  # what an earlier start of the pod left: all of it
        if old.is_symlink() or not old.is_dir():
            old.unlink()
        else:
            shutil.rmtree(old)
    stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    payload = directory / stamp
    payload.mkdir()
    chosen = (
        [(item["key"], item["path"]) for item in items] if items else [(key, key) for key in data]
    )
    names = set()
    for key, relative in chosen:
        if key not in data:
            continue
        target = payload / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[key])
        names.add(Path(relative).parts[0])
    (directory / "..data").symlink_to(stamp)
    for name in sorted(names):
        (directory / name).symlink_to(f"..data/{name}")


def fill_volume(volume: dict[str, Any], directory: Path, lookup: Any) -> Path:
    """Create a volume's contents under `directory`; returns the path to bind-mount.

    `lookup(kind, name)` returns a configmap or secret object or None.
    """
    if "hostPath" in volume:
        return Path(volume["hostPath"]["path"])
    directory.mkdir(parents=True, exist_ok=True)
    if "configMap" in volume:
        source = volume["configMap"]
        found = lookup("configmaps", source["name"])
        if found is None:
            if source.get("optional"):
                return directory
            raise MissingReference(f'configmap "{source["name"]}" not found')
        data = {key: value.encode() for key, value in (found.get("data") or {}).items()}
        data.update(
            {key: base64.b64decode(value) for key, value in (found.get("binaryData") or {}).items()}
        )
        _write_items(directory, data, source.get("items"))
    elif "secret" in volume:
        source = volume["secret"]
        found = lookup("secrets", source["secretName"])
        if found is None:
            if source.get("optional"):
                return directory
            raise MissingReference(f'secret "{source["secretName"]}" not found')
        data = {key: base64.b64decode(value) for key, value in (found.get("data") or {}).items()}
        data.update({key: value.encode() for key, value in (found.get("stringData") or {}).items()})
        _write_items(directory, data, source.get("items"))
    os.chmod(directory, 0o777 if "emptyDir" in volume else 0o755)
    return directory
