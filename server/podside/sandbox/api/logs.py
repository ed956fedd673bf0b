"""`pods/NAME/log`: a container's output, as the kubelet serves it (container, previous,
tailLines, limitBytes, follow until the container stops)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from podside.sandbox.api.errors import bad_request
from podside.sandbox.api.resources import resource
from podside.sandbox.api.store import Object, Store

if TYPE_CHECKING:
    from podside.sandbox.api.server import NodeConnector

PODS = resource("", "pods")
FOLLOW_POLL_SECONDS = 0.1
CHUNK = 64 * 1024


def _container_names(pod: Object) -> tuple[list[str], list[str], list[str]]:
    spec = pod["spec"]
    return (
        [c["name"] for c in spec.get("containers") or []],
        [c["name"] for c in spec.get("initContainers") or []],
        [c["name"] for c in spec.get("ephemeralContainers") or []],
    )


def _choose_container(pod: Object, requested: str | None) -> str:
    name = pod["metadata"]["name"]
    containers, init, ephemeral = _container_names(pod)
    if requested:
        if requested not in containers + init + ephemeral:
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(containers) == 1:
        return containers[0]
    default = (pod["metadata"].get("annotations") or {}).get(
        "kubectl.kubernetes.io/default-container"
    )
    if default in containers:
        return str(default)
    message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
    if init:
        message += f" or one of the init containers: [{' '.join(init)}]"
    if ephemeral:
        message += f" or one of the ephemeral containers: [{' '.join(ephemeral)}]"
    raise bad_request(message)


def container_status(pod: Object, container: str) -> dict[str, Any] | None:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for entry in status.get(key) or []:
            if entry.get("name") == container:
                return dict(entry)
    return None


def _has_run(status: dict[str, Any] | None) -> bool:
    if status is None:
        return False
    state = status.get("state") or {}
    return "running" in state or "terminated" in state or bool(status.get("lastState"))


def _tail(data: bytes, lines: int) -> bytes:
    if lines <= 0:
        return b""
    split = data.splitlines(keepends=True)
    return b"".join(split[-lines:])


async def serve_pod_log(
    request: web.Request, store: Store, namespace: str, name: str, node: NodeConnector
) -> web.StreamResponse:
    pod = store.require(PODS, namespace, name)
    container = _choose_container(pod, request.query.get("container"))
    status = container_status(pod, container)
    previous = request.query.get("previous") in ("true", "1")
    if not _has_run(status):
        reason = (
            ((status or {}).get("state") or {})
            .get("waiting", {})
            .get("reason", "ContainerCreating")
        )
        raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    assert status is not None
    restart = int(status.get("restartCount", 0)) - (1 if previous else 0)
    path = node.log_path(pod, container, restart)
    if restart < 0 or not path.exists():
        raise bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
    data = path.read_bytes()
    if "tailLines" in request.query:
        data = _tail(data, int(request.query["tailLines"]))
    if "limitBytes" in request.query:
        data = data[: int(request.query["limitBytes"])]
    follow = request.query.get("follow") in ("true", "1") and not previous
    if not follow:
        return web.Response(body=data, content_type="text/plain")
    response = web.StreamResponse(headers={"Content-Type": "text/plain"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(data)
    position = path.stat().st_size
    with path.open("rb") as stream:
        stream.seek(position)
        while True:
            chunk = stream.read(CHUNK)
            if chunk:
                await response.write(chunk)
                continue
            current = store.get(PODS, namespace, name)
            now = container_status(current, container) if current else None
            still_running = (
                now is not None
                and int(now.get("restartCount", 0)) == restart
                and "running" in (now.get("state") or {})
            )
            if not still_running:
                # What the container wrote just before it stopped.
                await response.write(stream.read())
                break
            await asyncio.sleep(FOLLOW_POLL_SECONDS)
    return response
