"""The local cluster's node agent: a small kubelet that runs pods as local processes.

    python tests/cluster/nodeagent.py --kubeconfig K --node-name loopwright-node --node-ip 10.244.0.1 \
        --state-dir DIR --dns 10.244.0.1 --tls-cert C --tls-key K --client-ca CA

It registers a Ready Node, renews its Lease every 10 s, runs every pod bound to the node (one
`node.runtime.PodWorker` each) and serves container logs on the kubelet port for `kubectl logs`.
On SIGTERM it stops every pod's processes. A container's parent is its own small monitor
(node/monitor.py), so after a crash or SIGKILL of the agent the next one adopts the containers
still running and reads the exit records of those that ended meanwhile: pods are not duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from node.api import Api, ApiError
from node.logs import LogSource, serve, server_ssl
from node.runtime import PodWorker, Runtime
from node.status import micro_now, now

logger = logging.getLogger("nodeagent")

KUBELET_PORT = 10250
LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
RENEW_SECONDS = 10
NODE_STATUS_SECONDS = 30
MAX_PODS = 110
SHUTDOWN_GRACE_SECONDS = 5.0
REPO = Path(__file__).resolve().parents[2]

Obj = dict[str, Any]


def _memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


class Agent:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.api = Api(kubeconfig=args.kubeconfig)
        self.node = args.node_name
        capacity = {
            "cpu": str(os.cpu_count() or 1),
            "memory": f"{_memory_bytes() // 1024}Ki",
            "pods": str(MAX_PODS),
            "ephemeral-storage": f"{shutil.disk_usage(args.state_dir).total // 1024}Ki",
        }
        self.capacity = capacity
        self.runtime = Runtime(api=self.api, node_name=self.node, node_ip=args.node_ip, dns=args.dns,
                               state_dir=Path(args.state_dir), venv_bin=REPO / ".venv" / "bin",
                               allocatable=capacity)
        self._transitions: dict[str, str] = {}
        self.kubelet_version = "v0.0.0"

    # ------------------------------------------------------------------------------ node + lease

    def _node_status(self) -> Obj:
        heartbeat = now()
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory",
             "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": [{"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": heartbeat,
                            "lastTransitionTime": self._transitions.setdefault(t, heartbeat)}
                           for t, s, r, m in conditions],
            "addresses": [{"type": "InternalIP", "address": self.args.node_ip},
                          {"type": "Hostname", "address": self.node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "nodeInfo": {
                "machineID": _read("/etc/machine-id"),
                "systemUUID": _read("/sys/class/dmi/id/product_uuid", _read("/etc/machine-id")),
                "bootID": _read("/proc/sys/kernel/random/boot_id"),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": "loopwright-local://0.1.0",
                "kubeletVersion": self.kubelet_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(),
                                                                            platform.machine()),
            },
        }

    async def register(self) -> Obj:
        version = await self.api.get("/version")
        self.kubelet_version = version.get("gitVersion", self.kubelet_version)
        arch = self._node_status()["nodeInfo"]["architecture"]
        body = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.node, "labels": {
            "kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch}},
            "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}}
        try:
            await self.api.request("POST", "/api/v1/nodes", body=body)
            logger.info("registered node %s", self.node)
        except ApiError as e:
            if e.status != 409:
                raise
        return await self.api.patch(f"/api/v1/nodes/{self.node}/status", {"status": self._node_status()},
                                    strategic=True)

    async def keep_node_status(self) -> None:
        while True:
            await asyncio.sleep(NODE_STATUS_SECONDS)
            try:
                await self.api.patch(f"/api/v1/nodes/{self.node}/status", {"status": self._node_status()},
                                     strategic=True)
            except Exception as e:
                logger.warning("node status not updated: %s", e)

    async def keep_lease(self, node: Obj) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.node}"
        owner = {"apiVersion": "v1", "kind": "Node", "name": self.node, "uid": node["metadata"]["uid"]}
        while True:
            spec = {"holderIdentity": self.node, "leaseDurationSeconds": LEASE_SECONDS,
                    "renewTime": micro_now()}
            try:
                try:
                    await self.api.patch(path, {"spec": spec})
                except ApiError as e:
                    if e.status != 404:
                        raise
                    await self.api.request("POST", path.rsplit("/", 1)[0], body={
                        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                        "metadata": {"name": self.node, "namespace": LEASE_NAMESPACE,
                                     "ownerReferences": [owner]},
                        "spec": spec})
                await asyncio.sleep(RENEW_SECONDS)
            except Exception as e:
                logger.warning("lease not renewed: %s", e)
                await asyncio.sleep(2)

    # -------------------------------------------------------------------------------------- pods

    def _upsert(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.runtime.workers.get(uid)
        if worker is not None:
            worker.update(pod)
        else:
            worker = PodWorker(self.runtime, pod)
            self.runtime.workers[uid] = worker

    async def watch_pods(self) -> None:
        selector = f"spec.nodeName={self.node}"
        async for kind, obj in self.api.watch("/api/v1/pods", field_selector=selector):
            if kind == "SYNC":
                present = {p["metadata"]["uid"] for p in obj["items"]}
                for uid, worker in list(self.runtime.workers.items()):
                    if uid not in present:
                        worker.vanish()
                for pod in obj["items"]:
                    self._upsert(pod)
                self._forget_strangers(present)
            elif kind == "DELETED":
                if gone := self.runtime.workers.get(obj["metadata"]["uid"]):
                    gone.vanish()
            else:
                self._upsert(obj)

    def _forget_strangers(self, present: set[str]) -> None:
        """Remove sandboxes of pods that no longer exist (deleted while no agent was running)."""
        for pod_dir in (self.runtime.state_dir / "pods").iterdir():
            if pod_dir.name not in present and pod_dir.name not in self.runtime.workers:
                logger.info("removing leftovers of pod %s", pod_dir.name)
                self.runtime.forget_pod(pod_dir.name)
        for uid in set(self.runtime.pool.assigned) - present - set(self.runtime.workers):
            self.runtime.release_ip(uid)

    def log_source(self, namespace: str, pod: str, container: str, previous: bool) -> LogSource | None:
        for worker in self.runtime.workers.values():
            if worker.namespace == namespace and worker.name == pod:
                return worker.log_source(container, previous=previous)
        return None

    # ------------------------------------------------------------------------------------- main

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        while True:
            try:
                node = await self.register()
                break
            except Exception as e:
                logger.warning("node registration failed, retrying: %s", e)
                await asyncio.sleep(2)
        ctx = server_ssl(cert=self.args.tls_cert, key=self.args.tls_key, client_ca=self.args.client_ca)
        server = await serve(host=self.args.node_ip, port=KUBELET_PORT, ssl_context=ctx,
                             resolver=self.log_source)
        tasks = [asyncio.create_task(coro) for coro in (
            self.keep_lease(node), self.keep_node_status(), self.watch_pods(), self.runtime.watch_memory())]
        logger.info("node %s ready; kubelet API on https://%s:%d", self.node, self.args.node_ip, KUBELET_PORT)
        await stop.wait()
        logger.info("stopping: terminating every pod's processes")
        for task in tasks:
            task.cancel()
        workers = list(self.runtime.workers.values())
        for worker in workers:
            worker.task.cancel()
        await asyncio.gather(*(w.task for w in workers), return_exceptions=True)
        await asyncio.gather(*(w.stop(SHUTDOWN_GRACE_SECONDS) for w in workers), return_exceptions=True)
        await server.cleanup()
        if self.runtime.http is not None:
            await self.runtime.http.close()
        await self.api.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", required=True)
    parser.add_argument("--node-ip", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--dns", required=True)
    parser.add_argument("--tls-cert", required=True)
    parser.add_argument("--tls-key", required=True)
    parser.add_argument("--client-ca", required=True)
    args = parser.parse_args(argv)
    Path(args.state_dir).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Agent(args).run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
