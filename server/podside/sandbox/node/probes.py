"""Container probes as the kubelet runs them: HTTP GET, TCP socket and exec, from the node's
network namespace, with the kubelet's User-Agent and success rules."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from podside.sandbox.layout import SERVER_VERSION
from podside.sandbox.node.netns import NamespaceSockets

log = logging.getLogger(__name__)
USER_AGENT = f"kube-probe/{SERVER_VERSION['major']}.{SERVER_VERSION['minor']}"

Check = Callable[[], Awaitable[bool]]


def resolve_port(port: Any, container: dict[str, Any]) -> int:
    """A probe or service port given by number or by the container port's name."""
    if isinstance(port, int):
        return port
    if isinstance(port, str) and port.isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"port {port!r} is not declared by container {container.get('name')}")


async def http_get(
    sockets: NamespaceSockets,
    node_netns: str,
    pod_ip: str,
    probe: dict[str, Any],
    container: dict[str, Any],
) -> bool:
    action = probe["httpGet"]
    port = resolve_port(action["port"], container)
    host = action.get("host") or pod_ip
    timeout = float(probe.get("timeoutSeconds", 1))
    headers = {
        "Host": f"{host}:{port}",
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "Connection": "close",
    }
    for header in action.get("httpHeaders") or []:
        headers[header["name"]] = header["value"]
    request = (
        f"GET {action.get('path', '/')} HTTP/1.1\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        + "\r\n"
    )
    try:
        sock = await sockets.connect(node_netns, host, port, timeout)
    except (OSError, TimeoutError):
        return False
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(request.encode())
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        parts = status_line.split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def tcp_socket(
    sockets: NamespaceSockets,
    node_netns: str,
    pod_ip: str,
    probe: dict[str, Any],
    container: dict[str, Any],
) -> bool:
    action = probe["tcpSocket"]
    try:
        sock = await sockets.connect(
            node_netns,
            action.get("host") or pod_ip,
            resolve_port(action["port"], container),
            float(probe.get("timeoutSeconds", 1)),
        )
    except (OSError, TimeoutError):
        return False
    sock.close()
    return True


class ProbeRunner:
    """Runs one probe on its schedule and reports transitions between success and failure."""

    def __init__(
        self, name: str, probe: dict[str, Any], check: Check, on_result: Callable[[bool], None]
    ) -> None:
        self.name = name
        self.probe = probe
        self.check = check
        self.on_result = on_result

    async def run(self) -> None:
        await asyncio.sleep(float(self.probe.get("initialDelaySeconds", 0)))
        period = float(self.probe.get("periodSeconds", 10))
        failure_threshold = int(self.probe.get("failureThreshold", 3))
        success_threshold = int(self.probe.get("successThreshold", 1))
        failures = successes = 0
        state: bool | None = None
        while True:
            try:
                ok = await self.check()
            except ValueError as error:
                log.warning("%s probe: %s", self.name, error)
                ok = False
            if ok:
                successes, failures = successes + 1, 0
                if successes >= success_threshold and state is not True:
                    state = True
                    self.on_result(True)
            else:
                failures, successes = failures + 1, 0
                if failures >= failure_threshold and state is not False:
                    state = False
                    self.on_result(False)
            await asyncio.sleep(period)
