"""The session's byte stream to an agent in a pod, over the API server's WebSocket port-forward.

One port-forward per session: every connection, flow and mirrored request of the session is a
stream of the podside protocol inside it, because each new port-forward costs a TLS handshake
and an upgrade through the API server, the kubelet and the container runtime (~13 ms on a real
cluster). Wire facts of `v4.channel.k8s.io` (measured against a real v1.36 API server): the
server sends first, on each channel, a 3-byte frame (channel byte + port, little-endian);
channel 0 carries data and channel 1 errors as text, followed by a close; the client sends
`0x00` + payload and may do so before the headers arrive; there is no half-close; a message
is at most 32 MiB including the channel byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import urllib.parse
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from podside.errors import PodsideError

log = logging.getLogger(__name__)

SUBPROTOCOL = "v4.channel.k8s.io"
DATA_CHANNEL = b"\x00"
MAX_MESSAGE = 32 * 1024 * 1024
# Below the 32 MiB limit with room for the channel byte; writes are split at this size.
_MAX_PAYLOAD = 4 * 1024 * 1024


class PortForwardClosed(ConnectionError):
    """The port-forward ended; the message is the API server's or kubelet's reason."""


def _ssl_context(configuration: Any) -> ssl.SSLContext | None:
    if not str(configuration.host).startswith("https"):
        return None
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def _auth_headers(configuration: Any) -> dict[str, str]:
    hook = getattr(configuration, "refresh_api_key_hook", None)
    if hook is not None:
        hook(configuration)  # exec and OIDC plugins renew their token here
    headers = {}
    for setting in configuration.auth_settings().values():
        if setting.get("in") == "header" and setting.get("value"):
            headers[setting["key"]] = setting["value"]
    return headers


def port_forward_url(configuration: Any, namespace: str, pod: str, port: int) -> str:
    base = urllib.parse.urlsplit(str(configuration.host))
    scheme = "wss" if base.scheme == "https" else "ws"
    path = (
        f"{base.path.rstrip('/')}/api/v1/namespaces/{urllib.parse.quote(namespace)}"
        f"/pods/{urllib.parse.quote(pod)}/portforward"
    )
    return urllib.parse.urlunsplit((scheme, base.netloc, path, f"ports={port}", ""))


class PortForwardTransport:
    """Presents one port-forward as the transport a protocol `Peer` writes to and reads from."""

    def __init__(self, websocket: ClientConnection, protocol: asyncio.Protocol) -> None:
        self._websocket = websocket
        self._protocol = protocol
        self._outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closing = False
        self._headers_seen = {0: False, 1: False}
        self._error_text = b""
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read())
        self._writer = loop.create_task(self._write())

    # --- the transport a Peer sees -----------------------------------------------------------

    def writelines(self, list_of_data: list[bytes]) -> None:
        if self._closing:
            return
        data = b"".join(list_of_data)
        for start in range(0, len(data), _MAX_PAYLOAD):
            self._outgoing.put_nowait(DATA_CHANNEL + data[start : start + _MAX_PAYLOAD])

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._outgoing.put_nowait(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    # --- the WebSocket side --------------------------------------------------------------------

    async def _write(self) -> None:
        try:
            while (message := await self._outgoing.get()) is not None:
                await self._websocket.send(message)
        except ConnectionClosed:
            pass
        finally:
            with contextlib.suppress(Exception):
                await self._websocket.close()

    async def _read(self) -> None:
        reason: str | None = None
        try:
            async for message in self._websocket:
                if isinstance(message, str):
                    message = message.encode()
                if not message:
                    continue
                channel = message[0]
                if channel in self._headers_seen and not self._headers_seen[channel]:
                    # The first frame on each channel names the port: not data.
                    self._headers_seen[channel] = True
                    if len(message) == 3:
                        continue
                    message = message[:1] + message[3:]
                if channel == 0:
                    # A view, not a slice: the decoder copies what it keeps anyway.
                    self._protocol.data_received(memoryview(message)[1:])  # type: ignore[arg-type]
                elif channel == 1:
                    self._error_text += message[1:]
        except ConnectionClosed as closed:
            reason = closed.reason or None
        finally:
            self._closing = True
            self._outgoing.put_nowait(None)
            text = self._error_text.decode(errors="replace").strip() or reason
            self._protocol.connection_lost(PortForwardClosed(text) if text else None)


async def open_port_forward(
    configuration: Any,
    namespace: str,
    pod: str,
    port: int,
    protocol_factory: Callable[[], asyncio.Protocol],
) -> PortForwardTransport:
    """Open the port-forward and attach a protocol to it, as loop.create_connection would."""
    url = port_forward_url(configuration, namespace, pod, port)
    try:
        websocket = await connect(
            url,
            ssl=_ssl_context(configuration),
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            additional_headers=_auth_headers(configuration),
            max_size=MAX_MESSAGE,
            compression=None,
            ping_interval=None,  # the podside protocol has its own heartbeat
            open_timeout=15,
        )
    except InvalidStatus as error:
        status = error.response.status_code
        body = error.response.body.decode(errors="replace") if error.response.body else ""
        raise PodsideError(_refusal(status, body, namespace, pod)) from None
    except (OSError, TimeoutError) as error:
        raise PodsideError(
            f"cannot reach the Kubernetes API at {configuration.host} for the port-forward: {error}"
        ) from None
    protocol = protocol_factory()
    transport = PortForwardTransport(websocket, protocol)
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return transport


def _refusal(status: int, body: str, namespace: str, pod: str) -> str:
    import json

    message = body
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("message", body)
    if status == 403:
        return (
            f"permission denied: cannot create pods/portforward for pod {namespace}/{pod} "
            f"(RBAC): {message}"
        )
    return f"the API server refused the port-forward to {namespace}/{pod} ({status}): {message}"
