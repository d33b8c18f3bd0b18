"""The control plane is real: TLS, authentication, RBAC, admission, controllers and scheduler.

None of these tests need a pod to run, so they hold on any cluster (kind included) and pin down
the parts of the local cluster that a fake API server would not have.
"""
from __future__ import annotations

import json
import shutil
import socket
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from conftest import LOCAL_STATE, REPO, Kube

pytestmark = pytest.mark.cluster


def _status(call: object) -> int:
    assert callable(call)
    try:
        call()
    except ApiException as error:
        return int(error.status)
    return 200


def test_api_is_tls_from_the_cluster_ca_and_anonymous_is_forbidden(kube: Kube) -> None:
    if not kube.local:
        pytest.skip("inspects the local cluster's PKI")
    context = ssl.create_default_context(cafile=str(LOCAL_STATE / "pki" / "ca.crt"))
    request = urllib.request.Request("https://127.0.0.1:6443/api/v1/pods")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=context, timeout=10)
    assert caught.value.code == 403
    assert json.load(caught.value)["message"].startswith('pods is forbidden: User "system:anonymous"')
    # The name in-cluster clients use verifies too (the handshake checks the host name).
    with context.wrap_socket(socket.create_connection(("127.0.0.1", 6443), timeout=10),
                             server_hostname="kubernetes.default.svc") as tls:
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}


def test_service_account_token_is_signed_and_rbac_decides(kube: Kube, namespace: str) -> None:
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    token = kube.core.create_namespaced_service_account_token(
        "robot", namespace, {"spec": {"expirationSeconds": 600}}).status.token
    config = client.Configuration()
    config.host = kube.api.configuration.host
    config.ssl_ca_cert = kube.api.configuration.ssl_ca_cert
    config.api_key = {"authorization": f"Bearer {token}"}
    with client.ApiClient(config) as robot:
        review = client.AuthenticationV1Api(robot).create_self_subject_review({})
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:robot"
        pods = client.CoreV1Api(robot)
        assert _status(lambda: pods.list_namespaced_pod(namespace)) == 403

        kube.rbac.create_namespaced_role(namespace, {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})
        kube.rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "robot-reads-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": namespace}]})
        kube.wait(lambda: _status(lambda: pods.list_namespaced_pod(namespace)) == 200,
                  timeout=10, what="the RoleBinding to take effect")
        assert _status(lambda: pods.list_namespaced_pod("kube-system")) == 403
        assert _status(lambda: pods.list_namespaced_secret(namespace)) == 403


def test_new_namespace_gets_service_account_and_root_ca(kube: Kube, namespace: str) -> None:
    root_ca = kube.wait(lambda: _configmap(kube, namespace, "kube-root-ca.crt"), timeout=30,
                        what="the root-CA publisher")
    assert root_ca.data["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    if kube.local:
        assert root_ca.data["ca.crt"] == (LOCAL_STATE / "pki" / "ca.crt").read_text()


def _configmap(kube: Kube, namespace: str, name: str) -> client.V1ConfigMap | None:
    try:
        found: client.V1ConfigMap = kube.core.read_namespaced_config_map(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


def _owned_configmap(name: str, owner: client.V1ConfigMap) -> dict[str, object]:
    return {"metadata": {"name": name, "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name, "uid": owner.metadata.uid,
        "blockOwnerDeletion": True}]}, "data": {"k": "v"}}


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
def test_garbage_collector_deletes_dependents(kube: Kube, namespace: str, propagation: str) -> None:
    parent = kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "parent"}})
    child = kube.core.create_namespaced_config_map(namespace, _owned_configmap("child", parent))
    kube.core.create_namespaced_config_map(namespace, _owned_configmap("grandchild", child))
    kube.core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})

    kube.core.delete_namespaced_config_map("parent", namespace, propagation_policy=propagation)

    def gone() -> bool:
        return all(_configmap(kube, namespace, n) is None for n in ("parent", "child", "grandchild"))

    kube.wait(gone, timeout=60, what=f"{propagation} deletion of the owner chain")
    assert _configmap(kube, namespace, "bystander") is not None


def test_deployment_controller_and_cascading_delete(kube: Kube, namespace: str) -> None:
    labels = {"app": "idle"}
    kube.apps.create_namespaced_deployment(namespace, {
        "metadata": {"name": "idle"},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": "loopwright/operator:0.1.0",
                                     "command": ["sleep", "3600"]}]}}}})
    replicasets = kube.wait(lambda: kube.apps.list_namespaced_replica_set(namespace).items, timeout=30,
                            what="the Deployment controller to create a ReplicaSet")
    owner = replicasets[0].metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("Deployment", "idle", True)

    kube.apps.delete_namespaced_deployment("idle", namespace, propagation_policy="Background")
    kube.wait(lambda: not kube.apps.list_namespaced_replica_set(namespace).items, timeout=60,
              what="the garbage collector to delete the ReplicaSet")


