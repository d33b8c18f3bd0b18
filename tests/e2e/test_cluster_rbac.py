"""A pod using the in-cluster configuration is authorized by RBAC, as the operator will be.

The pod runs the kubernetes client with `load_incluster_config()`, which needs the projected
service-account token and CA at their standard path, KUBERNETES_SERVICE_HOST/PORT and a route to
the `kubernetes` Service: the whole path an in-cluster controller depends on.
"""
from __future__ import annotations

import pytest

from conftest import Kube

pytestmark = pytest.mark.cluster

IMAGE = "loopwright/operator:0.1.0"  # the project's images carry the kubernetes client
FORBIDDEN_EXIT = 3
_LIST_PODS = f"""
import sys
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
config.load_incluster_config()
namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
try:
    pods = client.CoreV1Api().list_namespaced_pod(namespace)
except ApiException as error:
    print("status", error.status)
    sys.exit({FORBIDDEN_EXIT} if error.status == 403 else 1)
print("pods:", " ".join(sorted(p.metadata.name for p in pods.items)))
"""


def _pod(name: str, service_account: str) -> dict[str, object]:
    return {"metadata": {"name": name}, "spec": {
        "serviceAccountName": service_account,
        "containers": [{"name": "main", "image": IMAGE, "command": ["python3", "-c", _LIST_PODS]}]}}


def test_in_cluster_client_is_allowed_or_forbidden_by_rbac(kube: Kube, namespace: str) -> None:
    for account in ("reader", "stranger"):
        kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    kube.rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    kube.rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "reader-reads-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}]})

    allowed = kube.run_pod(namespace, _pod("allowed", "reader"))
    forbidden = kube.run_pod(namespace, _pod("forbidden", "stranger"))

    assert kube.exit_code(allowed) == 0, kube.logs(namespace, "allowed")
    assert "allowed" in kube.logs(namespace, "allowed").split()  # it saw itself in the list
    assert kube.exit_code(forbidden) == FORBIDDEN_EXIT, kube.logs(namespace, "forbidden")
    assert kube.logs(namespace, "forbidden").strip() == "status 403"
