"""Cluster DNS: a pod finds a Service by its short and full names and reaches it through it."""
from __future__ import annotations

import uuid

import pytest

from conftest import Kube

pytestmark = pytest.mark.cluster

IMAGE = "loopwright/operator:0.1.0"
_SERVER = """
import http.server, os
token = os.environ["TOKEN"].encode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(token)))
        self.end_headers()
        self.wfile.write(token)
http.server.HTTPServer(("", 8080), Handler).serve_forever()
"""
_CLIENT = """
import socket, sys, urllib.request
namespace = sys.argv[1]
short = socket.gethostbyname("web")
full = socket.gethostbyname(f"web.{namespace}.svc.cluster.local")
body = urllib.request.urlopen("http://web/", timeout=10).read().decode()
print(short, full, body)
"""
_OUTSIDE = """
import socket
print(socket.gethostbyname("kubernetes.default"))
try:
    socket.gethostbyname("pypi.org")
except socket.gaierror:
    print("no-internet")
"""


def test_pod_resolves_a_service_by_name_and_reaches_it(kube: Kube, namespace: str) -> None:
    token = uuid.uuid4().hex
    labels = {"app": "web"}
    kube.core.create_namespaced_pod(namespace, {
        "metadata": {"name": "web", "labels": labels},
        "spec": {"containers": [{
            "name": "server", "image": IMAGE, "command": ["python3", "-c", _SERVER],
            "env": [{"name": "TOKEN", "value": token}],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}]}})
    service = kube.core.create_namespaced_service(namespace, {
        "metadata": {"name": "web"},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}})

    def ready_endpoint() -> bool:
        slices = kube.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=web").items
        return any(e.conditions.ready for s in slices for e in s.endpoints or [])

    kube.wait(ready_endpoint, timeout=90, what="the web pod to be a ready endpoint")
    client = kube.run_pod(namespace, {"metadata": {"name": "client"}, "spec": {"containers": [{
        "name": "main", "image": IMAGE, "command": ["python3", "-c", _CLIENT, namespace]}]}})

    output = kube.logs(namespace, "client")
    assert kube.exit_code(client) == 0, output
    assert output.split() == [service.spec.cluster_ip, service.spec.cluster_ip, token]


def test_dns_serves_only_the_cluster_domain(kube: Kube, namespace: str) -> None:
    if not kube.local:
        pytest.skip("kind forwards other names upstream")
    probe = kube.run_pod(namespace, {"metadata": {"name": "outside"}, "spec": {"containers": [{
        "name": "main", "image": IMAGE, "command": ["python3", "-c", _OUTSIDE]}]}})
    assert kube.exit_code(probe) == 0
    assert kube.logs(namespace, "outside").split() == ["10.96.0.1", "no-internet"]
