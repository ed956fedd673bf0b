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
from collections.abc import Callable, Iterable
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from podside.errors import PodsideError

log = logging.getLogger(__name__)

SUBPROTOCOL = "v4.channel.k8s.io"
DATA_CHANNEL = b"\x00"
MAX_MESSAGE = 32 * 1024 * 1024
# Below the 32 MiB limit with room for the channel byte; writes are split at this size.
_MAX_PAYLOAD = 4 * 1024 * 1024
OPEN_TIMEOUT_SECONDS = 15


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


class PortForwardTransport(asyncio.Transport, asyncio.Protocol):
    """One port-forward, as the transport a protocol `Peer` writes to and reads from.

    It is also the asyncio protocol of the TLS connection beneath, driving websockets'
    sans-io `ClientProtocol`: each frame read is handed to the `Peer` in the same call, and
    each write is framed and written at once, with no task or queue between (a loop turn
    each way was a third of the tunnel's round trip). The TLS transport's back-pressure is
    the `Peer`'s: its pause_writing/resume_writing and its write buffer size are passed on.
    """

    def __init__(
        self, websocket: ClientProtocol, protocol_factory: Callable[[], asyncio.Protocol]
    ) -> None:
        super().__init__()
        self._websocket = websocket
        self._protocol_factory = protocol_factory
        self._protocol: asyncio.Protocol | None = None
        self._socket: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._closing = False
        self._lost = False
        self._headers_seen = {0: False, 1: False}
        self._message_channel = -1  # the channel of the message whose frames are arriving
        self._error_text = b""

    # --- the transport a Peer sees -----------------------------------------------------------

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        # The state, not only `_closing`: the frames parsed with the upgrade's answer may
        # already hold the server's close, before the Peer has written anything.
        if self._closing or self._websocket.state is not State.OPEN:
            return
        # One join makes the channel byte and the payload one message (one copy, not two).
        data = b"".join([DATA_CHANNEL, *list_of_data])
        if len(data) <= _MAX_PAYLOAD:
            self._websocket.send_binary(data)
        else:
            view = memoryview(data)[1:]
            for start in range(0, len(view), _MAX_PAYLOAD):
                self._websocket.send_binary(DATA_CHANNEL + view[start : start + _MAX_PAYLOAD])
        self._send_pending()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writelines([data])

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._websocket.state is State.OPEN:
            self._websocket.send_close(1000)
            self._send_pending()
        if self._socket is not None:
            self._socket.close()  # after what is buffered has been written

    def abort(self) -> None:
        self._closing = True
        if self._socket is not None:
            self._socket.abort()

    def is_closing(self) -> bool:
        return self._closing

    def get_write_buffer_size(self) -> int:
        return self._socket.get_write_buffer_size() if self._socket is not None else 0

    def pause_reading(self) -> None:
        if self._socket is not None:
            self._socket.pause_reading()

    def resume_reading(self) -> None:
        if self._socket is not None:
            self._socket.resume_reading()

    def is_reading(self) -> bool:
        return self._socket is not None and self._socket.is_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    # --- the TLS connection's protocol -------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._socket = transport  # type: ignore[assignment]
        self._send_pending()

    def data_received(self, data: bytes) -> None:
        self._websocket.receive_data(data)
        self._handle_events()

    def eof_received(self) -> bool | None:
        self._websocket.receive_eof()
        self._handle_events()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._lost:
            return
        self._lost = True
        if not self.opened.done():
            self.opened.set_exception(
                exc or ConnectionResetError("the API server closed the connection")
            )
            return
        reason = self._websocket.close_reason if self._websocket.close_rcvd else ""
        text = self._error_text.decode(errors="replace").strip() or reason
        if self._protocol is not None:
            self._protocol.connection_lost(PortForwardClosed(text) if text else None)

    def pause_writing(self) -> None:
        if self._protocol is not None:
            self._protocol.pause_writing()

    def resume_writing(self) -> None:
        if self._protocol is not None:
            self._protocol.resume_writing()

    def _handle_events(self) -> None:
        for event in self._websocket.events_received():
            if isinstance(event, Response):
                self._upgraded()
            elif isinstance(event, Frame) and self._protocol is not None:
                self._frame_received(event)
        self._send_pending()

    def _upgraded(self) -> None:
        if self._websocket.handshake_exc is not None:
            self.opened.set_exception(self._websocket.handshake_exc)
            return
        self._protocol = self._protocol_factory()
        self._protocol.connection_made(self)
        self.opened.set_result(None)

    def _frame_received(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.BINARY, Opcode.TEXT):
            if not frame.data:
                return
            channel = self._message_channel = frame.data[0]
            payload = memoryview(frame.data)[1:]
            if channel in self._headers_seen and not self._headers_seen[channel]:
                # The first frame on each channel names the port: not data.
                self._headers_seen[channel] = True
                payload = payload[2:]
        elif frame.opcode is Opcode.CONT:
            payload = memoryview(frame.data)
        else:
            return  # websockets answers pings and closes itself
        if not payload:
            return
        if self._message_channel == 0:
            assert self._protocol is not None
            # A view, not a slice: the decoder copies what it keeps anyway.
            self._protocol.data_received(payload)  # type: ignore[arg-type]
        elif self._message_channel == 1:
            self._error_text += payload

    def _send_pending(self) -> None:
        socket = self._socket
        if socket is None:
            return
        chunks = self._websocket.data_to_send()
        if not chunks or socket.is_closing():
            return
        if chunks[-1] == b"":  # websockets' signal that the connection ends here
            socket.writelines(chunks[:-1])
            socket.close()
        else:
            socket.writelines(chunks)


async def open_port_forward(
    configuration: Any,
    namespace: str,
    pod: str,
    port: int,
    protocol_factory: Callable[[], asyncio.Protocol],
) -> PortForwardTransport:
    """Open the port-forward and attach a protocol to it, as loop.create_connection would."""
    url = port_forward_url(configuration, namespace, pod, port)
    uri = parse_uri(url)
    websocket = ClientProtocol(uri, subprotocols=[Subprotocol(SUBPROTOCOL)], max_size=MAX_MESSAGE)
    request = websocket.connect()
    request.headers.update(_auth_headers(configuration))
    websocket.send_request(request)
    transport = PortForwardTransport(websocket, protocol_factory)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
            await loop.create_connection(
                lambda: transport,
                uri.host,
                uri.port,
                ssl=_ssl_context(configuration),
            )
            await transport.opened
    except InvalidStatus as error:
        transport.abort()
        status = error.response.status_code
        body = error.response.body.decode(errors="replace") if error.response.body else ""
        raise PodsideError(_refusal(status, body, namespace, pod)) from None
    except InvalidHandshake as error:
        transport.abort()
        raise PodsideError(
            f"the API server's answer to the port-forward to {namespace}/{pod} is not a "
            f"WebSocket upgrade: {error}"
        ) from None
    except (OSError, TimeoutError) as error:
        transport.abort()
        raise PodsideError(
            f"cannot reach the Kubernetes API at {configuration.host} for the port-forward: {error}"
        ) from None
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
