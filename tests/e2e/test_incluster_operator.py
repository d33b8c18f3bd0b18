"""The operator as users run it: a pod in loopwright-system under its own ServiceAccount.

The kind overlay is applied, the operator pod must become Ready, reconcile an object from inside
the cluster, and be refused everything its ClusterRole does not grant: checked both by
impersonation (`kubectl auth can-i --as`) and by real requests made with a token of the
ServiceAccount. (Every other e2e test uses this same operator, through the `operator` fixture.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from conftest import Crd, Kube

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SYSTEM = "loopwright-system"
ACCOUNT = "loopwright-operator"
AS = f"system:serviceaccount:{SYSTEM}:{ACCOUNT}"
LABELS = "app.kubernetes.io/name=loopwright-operator"
_EXCEPTION_LINES = {"Reason: Forbidden", "kubernetes.client.exceptions.ForbiddenException: (403)",
                    "raise ForbiddenException(http_resp=r)"}


def _ready_pod(kube: Kube) -> Any:
    for pod in kube.core.list_namespaced_pod(SYSTEM, label_selector=LABELS).items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if ready and pod.metadata.deletion_timestamp is None:
            return pod
    return None


@pytest.fixture(scope="module")
def deployed(kube: Kube) -> Any:
    """The overlay applied; the operator pod once Ready."""
    overlay = REPO / "manifests" / "overlays" / "kind"
    result = kube.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(overlay), check=False)
    assert result.returncode == 0, result.stderr
    return kube.wait(lambda: _ready_pod(kube), timeout=180, what="the operator pod to be Ready")


def test_operator_pod_runs_under_its_own_service_account(kube: Kube, deployed: Any) -> None:
    assert deployed.spec.service_account_name == ACCOUNT
    assert deployed.spec.security_context.run_as_user == 65532
    (container,) = deployed.spec.containers
    assert container.security_context.allow_privilege_escalation is False
    workload = kube.apps.read_namespaced_deployment(ACCOUNT, SYSTEM)
    assert workload.spec.replicas == 1
    assert workload.spec.strategy.type == "Recreate"
    pod = kube.wait(lambda: _ready_pod(kube), timeout=180, what="the operator pod to be Ready")
    log = kube.logs(SYSTEM, pod.metadata.name)
    # "all namespaces" with the shipped config; a list when scoped (LOOPWRIGHT_E2E_SCOPE, below).
    assert re.search(r"loopwright operator: (all namespaces|namespaces [a-z0-9,-]+);", log), log[-2000:]
    # RBAC refusals only: a namespace being deleted also answers 403 (NamespaceTerminating).
    refusals = [line for line in log.splitlines()
                if ("Forbidden" in line or " 403" in line) and "being terminated" not in line
                and "NamespaceTerminating" not in line and line.strip() not in _EXCEPTION_LINES]
    assert not refusals, log[-4000:]


@pytest.fixture
def dataset(kube: Kube, namespace: str, crds: dict[str, Crd],
            operator: Any) -> dict[str, Any]:
    crd = crds["Dataset"]
    body = {"apiVersion": f"{crd.group}/{crd.version}", "kind": "Dataset", "metadata": {"name": "incluster"},
            "spec": {"source": {"uri": "s3://loopwright/e2e/incluster/none/", "format": "csv"},
                     "schema": {"label": {"name": "y", "task": "classification"},
                                "columns": [{"name": "x", "type": "numeric"}]}}}
    created: dict[str, Any] = kube.custom.create_namespaced_custom_object(
        crd.group, crd.version, namespace, crd.plural, body)
    return created


def _reconciled(kube: Kube, crd: Crd, namespace: str) -> dict[str, Any] | None:
    obj: dict[str, Any] = kube.custom.get_namespaced_custom_object(crd.group, crd.version, namespace,
                                                                   crd.plural, "incluster")
    ready = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
    return obj if ready else None


def test_operator_reconciles_from_inside_the_cluster(kube: Kube, deployed: Any, namespace: str,
                                                     crds: dict[str, Crd], dataset: dict[str, Any]) -> None:
    """The in-cluster operator (its token, its RBAC, S3 through the Service) handles a Dataset."""
    obj = kube.wait(lambda: _reconciled(kube, crds["Dataset"], namespace), timeout=90,
                    what="the in-cluster operator to publish Ready on the Dataset")
    (ready,) = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
    # Nothing under the prefix: the operator listed it in S3 from inside the cluster and says so.
    assert (ready["status"], ready["reason"]) == ("False", "SourceNotFound"), ready

    # The controllers run on the runtime's queue from watch events: kopf keeps no handler progress
    # or handled spec on the object, and no finalizer (deleting never waits for the operator).
    meta = obj["metadata"]
    assert not [key for key in meta.get("annotations") or {} if key.startswith("kopf.")], meta
    assert not meta.get("finalizers"), meta


def test_status_is_kstatus_compatible(kube: Kube, deployed: Any, namespace: str, crds: dict[str, Crd],
                                      dataset: dict[str, Any]) -> None:
    """kstatus (Flux, `kubectl wait`, the Argo CD health check): status.observedGeneration is the
    current generation once the Ready condition is published, also when Ready is False."""
    obj = kube.wait(lambda: _reconciled(kube, crds["Dataset"], namespace), timeout=90,
                    what="the in-cluster operator to publish Ready on the Dataset")
    assert obj["status"].get("observedGeneration") == obj["metadata"]["generation"], obj["status"]
    (ready,) = [c for c in obj["status"]["conditions"] if c["type"] == "Ready"]
    assert ready["observedGeneration"] == obj["metadata"]["generation"]


ALLOWED = [
    ("create", "jobs.batch", "default"),
    ("list", "pods", "default"),
    ("watch", "trainingpipelines.loopwright.dev", None),
    ("patch", "deployments.apps", "default"),
    ("create", "modelversions.loopwright.dev", "default"),
    ("patch", "driftpolicies.loopwright.dev/status", "default"),
    ("create", "events", "default"),
]
FORBIDDEN = [
    ("get", "secrets", "kube-system"),
    ("list", "secrets", None),
    ("delete", "nodes", None),
    ("create", "pods", "default"),
    ("create", "pods/exec", "default"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("create", "datasets.loopwright.dev", "default"),
    ("delete", "modelversions.loopwright.dev", "default"),
    ("get", "configmaps", SYSTEM),
    ("update", "deployments.apps", "default"),
]


def _can_i(kube: Kube, verb: str, resource: str, namespace: str | None) -> str:
    scope = [f"--namespace={namespace}"] if namespace else ["--all-namespaces"]
    result = kube.kubectl("auth", "can-i", verb, resource, f"--as={AS}", *scope, check=False)
    return result.stdout.strip()


@pytest.mark.parametrize(("verb", "resource", "namespace"), ALLOWED)
def test_granted_by_the_cluster_role(kube: Kube, deployed: Any, verb: str, resource: str,
                                     namespace: str | None) -> None:
    assert _can_i(kube, verb, resource, namespace) == "yes"


@pytest.mark.parametrize(("verb", "resource", "namespace"), FORBIDDEN)
def test_refused_by_the_cluster_role(kube: Kube, deployed: Any, verb: str, resource: str,
                                     namespace: str | None) -> None:
    assert _can_i(kube, verb, resource, namespace) == "no"


def _as_operator(kube: Kube) -> client.ApiClient:
    """An API client holding a short-lived token of the operator's ServiceAccount (TokenRequest)."""
    token = kube.core.create_namespaced_service_account_token(
        ACCOUNT, SYSTEM, {"spec": {"expirationSeconds": 600}}).status.token
    configuration = client.Configuration()
    configuration.host = kube.api.configuration.host
    configuration.ssl_ca_cert = kube.api.configuration.ssl_ca_cert
    configuration.verify_ssl = kube.api.configuration.verify_ssl
    # The whole header value under the old key: client versions before and after 36 both send it.
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def test_real_requests_outside_the_role_are_forbidden(kube: Kube, deployed: Any, namespace: str) -> None:
    with _as_operator(kube) as api:
        core = client.CoreV1Api(api)
        # Allowed: what the controllers do (listing pods of a namespace); proves the token is used.
        core.list_namespaced_pod(namespace)
        node = kube.core.list_node().items[0].metadata.name
        attempts = {
            "read Secrets in kube-system": lambda: core.list_namespaced_secret("kube-system"),
            "read a Secret by name": lambda: core.read_namespaced_secret("loopwright-s3", SYSTEM),
            # dry_run: even a broken role could not delete the node here; authorization comes first.
            "delete a Node": lambda: core.delete_node(node, dry_run="All"),
            "create a Pod": lambda: core.create_namespaced_pod(namespace, {
                "metadata": {"name": "nope"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                dry_run="All"),
            "escalate via a ClusterRoleBinding": lambda: client.RbacAuthorizationV1Api(api)
            .create_cluster_role_binding({
                "metadata": {"name": "loopwright-escalate"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": SYSTEM}]},
                dry_run="All"),
        }
        for what, attempt in attempts.items():
            with pytest.raises(client.exceptions.ApiException) as caught:
                attempt()
            assert caught.value.status == 403, f"{what}: {caught.value.status} {caught.value.reason}"


def test_secret_access_is_opt_in_per_namespace(kube: Kube, deployed: Any, namespace: str) -> None:
    """Webhook tokens: readable only in a namespace that binds loopwright-operator-secrets."""
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "hook"},
                                                   "stringData": {"token": "t"}})
    with _as_operator(kube) as api:
        core = client.CoreV1Api(api)
        with pytest.raises(client.exceptions.ApiException) as caught:
            core.read_namespaced_secret("hook", namespace)
        assert caught.value.status == 403
        kube.rbac.create_namespaced_role_binding(namespace, {
            "metadata": {"name": "loopwright-operator-secrets"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "loopwright-operator-secrets"},
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": SYSTEM}]})

        def readable() -> bool:
            try:
                return core.read_namespaced_secret("hook", namespace).data is not None
            except client.exceptions.ApiException as error:
                if error.status != 403:
                    raise
                return False

        kube.wait(readable, timeout=30, what="the RoleBinding to take effect")
        with pytest.raises(client.exceptions.ApiException) as caught:
            core.list_namespaced_secret(namespace)  # by name only, never listed
        assert caught.value.status == 403
        with pytest.raises(client.exceptions.ApiException) as caught:
            core.read_namespaced_secret("loopwright-s3", SYSTEM)  # and only in that namespace
        assert caught.value.status == 403


def test_a_datasets_secret_is_read_only_where_the_namespace_opts_in(
        kube: Kube, deployed: Any, namespace: str, crds: dict[str, Crd], operator: Any) -> None:
    """spec.source.credentialsSecretRef: refused (and said so) without the RoleBinding; with it,
    the operator checks the source with the Secret's credentials."""
    system = kube.core.read_namespaced_secret("loopwright-s3", SYSTEM)
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "source-s3"}, "data": system.data})
    crd = crds["Dataset"]
    body = {"apiVersion": f"{crd.group}/{crd.version}", "kind": "Dataset", "metadata": {"name": "own-secret"},
            "spec": {"source": {"uri": "s3://loopwright/e2e/incluster/none/", "format": "csv",
                                "credentialsSecretRef": {"name": "source-s3"}},
                     "schema": {"label": {"name": "y", "task": "classification"},
                                "columns": [{"name": "x", "type": "numeric"}]},
                     "refreshInterval": "2s"}}
    kube.custom.create_namespaced_custom_object(crd.group, crd.version, namespace, crd.plural, body)

    def ready(reason: str) -> dict[str, Any] | None:
        obj = kube.custom.get_namespaced_custom_object(crd.group, crd.version, namespace, crd.plural,
                                                       "own-secret")
        found = [c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
        return found[0] if found and found[0]["reason"] == reason else None

    refused = kube.wait(lambda: ready("CredentialsForbidden"), timeout=90,
                        what="Ready=False CredentialsForbidden on a Dataset naming a Secret it may not read")
    assert "loopwright-operator-secrets" in refused["message"], refused
    kube.rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "loopwright-operator-secrets"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "loopwright-operator-secrets"},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": SYSTEM}]})
    # Nothing under the prefix: S3 answered a listing signed with the Secret's credentials.
    found = kube.wait(lambda: ready("SourceNotFound"), timeout=90,
                      what="the operator to check the source with the Secret's credentials")
    assert "the credentials of Secret source-s3" in found["message"], found
