"""Services route: a Deployment rolls out, its pods turn Ready, and the ClusterIP spreads requests.

From pods this holds on any cluster; the requests from the host only on the local one, where the
service proxy puts every ClusterIP on the host (kind keeps them inside its node container).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from cluster import network
from conftest import Kube

pytestmark = pytest.mark.cluster

PYTHON = "python:3.11-slim"
REQUESTS = 30

# Answers every GET with the name of the pod that served it.
_SERVER = """
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["POD_NAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8080), Handler).serve_forever()
"""

# Asks the Service REQUESTS times (a new connection each time) and prints who answered.
_CLIENT = """
import json, os, sys, urllib.request
url = sys.argv[1].format(**os.environ)
names = [urllib.request.urlopen(url, timeout=5).read().decode() for _ in range({n})]
print(json.dumps(names))
"""


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    container = {
        "name": "web",
        "image": PYTHON,
        "command": ["python3", "-c", _SERVER],
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [container]},
            },
        },
    }


def _service(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }


def _rolled_out(kube: Kube, namespace: str, name: str, replicas: int) -> bool:
    status = kube.apps.read_namespaced_deployment_status(name, namespace).status
    return (status.ready_replicas or 0) == replicas and (status.updated_replicas or 0) == replicas


def _ready_pods(kube: Kube, namespace: str, name: str) -> set[str]:
    pods = kube.core.list_namespaced_pod(namespace, label_selector=f"app={name}").items
    return {
        p.metadata.name
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    }


def _endpoint_count(kube: Kube, namespace: str, name: str) -> int:
    slices = kube.discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={name}"
    ).items
    return sum(1 for s in slices for e in s.endpoints or [] if e.conditions.ready)


def _ask_from_host(url: str, count: int = REQUESTS) -> list[str]:
    return [urllib.request.urlopen(url, timeout=5).read().decode() for _ in range(count)]


def _ask_from_pod(kube: Kube, namespace: str, name: str, url: str) -> list[str]:
    pod = kube.run_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "containers": [
                    {
                        "name": "client",
                        "image": PYTHON,
                        "command": ["python3", "-c", _CLIENT.format(n=REQUESTS), url],
                        "env": [
                            {
                                "name": "POD_NAMESPACE",
                                "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
                            }
                        ],
                    }
                ]
            },
        },
    )
    assert kube.exit_code(pod) == 0, kube.logs(namespace, name)
    answers: list[str] = json.loads(kube.logs(namespace, name))
    return answers


def test_deployment_rolls_out_and_the_service_spreads_requests(kube: Kube, namespace: str) -> None:
    kube.apps.create_namespaced_deployment(namespace, _deployment("web", 3))
    service = kube.core.create_namespaced_service(namespace, _service("web"))

    kube.wait(lambda: _rolled_out(kube, namespace, "web", 3), timeout=120, what="3 ready replicas")
    replicas = _ready_pods(kube, namespace, "web")
    assert len(replicas) == 3
    kube.wait(lambda: _endpoint_count(kube, namespace, "web") == 3, timeout=30, what="3 ready endpoints")

    from_pod = _ask_from_pod(kube, namespace, "client", "http://{WEB_SERVICE_HOST}:{WEB_SERVICE_PORT}/")
    assert set(from_pod) == replicas
    assert max(from_pod.count(r) for r in replicas) <= REQUESTS // 2  # spread, not merely reachable
    if kube.local:
        from_host = _ask_from_host(f"http://{service.spec.cluster_ip}/")
        assert set(from_host) == replicas


def test_service_follows_endpoint_changes(kube: Kube, namespace: str) -> None:
    kube.apps.create_namespaced_deployment(namespace, _deployment("web", 2))
    kube.core.create_namespaced_service(namespace, _service("web"))
    kube.wait(lambda: _rolled_out(kube, namespace, "web", 2), timeout=120, what="2 ready replicas")
    kube.wait(lambda: _endpoint_count(kube, namespace, "web") == 2, timeout=30, what="2 ready endpoints")

    kube.apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 1}})
    kube.wait(lambda: _endpoint_count(kube, namespace, "web") == 1, timeout=60, what="1 ready endpoint")
    survivor = _ready_pods(kube, namespace, "web")
    assert len(survivor) == 1

    answers = _ask_from_pod(kube, namespace, "after-scale-down", "http://web/")
    assert set(answers) == survivor


def test_unready_pods_get_no_traffic(kube: Kube, namespace: str) -> None:
    for name, ready_port in (("good", 8080), ("bad", 9999)):
        kube.core.create_namespaced_pod(
            namespace,
            {
                "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": PYTHON,
                            "command": ["python3", "-c", _SERVER],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                }
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/", "port": ready_port},
                                "periodSeconds": 1,
                            },
                        }
                    ]
                },
            },
        )
    service = kube.core.create_namespaced_service(namespace, _service("web"))
    kube.wait(
        lambda: _ready_pods(kube, namespace, "web") == {"good"}, timeout=60, what="pod good to be Ready"
    )
    kube.wait(lambda: _endpoint_count(kube, namespace, "web") == 1, timeout=30, what="1 ready endpoint")

    assert set(_ask_from_pod(kube, namespace, "client", "http://web.{POD_NAMESPACE}.svc/")) == {"good"}
    if kube.local:
        assert set(_ask_from_host(f"http://{service.spec.cluster_ip}/", count=10)) == {"good"}


def test_kubernetes_service_reaches_the_api_server_from_pods(kube: Kube, namespace: str) -> None:
    script = """
import ssl, urllib.request
secrets = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=f"{secrets}/ca.crt")
token = open(f"{secrets}/token").read()
headers = {"Authorization": f"Bearer {token}"}
request = urllib.request.Request("https://kubernetes.default.svc/healthz", headers=headers)
print(urllib.request.urlopen(request, context=ctx).read().decode())
"""
    pod = kube.run_pod(
        namespace,
        {
            "metadata": {"name": "healthz"},
            "spec": {"containers": [{"name": "main", "image": PYTHON, "command": ["python3", "-c", script]}]},
        },
    )

    assert kube.exit_code(pod) == 0, kube.logs(namespace, "healthz")
    assert kube.logs(namespace, "healthz").strip() == "ok"


# Resolves a name (so the pod has asked its gateway, the DNS server, for its MAC), then prints the
# gateway's entry of the pod's ARP table.
_GATEWAY_NEIGHBOUR = """
import socket
socket.getaddrinfo("kubernetes.default", 443)
rows = [line.split() for line in open("/proc/net/arp").read().splitlines()[1:]]
print(next(row[3] for row in rows if row[0] == "{gateway}"))
"""


def test_the_pod_gateway_keeps_its_mac_while_pods_come_and_go(kube: Kube, namespace: str) -> None:
    """Pods cache the gateway's MAC: were it to change when another pod's veth leaves the bridge,
    their DNS and Service traffic would go nowhere until that ARP entry expired (CI saw a DNS
    lookup fail right after a scale-down)."""
    if not kube.local:
        pytest.skip("the local cluster's own bridge")
    bridge_mac = f"/sys/class/net/{network.BRIDGE}/address"
    others = [f"other-{i}" for i in range(3)]
    for name in others:
        kube.core.create_namespaced_pod(namespace, {
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "sleep", "image": PYTHON, "command": ["sleep", "300"]}]},
        })
    running = lambda: all(  # noqa: E731
        kube.core.read_namespaced_pod(name, namespace).status.phase == "Running" for name in others)
    kube.wait(running, timeout=60, what="the other pods running")
    script = _GATEWAY_NEIGHBOUR.format(gateway=network.GATEWAY)
    pod = kube.run_pod(namespace, {"metadata": {"name": "neighbour"}, "spec": {"containers": [
        {"name": "arp", "image": PYTHON, "command": ["python3", "-c", script]}]}})
    assert kube.exit_code(pod) == 0, kube.logs(namespace, "neighbour")
    assert kube.logs(namespace, "neighbour").strip() == network.GATEWAY_MAC

    for name in others:
        kube.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
    kube.wait(lambda: not [p for p in kube.core.list_namespaced_pod(namespace).items
                           if p.metadata.name in others], timeout=60, what="the other pods gone")
    with open(bridge_mac) as address:
        assert address.read().strip() == network.GATEWAY_MAC
