"""`pods/NAME/portforward`, as the API server and kubelet serve it: the request is routed to
the WebSocket channel protocol here or to SPDY/3.1 (`portforward_spdy`), which kubectl speaks
inside a WebSocket (`SPDY/3.1+portforward.k8s.io`) or on the upgraded connection itself.

Wire facts of the channel protocol (measured against a real v1.36 API server and kubelet):
- subprotocols `v4.channel.k8s.io` (binary) and `v4.base64.channel.k8s.io` (text, base64);
  the ports are the `ports` query parameter (SPDY names them in each stream's headers);
- port i uses channel 2i for data and 2i+1 for errors; the server first sends, on each
  channel, a 3-byte frame: the channel byte and the port, little-endian;
- the client sends `channel byte + payload` and may do so before those headers arrive;
- errors are text on the error channel, then a close 1000; there is no half-close;
- a message is at most 32 MiB including the channel byte.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from podside.sandbox.api.errors import ApiError, bad_request
from podside.sandbox.api.portforward_spdy import (
    SpdySession,
    UpgradedCarrier,
    WebSocketCarrier,
    connection_refused_message,
)
from podside.sandbox.api.store import Object

if TYPE_CHECKING:
    from podside.sandbox.api.server import NodeConnector

log = logging.getLogger(__name__)

BINARY = "v4.channel.k8s.io"
BASE64 = "v4.base64.channel.k8s.io"
SPDY_TUNNEL = "SPDY/3.1+portforward.k8s.io"
ACCEPTED_PROTOCOLS = (BINARY, BASE64, SPDY_TUNNEL)
# The port-forward protocol a plain SPDY upgrade negotiates in `X-Stream-Protocol-Version`.
SPDY_PORTFORWARD = "portforward.k8s.io"
MAX_MESSAGE = 32 * 1024 * 1024
READ_CHUNK = 256 * 1024


def _requested_protocols(request: web.Request) -> list[str]:
    header = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    return [item.strip() for item in header.split(",") if item.strip()]


def _ports(request: web.Request) -> list[int]:
    values = [
        part for value in request.query.getall("ports", []) for part in value.split(",") if part
    ]
    if not values:
        raise bad_request('query parameter "port" is required')
    ports = []
    for value in values:
        try:
            port = int(value)
        except ValueError:
            raise bad_request(f'unable to parse "{value}" as a port: invalid syntax') from None
        if not 0 < port < 65536:
            raise bad_request(f"port {port} must be > 0 and < 65536")
        ports.append(port)
    return ports


class _Channels:
    """Frames bytes for one WebSocket in the negotiated encoding."""

    def __init__(self, websocket: web.WebSocketResponse, encoded: bool) -> None:
        self.websocket = websocket
        self.encoded = encoded
        self.lock = asyncio.Lock()

    async def send(self, channel: int, payload: bytes) -> None:
        if self.encoded:
            await self.websocket.send_str(str(channel) + base64.b64encode(payload).decode())
        else:
            await self.websocket.send_bytes(bytes((channel,)) + payload)

    def decode(self, message_type: WSMsgType, data: bytes | str) -> tuple[int, bytes]:
        if self.encoded:
            text = data if isinstance(data, str) else data.decode()
            return int(text[0]), base64.b64decode(text[1:])
        raw = data if isinstance(data, bytes) else data.encode()
        return raw[0], raw[1:]


async def serve_port_forward(
    request: web.Request, pod: Object, node: NodeConnector
) -> web.StreamResponse:
    upgrade = request.headers.get("Upgrade", "").lower()
    if upgrade == "websocket":
        offered = _requested_protocols(request)
        chosen = next((protocol for protocol in offered if protocol in ACCEPTED_PROTOCOLS), None)
        if chosen is None:
            raise ApiError(
                403,
                "Forbidden",
                f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server supports {list(ACCEPTED_PROTOCOLS)}",
            )
        if chosen == SPDY_TUNNEL:
            _require_running(pod)
            websocket = web.WebSocketResponse(
                protocols=(chosen,), max_msg_size=MAX_MESSAGE, autoping=True
            )
            await websocket.prepare(request)
            await SpdySession(pod, node, WebSocketCarrier(websocket)).run()
            return websocket
        return await _serve_channels(request, pod, node, chosen)
    connection = request.headers.get("Connection", "").lower()
    if "spdy/3.1" in upgrade and "upgrade" in connection:
        return await _serve_spdy_upgrade(request, pod, node)
    raise bad_request("Upgrade request required")


def _require_running(pod: Object) -> None:
    if (pod.get("status") or {}).get("phase") != "Running":
        raise bad_request(
            f"unable to upgrade connection: pod {pod['metadata']['name']} is not running"
        )


async def _serve_spdy_upgrade(
    request: web.Request, pod: Object, node: NodeConnector
) -> web.StreamResponse:
    offered = [
        item.strip()
        for value in request.headers.getall("X-Stream-Protocol-Version", [])
        for item in value.split(",")
        if item.strip()
    ]
    if offered and SPDY_PORTFORWARD not in offered:
        raise ApiError(
            403,
            "Forbidden",
            f"unable to upgrade: unable to negotiate protocol: client supports {offered}, server accepts {[SPDY_PORTFORWARD]}",
        )
    _require_running(pod)
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client left before the upgrade")
    # Taken before the 101 goes out: the client's first frame may follow it at once, and
    # aiohttp's parser would read it as HTTP.
    carrier = UpgradedCarrier(transport, request.protocol)
    response = web.StreamResponse(
        status=101,
        headers={
            "Connection": "Upgrade",
            "Upgrade": "SPDY/3.1",
            "X-Stream-Protocol-Version": SPDY_PORTFORWARD,
        },
    )
    response.force_close()
    await response.prepare(request)
    await SpdySession(pod, node, carrier).run()
    return response


async def _serve_channels(
    request: web.Request, pod: Object, node: NodeConnector, chosen: str
) -> web.StreamResponse:
    ports = _ports(request)
    _require_running(pod)
    websocket = web.WebSocketResponse(protocols=(chosen,), max_msg_size=MAX_MESSAGE, autoping=True)
    await websocket.prepare(request)
    channels = _Channels(websocket, encoded=chosen == BASE64)
    for index, port in enumerate(ports):
        header = port.to_bytes(2, "little")
        await channels.send(2 * index, header)
        await channels.send(2 * index + 1, header)

    writers: dict[int, asyncio.StreamWriter] = {}
    relays: list[asyncio.Task[None]] = []
    for index, port in enumerate(ports):
        try:
            sock: socket.socket = await node.connect(pod, port)
        except OSError as error:
            await channels.send(
                2 * index + 1,
                connection_refused_message(pod, port, node.netns_path(pod), error).encode(),
            )
            continue
        reader, writer = await asyncio.open_connection(sock=sock, limit=READ_CHUNK)
        writers[2 * index] = writer
        relays.append(asyncio.create_task(_pod_to_client(reader, channels, 2 * index)))

    if relays:
        client_side = asyncio.create_task(_client_to_pod(websocket, channels, writers))
        # The forward ends when the pod side closes every connection or the client leaves.
        pods_done = asyncio.ensure_future(asyncio.gather(*relays))
        done_first: list[asyncio.Future[Any]] = [client_side, pods_done]
        await asyncio.wait(done_first, return_when=asyncio.FIRST_COMPLETED)
        client_side.cancel()
        for relay in relays:
            relay.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pods_done
        for writer in writers.values():
            writer.close()
    await websocket.close(code=1000)
    return websocket


async def _pod_to_client(reader: asyncio.StreamReader, channels: _Channels, channel: int) -> None:
    while chunk := await reader.read(READ_CHUNK):
        await channels.send(channel, chunk)


async def _client_to_pod(
    websocket: web.WebSocketResponse, channels: _Channels, writers: dict[int, asyncio.StreamWriter]
) -> None:
    async for message in websocket:
        if message.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
            break
        channel, payload = channels.decode(message.type, message.data)
        writer = writers.get(channel)
        if writer is not None and payload:
            writer.write(payload)
            await writer.drain()
