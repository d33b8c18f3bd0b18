"""Userspace Service routing for the local cluster, as kube-proxy's old userspace mode did it.

    python tests/cluster/serviceproxy.py --kubeconfig K

For every TCP port of every ClusterIP Service it puts the ClusterIP on the host device `lw-svc`
and listens on ClusterIP:port; each accepted connection goes to the next ready endpoint of the
Service's EndpointSlices (round robin) and bytes are copied both ways. Routes are recomputed from
the current Services and EndpointSlices on every change, so connections always use the latest
endpoints; listeners and addresses of Services that go away are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import logging
import signal
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import network
from node.api import Api

logger = logging.getLogger("serviceproxy")

Obj = dict[str, Any]
Address = tuple[str, int]

CONNECT_TIMEOUT_SECONDS = 3.0
MAX_CONNECTIONS = 1024
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Route:
    """Where one ClusterIP:port sends new connections, and which endpoints still exist at all.

    Connections to an endpoint that left the EndpointSlices (its pod is gone) are closed; those to
    one that is merely unready or terminating are left to finish, as conntrack would.
    """

    backends: list[Address]
    known: frozenset[Address] = frozenset()


def _endpoints(slices: Iterable[Obj], port_name: str) -> Route:
    """Endpoints of one Service port: ready ones, else those still serving while terminating."""
    ready: list[Address] = []
    serving: list[Address] = []
    known: set[Address] = set()
    for eps in slices:
        ports = [p for p in eps.get("ports") or [] if (p.get("name") or "") == port_name
                 and p.get("protocol", "TCP") == "TCP" and p.get("port")]
        for port in ports:
            for endpoint in eps.get("endpoints") or []:
                conditions = endpoint.get("conditions") or {}
                for ip in endpoint.get("addresses", []):
                    known.add((ip, int(port["port"])))
                    if conditions.get("ready") is not False:  # unset means ready
                        ready.append((ip, int(port["port"])))
                    elif conditions.get("serving") and conditions.get("terminating"):
                        serving.append((ip, int(port["port"])))
    return Route(backends=sorted(set(ready or serving)), known=frozenset(known))


def routes(services: Iterable[Obj], slices: Iterable[Obj]) -> dict[Address, Route]:
    """Every ClusterIP:port (TCP) and the endpoints it forwards to."""
    by_service: dict[tuple[str, str], list[Obj]] = {}
    for eps in slices:
        owner = (eps["metadata"].get("labels") or {}).get("kubernetes.io/service-name")
        if owner:
            by_service.setdefault((eps["metadata"]["namespace"], owner), []).append(eps)
    table: dict[Address, Route] = {}
    for svc in services:
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        if not ip or ip == "None" or spec.get("type") == "ExternalName":
            continue
        key = (svc["metadata"]["namespace"], svc["metadata"]["name"])
        for port in spec.get("ports") or []:
            if port.get("protocol", "TCP") == "TCP":
                table[(ip, int(port["port"]))] = _endpoints(by_service.get(key, []), port.get("name") or "")
    return table


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


class Proxy:
    def __init__(self, api: Api) -> None:
        self.api = api
        self.services: dict[str, Obj] = {}
        self.slices: dict[str, Obj] = {}
        self.table: dict[Address, Route] = {}
        self.connections: dict[Address, dict[asyncio.Task[Any], Address]] = {}
        self.servers: dict[Address, asyncio.Server] = {}
        self.turns: dict[Address, itertools.count[int]] = {}
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self.lock = asyncio.Lock()
        self.unbound: set[Address] = set()

    async def _connect(self, frontend: Address
                       ) -> tuple[Address, asyncio.StreamReader, asyncio.StreamWriter] | None:
        route = self.table.get(frontend)
        backends = route.backends if route else []
        turn = next(self.turns.setdefault(frontend, itertools.count()))
        for attempt in range(len(backends)):
            backend = backends[(turn + attempt) % len(backends)]
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(*backend),
                                                        CONNECT_TIMEOUT_SECONDS)
            except (OSError, TimeoutError) as e:
                logger.info("%s:%d -> %s:%d failed: %s", *frontend, *backend, e)
                continue
            return backend, reader, writer
        return None

    async def _serve(self, frontend: Address, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        async with self.slots:
            upstream = await self._connect(frontend)
            if upstream is None:
                writer.close()
                return
            backend, up_reader, up_writer = upstream
            task = asyncio.current_task()
            assert task is not None
            active = self.connections.setdefault(frontend, {})
            active[task] = backend  # also keeps the task referenced while it runs
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                active.pop(task, None)
                for w in (writer, up_writer):
                    w.close()

    async def reconcile(self) -> None:
        async with self.lock:
            self.table = routes(self.services.values(), self.slices.values())
            for frontend, active in self.connections.items():
                route = self.table.get(frontend)
                for task, backend in list(active.items()):
                    if route is None or backend not in route.known:
                        task.cancel()
            for frontend in set(self.servers) - set(self.table):
                server = self.servers.pop(frontend)
                server.close()
                self.turns.pop(frontend, None)
                if not any(ip == frontend[0] for ip, _ in self.servers):
                    await asyncio.to_thread(network.remove_service_address, frontend[0])
                logger.info("removed %s:%d", *frontend)
            for frontend in set(self.table) - set(self.servers):
                await asyncio.to_thread(network.add_service_address, frontend[0])
                try:
                    self.servers[frontend] = await asyncio.start_server(
                        functools.partial(self._serve, frontend), host=frontend[0], port=frontend[1],
                        reuse_address=True, limit=CHUNK)
                    logger.info("listening on %s:%d -> %s", *frontend, self.table[frontend].backends)
                    self.unbound.discard(frontend)
                except OSError as e:
                    if frontend not in self.unbound:  # retried on every change; said once
                        self.unbound.add(frontend)
                        logger.warning("cannot listen on %s:%d (a host process listening on *:%d gets "
                                       "this Service's connections instead): %s", *frontend, frontend[1], e)

    async def _follow(self, path: str, store: dict[str, Obj]) -> None:
        async for kind, obj in self.api.watch(path):
            if kind == "SYNC":
                store.clear()
                store.update({_key(o): o for o in obj["items"]})
            elif kind == "DELETED":
                store.pop(_key(obj), None)
            else:
                store[_key(obj)] = obj
            await self.reconcile()

    async def run(self) -> None:
        await asyncio.to_thread(network.flush_service_addresses)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(self._follow("/api/v1/services", self.services)),
                 asyncio.create_task(self._follow("/apis/discovery.k8s.io/v1/endpointslices", self.slices))]
        await stop.wait()
        for task in tasks:
            task.cancel()
        for server in self.servers.values():
            server.close()
        await asyncio.to_thread(network.flush_service_addresses)
        await self.api.close()


def _key(obj: Mapping[str, Any]) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kubeconfig", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Proxy(Api(kubeconfig=args.kubeconfig)).run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