def _unrunnable_pod(name: str) -> dict[str, object]:
    """A pod the scheduler can never place, so admission results can be read without it running."""
    return {"metadata": {"name": name}, "spec": {
        "nodeSelector": {"loopwright.dev/no-such-node": "true"},
        "containers": [{"name": "main", "image": "loopwright/operator:0.1.0", "command": ["true"]}]}}


def test_scheduler_reports_unschedulable(kube: Kube, namespace: str) -> None:
    kube.core.create_namespaced_pod(namespace, _unrunnable_pod("nowhere"))

    def condition() -> client.V1PodCondition | None:
        status = kube.core.read_namespaced_pod("nowhere", namespace).status
        return next((c for c in status.conditions or [] if c.type == "PodScheduled"), None)

    scheduled = kube.wait(condition, timeout=30, what="the scheduler to try the pod")
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert scheduled.message.startswith("0/"), scheduled.message  # "0/N nodes are available: ..."


def test_admission_plugins_mutate_and_reject(kube: Kube, namespace: str) -> None:
    kube.core.create_namespaced_limit_range(namespace, {
        "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "300m"},
                             "defaultRequest": {"cpu": "100m"}}]}})
    pod = kube.core.create_namespaced_pod(namespace, _unrunnable_pod("limited"))
    # LimitRanger filled in the defaults; ServiceAccount mounted the projected API token.
    assert pod.spec.containers[0].resources.limits == {"cpu": "300m"}
    assert pod.spec.service_account_name == "default"
    assert any(v.projected and v.name.startswith("kube-api-access-") for v in pod.spec.volumes)

    kube.core.create_namespaced_resource_quota(namespace, {
        "metadata": {"name": "few"}, "spec": {"hard": {"pods": "1"}}})

    def counted() -> bool:
        used = kube.core.read_namespaced_resource_quota("few", namespace).status.used or {}
        return bool(used.get("pods") == "1")

    kube.wait(counted, timeout=30, what="the quota controller to count the pod")
    with pytest.raises(ApiException) as caught:
        kube.core.create_namespaced_pod(namespace, _unrunnable_pod("one-too-many"))
    assert caught.value.status == 403
    assert "exceeded quota" in caught.value.body


def test_node_authorizer_and_node_restriction_confine_a_kubelet(
        kube: Kube, namespace: str, tmp_path: Path) -> None:
    if not kube.local:
        pytest.skip("needs the local cluster's CA key to issue a kubelet certificate")
    sys.path.insert(0, str(REPO / "tests" / "cluster"))
    import pki  # noqa: PLC0415 -- the harness module, importable only with tests/cluster on the path

    for name in ("ca.crt", "ca.key", "sa.key", "sa.pub"):
        shutil.copy(LOCAL_STATE / "pki" / name, tmp_path / name)
    kubelet = pki.Cert("intruder", "system:node:intruder", ("system:nodes",), client=True)
    material = pki.ensure(directory=tmp_path, certs=[kubelet])
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "unrelated"}, "data": {}})
    node_name = kube.core.list_node().items[0].metadata.name

    config = client.Configuration()
    config.host = kube.api.configuration.host
    config.ssl_ca_cert = kube.api.configuration.ssl_ca_cert
    config.cert_file, config.key_file = str(material.crt("intruder")), str(material.key("intruder"))
    with client.ApiClient(config) as intruder:
        review = client.AuthenticationV1Api(intruder).create_self_subject_review({})
        assert review.status.user_info.username == "system:node:intruder"
        assert "system:nodes" in review.status.user_info.groups
        core = client.CoreV1Api(intruder)
        # Node authorizer: its own Node may be read (it just does not exist), another one not;
        # a kubelet reads only the secrets of pods bound to it.
        assert _status(lambda: core.read_node("intruder")) == 404
        assert _status(lambda: core.read_node(node_name)) == 403
        assert _status(lambda: core.read_namespaced_secret("unrelated", namespace)) == 403
        patch = {"metadata": {"labels": {"loopwright.dev/hijacked": "true"}}}
        assert _status(lambda: core.patch_node(node_name, patch)) == 403
        # NodeRestriction (admission, after authorization allowed it): a kubelet may register
        # itself, but not with labels reserved for the control plane. Rejected, so never created.
        reserved = {"metadata": {"name": "intruder", "labels": {"node-restriction.kubernetes.io/pool": "x"}}}
        with pytest.raises(ApiException) as caught:
            core.create_node(reserved)
        assert caught.value.status == 403
        assert "is not allowed to set the following labels" in caught.value.body
