"""The kind node as a thing to break: its API server stopped, its S3 cut off, the node restarted.

The node is the Docker container `<KIND_CLUSTER>-control-plane`, reached through the engine that
images/docker.sh answers for (the one `make kind-up` used).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from kubernetes import client

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("LOOPWRIGHT_CACHE", str(Path.home() / ".cache" / "loopwright")))
MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
PARKED = "/etc/kubernetes/kube-apiserver.yaml.parked"
S3_NAMESPACE = "loopwright-system"


@cache
def _docker_host() -> str:
    return subprocess.run([str(REPO / "images" / "docker.sh")], check=True, capture_output=True,
                          text=True, timeout=120).stdout.strip()


def docker(*args: str, timeout: float = 120) -> str:
    result = subprocess.run(["docker", *args], env={**os.environ, "DOCKER_HOST": _docker_host()},
                            check=True, capture_output=True, text=True, timeout=timeout)
    return result.stdout


def api_answers(kube: Any) -> bool:
    try:
        client.VersionApi(kube.api).get_code(_request_timeout=2)
    except Exception:  # refused, reset, timed out: not answering
        return False
    return True


def cluster_name() -> str:
    return os.environ.get("KIND_CLUSTER", "loopwright")


@dataclass(frozen=True)
class Outage:
    """When the API server stopped answering and when it answered again (time.monotonic()), and the
    wall-clock time it came back (to compare with times the operator writes)."""

    down: float
    back: float
    back_at: datetime

    @property
    def seconds(self) -> float:
        return self.back - self.down


@dataclass(frozen=True)
class Node:
    name: str

    @classmethod
    def of_cluster(cls) -> Node:
        return cls(f"{cluster_name()}-control-plane")

    def exec(self, *command: str) -> str:
        return docker("exec", self.name, *command)

    def stop_api_server(self, kube: Any, *, seconds: float = 60) -> Outage:
        """No API server for `seconds`: its static pod's manifest is moved away (the kubelet stops it)
        and back (the kubelet starts it again). Returns when the API answers again."""
        self.exec("mv", MANIFEST, PARKED)
        try:
            kube.wait(lambda: not api_answers(kube), timeout=90, what="the API server to stop", interval=0.2)
            down = time.monotonic()
            time.sleep(seconds)
        finally:
            self.exec("mv", PARKED, MANIFEST)
        kube.wait(lambda: api_answers(kube), timeout=180, what="the API server to answer again", interval=0.5)
        return Outage(down=down, back=time.monotonic(), back_at=datetime.now(UTC))


def restart_cluster_dns(kube: Any) -> None:
    """CoreDNS started afresh, once its rollout is done. After an API server outage its informers
    resume on client-go's watch backoff, and for up to a minute a Service deleted and made again is
    not answered (seen in CI: every lookup failed in the case that followed). The cases after an
    outage measure Loopwright, not that, so the outage's case leaves cluster DNS as it found it."""
    stamp = datetime.now(UTC).isoformat()
    kube.apps.patch_namespaced_deployment("coredns", "kube-system", {"spec": {"template": {"metadata": {
        "annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}})

    def rolled_out() -> bool:
        dns = kube.apps.read_namespaced_deployment("coredns", "kube-system")
        counts = (dns.status.replicas, dns.status.updated_replicas, dns.status.available_replicas)
        return (dns.status.observed_generation or 0) >= dns.metadata.generation and \
            counts == (dns.spec.replicas,) * 3

    kube.wait(rolled_out, timeout=180, what="CoreDNS restarted", interval=1)


def s3_pod(kube: Any) -> Any:
    """The kind overlay's S3 server pod (versitygw over an emptyDir)."""
    (pod,) = kube.core.list_namespaced_pod(S3_NAMESPACE, label_selector="app.kubernetes.io/name=s3").items
    return pod


@contextmanager
def s3_unreachable(kube: Any, node: Node) -> Iterator[None]:
    """S3 as when its server is gone: a rule in the node's FORWARD chain rejects every TCP packet to
    the server's pod with an ICMP port-unreachable, so a new connection is refused (what kube-proxy
    does for a Service without endpoints) and a pooled one stalls until its client's timeout; the
    server and its data stay as they are (`scale deployment/s3 --replicas=0` would wipe its emptyDir).
    A tcp-reset REJECT would not do: after the Service's DNAT its reset never reaches the client,
    whose connect then hangs."""
    address = s3_pod(kube).status.pod_ip
    rule = ["-d", f"{address}/32", "-p", "tcp", "-j", "REJECT", "--reject-with", "icmp-port-unreachable"]
    node.exec("iptables", "-I", "FORWARD", "1", *rule)
    try:
        yield
    finally:
        node.exec("iptables", "-D", "FORWARD", *rule)


def node_address(node: Node) -> str:
    """The node's address on the engine's network (the host reaches it, and its NodePorts)."""
    template = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return docker("inspect", "-f", template, node.name).strip()


def reconnect(kube: Any, cluster: str) -> None:
    """After the node restarted, the API server's host port may be another: rewrite the kubeconfig
    (what `make kind-up` does for a running cluster) and point the session's client at it."""
    kind = CACHE / "bin" / "kind"
    config = subprocess.run([str(kind), "get", "kubeconfig", "--name", cluster], check=True,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DOCKER_HOST": _docker_host()}).stdout
    Path(kube.kubeconfig).write_text(config)
    server = next(line.split("server:", 1)[1].strip() for line in config.splitlines() if "server:" in line)
    kube.api.configuration.host = server
