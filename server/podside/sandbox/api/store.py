"""The object store: every API object, one resourceVersion counter, and watch fan-out.

Single-threaded by design: it is only touched from the daemon's event loop, so a read-modify-write
needs no lock as long as no `await` sits in between. Objects leave the store as deep copies, so a
caller can never change a stored object behind the store's back (and without a new version).
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from podside.sandbox.api.errors import already_exists, conflict, gone, not_found
from podside.sandbox.api.resources import Resource

Object = dict[str, Any]

HISTORY_LENGTH = 10_000
# generateName suffixes use the same alphabet as the API server: no vowels, no look-alikes.
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(length))


_INITIAL_STATUS: dict[str, dict[str, int]] = {
    "ReplicaSet": {"replicas": 0},
    "StatefulSet": {"replicas": 0, "availableReplicas": 0},
    "DaemonSet": {
        "currentNumberScheduled": 0,
        "numberMisscheduled": 0,
        "desiredNumberScheduled": 0,
        "numberReady": 0,
    },
}


@dataclass(frozen=True)
class Event:
    """One change: `object` is the new state (the last state for DELETED), `old` the previous."""

    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: Resource
    object: Object
    old: Object | None


class Watcher:
    """A subscription to one resource (optionally one namespace), fed by the store."""

    def __init__(self, resource: Resource, namespace: str | None) -> None:
        self.resource = resource
        self.namespace = namespace
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    def wants(self, event: Event) -> bool:
        if event.resource is not self.resource:
            return False
        return self.namespace is None or event.object["metadata"].get("namespace") == self.namespace


class Store:
    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str, str], Object] = {}
        self._resource_version = 0
        self._history: deque[Event] = deque(maxlen=HISTORY_LENGTH)
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Event], None]] = []

    @property
    def resource_version(self) -> int:
        return self._resource_version

    def _key(self, resource: Resource, namespace: str, name: str) -> tuple[str, str, str, str]:
        return (resource.group, resource.plural, namespace if resource.namespaced else "", name)

    def get(self, resource: Resource, namespace: str, name: str) -> Object | None:
        found = self._objects.get(self._key(resource, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def require(self, resource: Resource, namespace: str, name: str) -> Object:
        found = self.get(resource, namespace, name)
        if found is None:
            raise not_found(resource.plural, resource.group, name)
        return found

    def list(self, resource: Resource, namespace: str | None = None) -> list[Object]:
        return [copy.deepcopy(obj) for obj in self._iter(resource, namespace)]

    def _iter(self, resource: Resource, namespace: str | None) -> Iterator[Object]:
        for (group, plural, obj_namespace, _), obj in sorted(self._objects.items()):
            same_resource = group == resource.group and plural == resource.plural
            if same_resource and (namespace is None or obj_namespace == namespace):
                yield obj

    def create(self, resource: Resource, obj: Object) -> Object:
        """Store a new object: fills name (generateName), uid, timestamps, versions."""
        obj = copy.deepcopy(obj)
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + random_suffix()
        namespace = metadata.get("namespace", "") if resource.namespaced else ""
        if not resource.namespaced:
            metadata.pop("namespace", None)
        key = self._key(resource, namespace, metadata["name"])
        if key in self._objects:
            raise already_exists(resource.plural, resource.group, metadata["name"])
        obj["kind"] = resource.kind
        obj["apiVersion"] = resource.api_version
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now_rfc3339()
        metadata.setdefault("generation", 1)
        for transient in ("resourceVersion", "deletionTimestamp", "selfLink"):
            metadata.pop(transient, None)
        # A real server starts the status with the counters its Go types never omit; clients
        # whose models require them reject the object otherwise.
        obj["status"] = {**_INITIAL_STATUS.get(resource.kind, {}), **(obj.get("status") or {})}
        return self._commit("ADDED", resource, key, obj, None)

    def update(self, resource: Resource, obj: Object, *, expected_version: str | None) -> Object:
        """Replace an object. With `expected_version` set, a stale write is a 409 Conflict."""
        obj = copy.deepcopy(obj)
        metadata = obj["metadata"]
        key = self._key(resource, metadata.get("namespace", ""), metadata["name"])
        old = self._objects.get(key)
        if old is None:
            raise not_found(resource.plural, resource.group, metadata["name"])
        if expected_version and expected_version != old["metadata"]["resourceVersion"]:
            raise conflict(resource.plural, resource.group, metadata["name"])
        for immutable in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if immutable in old["metadata"]:
                metadata[immutable] = old["metadata"][immutable]
            else:
                metadata.pop(immutable, None)
        # As on a real server, only a change of spec bumps metadata.generation.
        generation = old["metadata"].get("generation", 1)
        if obj.get("spec") != old.get("spec"):
            generation += 1
        metadata["generation"] = generation
        obj["kind"] = resource.kind
        obj["apiVersion"] = resource.api_version
        unchanged = {**obj, "metadata": {**metadata, "resourceVersion": None}} == {
            **old,
            "metadata": {**old["metadata"], "resourceVersion": None},
        }
        if unchanged:
            return copy.deepcopy(old)
        return self._commit("MODIFIED", resource, key, obj, old)

    def mark_deleting(
        self, resource: Resource, namespace: str, name: str, grace_seconds: int
    ) -> Object:
        """Graceful deletion: set deletionTimestamp; the owner (the node) removes it later."""
        key = self._key(resource, namespace, name)
        old = self._objects.get(key)
        if old is None:
            raise not_found(resource.plural, resource.group, name)
        if old["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(old)
        obj = copy.deepcopy(old)
        obj["metadata"]["deletionTimestamp"] = now_rfc3339()
        obj["metadata"]["deletionGracePeriodSeconds"] = grace_seconds
        return self._commit("MODIFIED", resource, key, obj, old)

    def delete(self, resource: Resource, namespace: str, name: str) -> Object:
        key = self._key(resource, namespace, name)
        old = self._objects.pop(key, None)
        if old is None:
            raise not_found(resource.plural, resource.group, name)
        self._resource_version += 1
        obj = copy.deepcopy(old)
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        self._publish(Event(self._resource_version, "DELETED", resource, obj, old))
        return copy.deepcopy(obj)

    def _commit(
        self,
        event_type: str,
        resource: Resource,
        key: tuple[str, str, str, str],
        obj: Object,
        old: Object | None,
    ) -> Object:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)
        self._objects[key] = obj
        self._publish(Event(self._resource_version, event_type, resource, copy.deepcopy(obj), old))
        return copy.deepcopy(obj)

    def _publish(self, event: Event) -> None:
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.wants(event):
                watcher.queue.put_nowait(event)
        for listener in self._listeners:
            listener(event)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """In-process controllers: called synchronously for every change of every resource."""
        self._listeners.append(listener)

    def watch(self, resource: Resource, namespace: str | None, since: int | None) -> Watcher:
        """Subscribe; with `since`, first replay the retained events newer than it.

        A `since` older than the retained history is 410 Gone, as on a real server when etcd
        has compacted past it; clients then list again.
        """
        watcher = Watcher(resource, namespace)
        if since is not None and since < self._resource_version:
            oldest = (
                self._history[0].resource_version if self._history else self._resource_version + 1
            )
            if since < oldest - 1:
                raise gone(f"too old resource version: {since} ({oldest - 1})")
            for event in self._history:
                if event.resource_version > since and watcher.wants(event):
                    watcher.queue.put_nowait(event)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
