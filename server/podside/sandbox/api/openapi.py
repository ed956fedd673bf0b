"""A minimal OpenAPI v3 index and per-group-version documents.

kubectl reads them to learn whether the server validates fields itself (the `fieldValidation`
query parameter on each kind's PATCH); finding it, kubectl leaves validation to the server
instead of failing with "failed to download openapi". Schemas are not served.
"""

from __future__ import annotations

from typing import Any

from podside.sandbox.api.resources import GROUPS, resources_in
from podside.sandbox.layout import SERVER_VERSION

_PARAMETERS = [
    {"name": name, "in": "query", "schema": {"type": "string"}}
    for name in ("dryRun", "fieldManager", "fieldValidation", "force")
]


def _prefix(group: str) -> str:
    return "api/v1" if not group else f"apis/{group}/v1"


def index() -> dict[str, Any]:
    return {
        "paths": {
            _prefix(group): {
                "serverRelativeURL": f"/openapi/v3/{_prefix(group)}?hash={SERVER_VERSION['gitVersion']}"
            }
            for group in ("", *GROUPS)
        }
    }


def group_version_document(path: str) -> dict[str, Any] | None:
    """The document for `api/v1` or `apis/GROUP/v1`, or None for an unknown path."""
    group = next((g for g in ("", *GROUPS) if _prefix(g) == path), None)
    if group is None:
        return None
    paths: dict[str, Any] = {}
    for resource in resources_in(group):
        scope = "/namespaces/{namespace}" if resource.namespaced else ""
        kind = {"group": group, "version": "v1", "kind": resource.kind}
        operation = {
            "x-kubernetes-group-version-kind": kind,
            "parameters": _PARAMETERS,
            "responses": {},
        }
        paths[f"/{path}{scope}/{resource.plural}/{{name}}"] = {"patch": operation, "put": operation}
        paths[f"/{path}{scope}/{resource.plural}"] = {"post": operation}
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }
