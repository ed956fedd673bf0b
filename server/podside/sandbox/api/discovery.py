"""Discovery documents (`/api`, `/apis`, `/api/v1`, ...) built from the resource table."""

from __future__ import annotations

from typing import Any

from podside.sandbox.api.resources import GROUPS, Resource, resources_in

# verbs of each subresource, as the real API server lists them
SUBRESOURCE_VERBS: dict[str, list[str]] = {
    "status": ["get", "patch", "update"],
    "scale": ["get", "patch", "update"],
    "ephemeralcontainers": ["get", "patch", "update"],
    "log": ["get"],
    "portforward": ["create", "get"],
}


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group_versions(group: str) -> dict[str, Any]:
    version = {"groupVersion": f"{group}/v1", "version": "v1"}
    return {"name": group, "versions": [version], "preferredVersion": version}


def api_group_list() -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_versions(g) for g in GROUPS],
    }


def api_group(group: str) -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_versions(group)}


def _resource_entry(resource: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    return entry


def api_resource_list(group: str) -> dict[str, Any]:
    entries = []
    for resource in resources_in(group):
        entries.append(_resource_entry(resource))
        for subresource, kind in resource.subresources.items():
            entry = {
                "name": f"{resource.plural}/{subresource}",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": kind,
                "verbs": SUBRESOURCE_VERBS[subresource],
            }
            if subresource == "scale":
                entry.update(group="autoscaling", version="v1")
            entries.append(entry)
    body: dict[str, Any] = {
        "kind": "APIResourceList",
        "groupVersion": f"{group}/v1" if group else "v1",
        "resources": entries,
    }
    if group:
        body["apiVersion"] = "v1"
    return body
