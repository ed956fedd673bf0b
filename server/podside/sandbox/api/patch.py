"""PATCH bodies: JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386) and strategic merge patch.

Strategic merge is merge patch plus one rule that matters for the objects served here: lists
of named things (containers, env, volumes, ports...) are merged by their key instead of being
replaced, so patching `spec.ephemeralContainers` with one container adds it.
"""

from __future__ import annotations

import copy
from typing import Any

from podside.sandbox.api.errors import ApiError, bad_request, unsupported_media_type

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# list field name -> key its items are merged by (from the patchMergeKey tags of core/v1, apps/v1)
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "tolerations": "key",
}


def apply_patch(content_type: str, document: Any, patch: Any) -> Any:
    media_type = content_type.split(";")[0].strip()
    if media_type == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        return json_patch(document, patch)
    if not isinstance(patch, dict):
        raise bad_request(
            "json: cannot unmarshal array into Go value of type map[string]interface {}"
        )
    if media_type == MERGE_PATCH:
        return merge_patch(document, patch)
    if media_type == STRATEGIC_MERGE_PATCH:
        return strategic_merge_patch(document, patch)
    raise unsupported_media_type(media_type)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    if isinstance(patch, list) and field in MERGE_KEYS and isinstance(target, list):
        return _merge_keyed_list(target, patch, MERGE_KEYS[field])
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value, key)
    return result


def _merge_keyed_list(target: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    result = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            result.append(copy.deepcopy(item))
            continue
        index = next(
            (
                i
                for i, existing in enumerate(result)
                if isinstance(existing, dict) and existing.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch({}, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_error(f"JSON pointer must start with '/': {path}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _patch_error(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _parent(document: Any, parts: list[str]) -> Any:
    node = document
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise _patch_error(f"doc is missing path: /{'/'.join(parts)}")
    return node


def _get(document: Any, parts: list[str]) -> Any:
    node = document
    for part in parts:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise _patch_error(f"doc is missing path: /{'/'.join(parts)}") from None
    return node


def _add(document: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent, last = _parent(document, parts), parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if index > len(parent):
            raise _patch_error(f"add operation index out of bounds: {index}")
        parent.insert(index, value)
    else:
        parent[last] = value
    return document


def _remove(document: Any, parts: list[str]) -> Any:
    parent, last = _parent(document, parts), parts[-1]
    try:
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    except (KeyError, IndexError, ValueError):
        raise _patch_error(
            f"remove operation does not apply: doc is missing path: /{'/'.join(parts)}"
        ) from None
    return document


def json_patch(document: Any, operations: list[Any]) -> Any:
    document = copy.deepcopy(document)
    for operation in operations:
        op, path = operation.get("op"), _pointer(operation.get("path", ""))
        if op == "add":
            document = _add(document, path, copy.deepcopy(operation.get("value")))
        elif op == "remove":
            document = _remove(document, path)
        elif op == "replace":
            _get(document, path)
            document = (
                _add(_remove(document, path), path, copy.deepcopy(operation.get("value")))
                if path
                else copy.deepcopy(operation.get("value"))
            )
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from", ""))
            value = copy.deepcopy(_get(document, source))
            if op == "move":
                document = _remove(document, source)
            document = _add(document, path, value)
        elif op == "test":
            if _get(document, path) != operation.get("value"):
                raise _patch_error(f"testing value /{'/'.join(path)} failed")
        else:
            raise _patch_error(f"Unexpected kind: {op}")
    return document
