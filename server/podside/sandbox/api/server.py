"""The HTTP side of the API server: authentication, authorization, routing and the verbs
(get, list, watch, create, update, patch, delete) over the object store, plus pods/log."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from aiohttp import web

from podside.sandbox.api import discovery, openapi
from podside.sandbox.api.errors import (
    ApiError,
    bad_request,
    forbidden,
    method_not_allowed,
    not_found,
    unauthorized,
)
from podside.sandbox.api.logs import serve_pod_log
from podside.sandbox.api.patch import apply_patch
from podside.sandbox.api.pod_security import admit_pod
from podside.sandbox.api.portforward import serve_port_forward
from podside.sandbox.api.registry import Registry
from podside.sandbox.api.resources import GROUPS, Resource, lookup, resource
from podside.sandbox.api.selectors import (
    parse_field_selector,
    parse_label_selector,
    selector_to_string,
)
from podside.sandbox.api.store import Event, Object, Store
from podside.sandbox.api.tables import to_table
from podside.sandbox.layout import SERVER_VERSION
from podside.sandbox.users import User, UserTable

log = logging.getLogger(__name__)

NAMESPACES = resource("", "namespaces")
PROTECTED_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
# A watch without timeoutSeconds lasts as long as the real server's default (--min-request-timeout).
DEFAULT_WATCH_SECONDS = 1800
_BASE_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
SUPPORTED_FIELDS: dict[str, frozenset[str]] = {
    "pods": _BASE_FIELDS
    | {
        "status.phase",
        "spec.nodeName",
        "spec.restartPolicy",
        "status.podIP",
        "spec.serviceAccountName",
    },
    "events": _BASE_FIELDS
    | {
        "involvedObject.name",
        "involvedObject.namespace",
        "involvedObject.kind",
        "involvedObject.uid",
        "reason",
        "type",
    },
    "secrets": _BASE_FIELDS | {"type"},
    "namespaces": _BASE_FIELDS | {"status.phase"},
}


class NodeConnector(Protocol):
    """What the API server needs from the node for pods/log and pods/portforward."""

    def log_path(self, pod: Object, container: str, restart: int) -> Path: ...

    def netns_path(self, pod: Object) -> str: ...

    async def connect(self, pod: Object, port: int) -> socket.socket: ...


@dataclass
class RequestInfo:
    """What a resource request asks for, parsed from its path and method."""

    verb: str
    resource: Resource
    namespace: str
    name: str
    subresource: str


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(error: ApiError) -> web.Response:
    return _json(error.status, error.code)


def _success_status(resource: Resource, obj: Object) -> dict[str, Any]:
    details: dict[str, Any] = {
        "name": obj["metadata"]["name"],
        "kind": resource.plural,
        "uid": obj["metadata"]["uid"],
    }
    if resource.group:
        details["group"] = resource.group
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }


def parse_resource_path(method: str, path: str, query: Any) -> RequestInfo | None:
    """`/api/v1/namespaces/default/pods/x/log` -> get pods/log x in default; None if not a
    resource path."""
    parts = [part for part in path.split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis" and parts[2] == "v1":
        group, rest = parts[1], parts[3:]
    else:
        return None
    if not rest:
        return None
    namespace = ""
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and (found := lookup(group, rest[2]))
        and found.namespaced
    ):
        namespace, rest = rest[1], rest[2:]
    resource = lookup(group, rest[0])
    if resource is None or len(rest) > 3:
        raise not_found(rest[0], group, rest[1] if len(rest) > 1 else "")
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if subresource and subresource not in resource.subresources:
        raise not_found(f"{resource.plural}/{subresource}", group, name)
    watching = query.get("watch") in ("true", "1")
    verb = {
        "GET": ("watch" if watching else "list") if not name else "get",
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if name else "deletecollection",
    }.get(method)
    if verb is None:
        raise method_not_allowed()
    if subresource == "portforward":
        # Since v1.35 a WebSocket port-forward needs `create`, as with SPDY (KEP-4006).
        verb = "create"
    return RequestInfo(verb, resource, namespace, name, subresource)


class ApiServer:
    def __init__(
        self, store: Store, registry: Registry, users: UserTable, node: NodeConnector, address: str
    ) -> None:
        self.store = store
        self.registry = registry
        self.users = users
        self.node = node
        self.address = address

    def application(self) -> web.Application:
        app = web.Application(
            middlewares=[self._errors_middleware], client_max_size=64 * 1024 * 1024
        )
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    @web.middleware
    async def _errors_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as error:
            return error_response(error)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path_qs)
            return error_response(
                ApiError(
                    500, "InternalError", "Internal error occurred: see the sandbox daemon log"
                )
            )

    def _authenticate(self, request: web.Request) -> User:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        user = self.users.by_token(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise unauthorized()
        return user

    def authorize(self, user: User, info: RequestInfo) -> None:
        full = (
            f"{info.resource.plural}/{info.subresource}"
            if info.subresource
            else info.resource.plural
        )
        if not user.may(info.verb, full, info.namespace):
            raise forbidden(
                user.name,
                info.verb,
                info.resource.plural,
                info.subresource,
                info.resource.group,
                info.namespace,
                info.name,
            )

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        user = self._authenticate(request)
        static = self._static_document(path)
        if static is not None:
            return _json(static)
        if path == "/openapi/v3":
            return _json(openapi.index())
        if path.startswith("/openapi/v3/") and (
            document := openapi.group_version_document(path.removeprefix("/openapi/v3/"))
        ):
            return _json(document)
        info = parse_resource_path(request.method, path, request.query)
        if info is None:
            return _json(
                ApiError(
                    404, "NotFound", "the server could not find the requested resource"
                ).status,
                404,
            )
        if info.resource.plural == "selfsubjectaccessreviews":
            return await self._access_review(request, user)
        self.authorize(user, info)
        return await self._serve(request, info)

    def _static_document(self, path: str) -> dict[str, Any] | None:
        if path == "/version":
            return SERVER_VERSION
        if path == "/api":
            return discovery.api_versions(self.address)
        if path == "/api/v1":
            return discovery.api_resource_list("")
        if path == "/apis":
            return discovery.api_group_list()
        parts = path.split("/")[1:]
        if len(parts) in (2, 3) and parts[0] == "apis" and parts[1] in GROUPS:
            if len(parts) == 2:
                return discovery.api_group(parts[1])
            if parts[2] == "v1":
                return discovery.api_resource_list(parts[1])
        return None

    async def _serve(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        subresource = info.subresource
        if subresource == "log":
            return await self._pod_log(request, info)
        if subresource == "portforward":
            pod = self.store.require(info.resource, info.namespace, info.name)
            return await serve_port_forward(request, pod, self.node)
        if subresource == "scale":
            return await self._scale(request, info)
        if info.verb == "get":
            return _json(self.store.require(info.resource, info.namespace, info.name))
        if info.verb in ("list", "watch"):
            return await self._list_or_watch(request, info)
        if info.verb == "create":
            if info.name:
                raise method_not_allowed()
            return await self._create(request, info)
        if info.verb in ("update", "patch"):
            return await self._update(request, info)
        if info.verb == "delete":
            return await self._delete(request, info)
        return await self._delete_collection(request, info)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            raise bad_request("the request body is empty")
        content_type = request.content_type
        try:
            if "yaml" in content_type:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as error:
            raise bad_request(f"the body of the request could not be decoded: {error}") from None

    def _check_namespace(self, namespace: str) -> None:
        found = self.store.get(NAMESPACES, "", namespace)
        if found is None:
            raise not_found("namespaces", "", namespace)
        if found["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                {"name": namespace, "kind": "namespaces"},
            )

    async def _create(self, request: web.Request, info: RequestInfo) -> web.Response:
        resource = info.resource
        obj = await self._body(request)
        if not isinstance(obj, dict):
            raise bad_request("the object provided is not a JSON object")
        if obj.get("kind") not in (None, resource.kind) or obj.get("apiVersion") not in (
            None,
            resource.api_version,
        ):
            raise bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the expected API version ({resource.api_version})"
                if obj.get("kind") == resource.kind
                else f'{obj.get("kind")} in version "{obj.get("apiVersion")}" cannot be handled as a {resource.kind}'
            )
        metadata = obj.setdefault("metadata", {})
        if resource.namespaced:
            body_namespace = metadata.get("namespace")
            if body_namespace and body_namespace != info.namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            metadata["namespace"] = info.namespace
            self._check_namespace(info.namespace)
        self.registry.prepare_create(resource, obj)
        if resource.plural == "pods":
            self._admit_pod(obj)
        if request.query.get("dryRun") == "All":
            return _json(obj, 201)
        return _json(self.store.create(resource, obj), 201)

    def _admit_pod(self, pod: Object) -> None:
        """Validating admission, after validation as on a real server (a 422 comes first):
        Pod Security for pods users create and ephemeral containers they add. The pods the
        controllers make are not checked (a real cluster's ReplicaSet reports FailedCreate)."""
        namespace = self.store.get(NAMESPACES, "", pod["metadata"]["namespace"])
        if namespace is not None:
            admit_pod(namespace, pod)

    async def _update(self, request: web.Request, info: RequestInfo) -> web.Response:
        resource = info.resource
        body = await self._body(request)
        # Nothing awaits from here to the store's update, so a patch applies to the object as
        # it is, as a real API server's retried update does: only a resourceVersion the patch
        # itself names makes it a 409 Conflict once the object changed.
        current = self.store.require(resource, info.namespace, info.name)
        if info.verb == "patch":
            obj = apply_patch(request.headers.get("Content-Type", ""), current, body)
        else:
            obj = body
        if not isinstance(obj, dict):
            raise bad_request("the object provided is not a JSON object")
        metadata = obj.setdefault("metadata", {})
        if metadata.get("name") != info.name:
            raise bad_request(
                f"the name of the object ({metadata.get('name')}) does not match the name on the URL ({info.name})"
            )
        if resource.namespaced:
            metadata["namespace"] = info.namespace
        expected = metadata.get("resourceVersion") or None
        self.registry.prepare_update(resource, obj, current, info.subresource)
        if resource.plural == "pods" and info.subresource == "ephemeralcontainers":
            self._admit_pod(obj)
        if request.query.get("dryRun") == "All":
            return _json(obj)
        return _json(self.store.update(resource, obj, expected_version=expected))

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                options = json.loads(raw)
        if "gracePeriodSeconds" in request.query:
            options["gracePeriodSeconds"] = int(request.query["gracePeriodSeconds"])
        return options

    async def _delete(self, request: web.Request, info: RequestInfo) -> web.Response:
        options = await self._delete_options(request)
        return _json(
            self.delete_object(
                info.resource, info.namespace, info.name, options.get("gracePeriodSeconds")
            )
        )

    def delete_object(
        self, resource: Resource, namespace: str, name: str, grace: int | None
    ) -> Object:
        obj = self.store.require(resource, namespace, name)
        if resource.plural == "pods":
            if grace is None:
                grace = int(obj["spec"].get("terminationGracePeriodSeconds", 30))
            if grace <= 0:
                return self.store.delete(resource, namespace, name)
            # The node stops the containers and removes the pod once they are gone.
            return self.store.mark_deleting(resource, namespace, name, grace)
        if resource.plural == "namespaces":
            if name in PROTECTED_NAMESPACES:
                raise ApiError(
                    403,
                    "Forbidden",
                    f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                    {"name": name, "kind": "namespaces"},
                )
            marked = self.store.mark_deleting(resource, "", name, 0)
            marked["status"] = {"phase": "Terminating"}
            # The namespace controller empties it and then removes it.
            return self.store.update(resource, marked, expected_version=None)
        deleted = self.store.delete(resource, namespace, name)
        return _success_status(resource, deleted)

    async def _delete_collection(self, request: web.Request, info: RequestInfo) -> web.Response:
        options = await self._delete_options(request)
        selected = self._select(request, info.resource, info.namespace or None)
        for obj in selected:
            self.delete_object(
                info.resource,
                obj["metadata"].get("namespace", ""),
                obj["metadata"]["name"],
                options.get("gracePeriodSeconds"),
            )
        return _json(self._list_body(info.resource, selected))

    def _select(
        self, request: web.Request, resource: Resource, namespace: str | None
    ) -> list[Object]:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(
            request.query.get("fieldSelector"), SUPPORTED_FIELDS.get(resource.plural, _BASE_FIELDS)
        )
        return [
            obj
            for obj in self.store.list(resource, namespace)
            if labels(obj["metadata"].get("labels") or {}) and fields(obj)
        ]

    def _list_body(self, resource: Resource, objects: list[Object]) -> dict[str, Any]:
        for obj in objects:
            # A real server leaves kind and apiVersion off list items.
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self.store.resource_version)},
            "items": objects,
        }

    async def _list_or_watch(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        namespace = info.namespace or None
        as_table = "as=Table" in request.headers.get("Accept", "")
        if info.verb == "watch":
            return await self._watch(request, info.resource, namespace, as_table)
        selected = self._select(request, info.resource, namespace)
        if as_table:
            return _json(
                to_table(
                    info.resource,
                    selected,
                    str(self.store.resource_version),
                    request.query.get("includeObject", "Metadata"),
                )
            )
        return _json(self._list_body(info.resource, selected))

    async def _watch(
        self, request: web.Request, resource: Resource, namespace: str | None, as_table: bool
    ) -> web.StreamResponse:
        labels = parse_label_selector(request.query.get("labelSelector"))
        fields = parse_field_selector(
            request.query.get("fieldSelector"), SUPPORTED_FIELDS.get(resource.plural, _BASE_FIELDS)
        )
        include_object = request.query.get("includeObject", "Metadata")

        def matches(obj: Object | None) -> bool:
            return obj is not None and labels(obj["metadata"].get("labels") or {}) and fields(obj)

        timeout = float(request.query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        deadline = time.monotonic() + timeout
        since = request.query.get("resourceVersion") or ""
        send_initial = request.query.get("sendInitialEvents") == "true" or since in ("", "0")
        response = web.StreamResponse(
            headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)

        async def send(event_type: str, obj: Object) -> None:
            if as_table and event_type != "ERROR":
                obj = to_table(resource, [obj], obj["metadata"]["resourceVersion"], include_object)
            line = json.dumps({"type": event_type, "object": obj}, separators=(",", ":")) + "\n"
            await response.write(line.encode())

        initial = self.store.list(resource, namespace) if send_initial else []
        try:
            watcher = self.store.watch(resource, namespace, None if send_initial else int(since))
        except ApiError as error:
            await send("ERROR", error.status)
            return response
        except ValueError:
            await send("ERROR", bad_request(f'invalid resource version "{since}"').status)
            return response
        try:
            for obj in initial:
                if matches(obj):
                    await send("ADDED", obj)
            if request.query.get("sendInitialEvents") == "true":
                bookmark = {
                    "kind": resource.kind,
                    "apiVersion": resource.api_version,
                    "metadata": {
                        "resourceVersion": str(self.store.resource_version),
                        "annotations": {"k8s.io/initial-events-end": "true"},
                    },
                }
                await send("BOOKMARK", bookmark)
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                await self._send_watch_event(event, matches, send)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.unwatch(watcher)
        return response

    @staticmethod
    async def _send_watch_event(
        event: Event,
        matches: Callable[[Object | None], bool],
        send: Callable[[str, Object], Awaitable[None]],
    ) -> None:
        """Selector-aware: an object that starts or stops matching is ADDED or DELETED, as a
        real server's watch cache reports it."""
        now, before = matches(event.object), matches(event.old)
        if event.type == "MODIFIED" and now != before:
            await send("ADDED" if now else "DELETED", event.object)
        elif now or (event.type == "DELETED" and before):
            await send(event.type, event.object)

    async def _scale(self, request: web.Request, info: RequestInfo) -> web.Response:
        obj = self.store.require(info.resource, info.namespace, info.name)
        if request.method in ("PUT", "PATCH"):
            scale = self._scale_of(obj)
            if request.method == "PATCH":
                scale = apply_patch(
                    request.headers.get("Content-Type", ""), scale, await self._body(request)
                )
            else:
                scale = await self._body(request)
            replicas = (scale.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise ApiError(
                    422,
                    "Invalid",
                    f'Scale.autoscaling "{info.name}" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0',
                )
            obj["spec"]["replicas"] = replicas
            obj = self.store.update(info.resource, obj, expected_version=None)
        return _json(self._scale_of(obj))

    @staticmethod
    def _scale_of(obj: Object) -> Object:
        metadata = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                key: metadata[key]
                for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if key in metadata
            },
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {
                "replicas": (obj.get("status") or {}).get("replicas", 0),
                "selector": selector_to_string(obj["spec"].get("selector") or {}),
            },
        }

    async def _access_review(self, request: web.Request, user: User) -> web.Response:
        if request.method != "POST":
            raise method_not_allowed()
        review = await self._body(request)
        attributes = (review.get("spec") or {}).get("resourceAttributes") or {}
        resource = attributes.get("resource", "")
        if attributes.get("subresource"):
            resource = f"{resource}/{attributes['subresource']}"
        allowed = user.may(attributes.get("verb", ""), resource, attributes.get("namespace", ""))
        review = copy.deepcopy(review)
        review.setdefault("metadata", {})["creationTimestamp"] = None
        review["status"] = {"allowed": allowed}
        if not allowed:
            review["status"]["reason"] = ""
        return _json(review, 201)

    async def _pod_log(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        return await serve_pod_log(request, self.store, info.namespace, info.name, self.node)
