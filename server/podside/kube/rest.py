"""The Kubernetes API calls of a session, as JSON over the official client's connection.

The official client's `ApiClient` still does what must stay exact: the kubeconfig's TLS,
tokens and exec/OIDC plugins (its auth settings, refreshed per request), the connection pool
and `ApiException`. What is skipped is its generated API classes and pydantic models:
importing them costs 0.5 to 0.6 s (`CoreV1Api` and the models of a pod; measured with
`python -X importtime`), more than the rest of `podside exec -- true`. Objects come back as
`KubeObject`, read with the models' snake_case names (`pod.status.pod_ip`).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kubernetes.client.exceptions import ApiException

if TYPE_CHECKING:
    from podside.kube.config import KubeContext

# (connect, read) seconds for one API request: an unreachable API server must not hang the
# command for the operating system's minutes-long connect timeout.
REQUEST_TIMEOUT = (10.0, 30.0)

# The path of each kind's collection, `{namespace}` filled in (None: across namespaces).
COLLECTIONS = {
    "pods": "/api/v1",
    "services": "/api/v1",
    "namespaces": "/api/v1",
    "deployments": "/apis/apps/v1",
    "statefulsets": "/apis/apps/v1",
    "daemonsets": "/apis/apps/v1",
    "replicasets": "/apis/apps/v1",
    "jobs": "/apis/batch/v1",
}


class KubeObject(dict[str, Any]):
    """An API object as JSON, also readable as the client's models are: `obj.metadata.name`,
    `status.container_statuses` for `containerStatuses`, None for a field that is not set.
    Maps such as labels stay plain dict lookups (`obj.metadata.labels.get(key)`); a field
    named like a dict method (`values`, `items`) is read with `.get("values")`."""

    def __getattr__(self, name: str) -> Any:
        wanted = name.replace("_", "").lower()
        for key, value in self.items():
            if key.replace("_", "").lower() == wanted:
                return wrap(value)
        if name.startswith("__"):
            raise AttributeError(name)
        return None


def wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, KubeObject):
        return KubeObject(value)
    if isinstance(value, list):
        return [wrap(item) for item in value]
    return value


def path_of(plural: str, namespace: str | None, name: str = "", subresource: str = "") -> str:
    # A namespace is itself cluster-scoped: /api/v1/namespaces/NAME.
    scope = f"/namespaces/{namespace}" if namespace and plural != "namespaces" else ""
    path = f"{COLLECTIONS[plural]}{scope}/{plural}"
    if name:
        path += f"/{urllib.parse.quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


def request(
    ctx: KubeContext,
    method: str,
    path: str,
    *,
    query: dict[str, Any] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    timeout: Any = REQUEST_TIMEOUT,
) -> KubeObject:
    """One call; a status other than 2xx raises `ApiException`, as the generated client does."""
    response = _send(ctx, method, path, query, body, content_type, timeout)
    response.read()
    text = response.data.decode()
    if not 200 <= response.status <= 299:
        raise ApiException.from_response(http_resp=response, body=text, data=None)
    return KubeObject(json.loads(text))


def get(ctx: KubeContext, plural: str, namespace: str | None, name: str) -> KubeObject:
    return request(ctx, "GET", path_of(plural, namespace, name))


def list_items(
    ctx: KubeContext, plural: str, namespace: str | None, **query: Any
) -> list[KubeObject]:
    found = request(ctx, "GET", path_of(plural, namespace), query=query)
    return [KubeObject(item) for item in found.get("items") or []]


def watch(
    ctx: KubeContext, plural: str, namespace: str, timeout: Any, **query: Any
) -> Iterator[dict[str, Any]]:
    """The events of a watch (`type`, `object` as a KubeObject) until the server ends it."""
    response = _send(
        ctx, "GET", path_of(plural, namespace), {**query, "watch": "true"}, None, "", timeout
    )
    if not 200 <= response.status <= 299:
        response.read()
        raise ApiException.from_response(http_resp=response, body=response.data.decode(), data=None)
    pending = b""
    try:
        for chunk in response.response.stream(64 * 1024, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    event = json.loads(line)
                    yield {**event, "object": KubeObject(event.get("object") or {})}
    finally:
        response.response.release_conn()


def _send(
    ctx: KubeContext,
    method: str,
    path: str,
    query: dict[str, Any] | None,
    body: Any,
    content_type: str,
    timeout: Any,
) -> Any:
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    serialized = ctx.api_client.param_serialize(
        method=method,
        resource_path=path,
        query_params=[(key, value) for key, value in (query or {}).items() if value is not None],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    return ctx.api_client.call_api(*serialized, _request_timeout=timeout)
