"""The port-forward transport against a real WebSocket server on loopback: back-pressure."""

from __future__ import annotations

import asyncio

from aiohttp import web
from kubernetes.client import Configuration

from podside.kube.portforward import SUBPROTOCOL, open_port_forward


class _Recorder(asyncio.Protocol):
    def __init__(self) -> None:
        self.paused = asyncio.Event()

    def pause_writing(self) -> None:
        self.paused.set()


def test_an_api_server_that_stops_reading_pauses_the_peers_writing() -> None:
    async def scenario() -> None:
        done = asyncio.Event()

        async def _api_that_never_reads(request: web.Request) -> web.WebSocketResponse:
            websocket = web.WebSocketResponse(protocols=(SUBPROTOCOL,))
            await websocket.prepare(request)
            await websocket.send_bytes(b"\x00\x50\x00")
            await websocket.send_bytes(b"\x01\x50\x00")
            await done.wait()  # reads nothing meanwhile: what the client writes piles up
            return websocket

        app = web.Application()
        app.router.add_get("/api/v1/namespaces/ns/pods/pod/portforward", _api_that_never_reads)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        configuration = Configuration(host=f"http://127.0.0.1:{port}")
        recorder = _Recorder()
        transport = await open_port_forward(configuration, "ns", "pod", 80, lambda: recorder)
        try:
            chunk = bytes(1024 * 1024)
            # 64 MiB is far more than the kernel's buffers hold: the transport must say so.
            for _ in range(64):
                transport.writelines([chunk])
                await asyncio.sleep(0)
            await asyncio.wait_for(recorder.paused.wait(), 30)
            assert transport.get_write_buffer_size() > 0  # type: ignore[attr-defined]
        finally:
            done.set()
            transport.close()
            await runner.cleanup()

    asyncio.run(scenario())
