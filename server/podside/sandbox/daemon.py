"""The sandbox daemon (`python -m podside.sandbox.daemon STATE_DIR`): the API server, the
controllers, the node and cluster DNS in one asyncio process, started by `podside sandbox up`.

It sets the node's network up when it starts and tears it down (with every pod) on SIGTERM;
`down` also cleans up after it should it have died.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import sys
from pathlib import Path

from aiohttp import web

from podside.sandbox import demo, owners
from podside.sandbox.api.registry import Registry
from podside.sandbox.api.resources import Resource, lookup
from podside.sandbox.api.server import ApiServer
from podside.sandbox.api.store import Store
from podside.sandbox.controllers import Controllers
from podside.sandbox.layout import (
    CLUSTER_DNS_IP,
    CLUSTER_DOMAIN,
    DEFAULT_API_PORT,
    StateDir,
)
from podside.sandbox.node.dns import DnsServer, Resolver
from podside.sandbox.node.kubelet import Kubelet
from podside.sandbox.node.netns import NamespaceSockets
from podside.sandbox.node.network import NodeNetwork
from podside.sandbox.users import UserTable

log = logging.getLogger("podside.sandbox")


def cluster_resolver(store: Store) -> Resolver:
    services, endpoints, namespaces = (
        lookup("", "services"),
        lookup("", "endpoints"),
        lookup("", "namespaces"),
    )
    assert services and endpoints and namespaces

    def resolve(name: str) -> list[str] | None:
        labels = (
            name.removesuffix("." + CLUSTER_DOMAIN).split(".") if name != CLUSTER_DOMAIN else []
        )
        if len(labels) == 3 and labels[2] == "svc":
            service = store.get(services, labels[1], labels[0])
            if service is None:
                return None
            cluster_ip = service["spec"].get("clusterIP")
            if cluster_ip and cluster_ip != "None":
                return [cluster_ip]
            found = store.get(endpoints, labels[1], labels[0]) or {}
            return [
                a["ip"]
                for subset in found.get("subsets") or []
                for a in subset.get("addresses") or []
            ]
        if len(labels) == 3 and labels[2] == "pod":
            octets = labels[0].split("-")
            if len(octets) == 4 and all(o.isdigit() and int(o) < 256 for o in octets):
                return [".".join(octets)]
            return None
        # Zone apexes that exist but hold no address: answer NOERROR with no records.
        if labels in ([], ["svc"], ["pod"]):
            return []
        if (
            len(labels) == 2
            and labels[1] in ("svc", "pod")
            and store.get(namespaces, "", labels[0]) is not None
        ):
            return []
        return None

    return resolve


async def _dns_sockets(
    sockets: NamespaceSockets, node: NodeNetwork
) -> tuple[socket.socket, socket.socket]:
    def make() -> tuple[socket.socket, socket.socket]:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((str(CLUSTER_DNS_IP), 53))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((str(CLUSTER_DNS_IP), 53))
        tcp.listen(64)
        for sock in (udp, tcp):
            sock.setblocking(False)
        return udp, tcp

    return await sockets.run(node.node_netns_path, make)


def _seed(store: Store, registry: Registry) -> None:
    for group, plural, obj in [*demo.system_objects(), *demo.demo_workloads()]:
        resource = lookup(group, plural)
        assert resource is not None
        registry.prepare_create(resource, obj)
        store.create(resource, obj)


async def _listen(runner: web.AppRunner, context: ssl.SSLContext) -> int:
    for port in (DEFAULT_API_PORT, 0):
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=context, reuse_address=True)
        try:
            await site.start()
        except OSError:
            continue
        server = (
            site._server
        )  # aiohttp keeps the asyncio server here; it is the only way to read an ephemeral port
        assert isinstance(server, asyncio.base_events.Server)
        return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("could not listen on 127.0.0.1")


async def serve(state: StateDir, node: NodeNetwork) -> None:
    owners.join(state, os.getpid())
    node.setup()
    state.pause_binary.parent.mkdir(parents=True, exist_ok=True)
    if not state.pause_binary.is_symlink():
        state.pause_binary.symlink_to(shutil.which("sleep") or "/bin/sleep")
    store = Store()
    registry = Registry(store)
    sockets = NamespaceSockets()
    kubelet = Kubelet(store, state, sockets, node)
    api = ApiServer(store, registry, UserTable(state.users_file), kubelet, "127.0.0.1:6443")

    def delete(resource: Resource, namespace: str, name: str) -> None:
        api.delete_object(resource, namespace, name, None)

    controllers = Controllers(store, node.apply_service_rules, delete)
    dns = DnsServer(cluster_resolver(store))
    await dns.start(*await _dns_sockets(sockets, node))

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(state.server_cert, state.server_key)
    runner = web.AppRunner(api.application(), handler_cancellation=True, access_log=None)
    await runner.setup()
    port = await _listen(runner, context)
    api.address = f"127.0.0.1:{port}"
    _seed(store, registry)
    controller_task = asyncio.create_task(controllers.run())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    state.state_file.write_text(
        json.dumps(
            {"pid": os.getpid(), "port": port, "server": f"https://127.0.0.1:{port}"}, indent=2
        )
    )
    log.info("serving on https://127.0.0.1:%d", port)
    await stop.wait()
    log.info("stopping")
    controller_task.cancel()
    await kubelet.shutdown()
    dns.close()
    await runner.cleanup()
    node.teardown()
    owners.leave(state)
    sockets.close()


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    state = StateDir(Path(sys.argv[1]))
    node = NodeNetwork(state)
    try:
        asyncio.run(serve(state, node))
    except Exception:
        log.exception("the sandbox daemon failed")
        node.teardown()
        owners.leave(state)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
