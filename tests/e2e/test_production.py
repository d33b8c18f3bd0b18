"""Loopwright in a shared cluster (issue 14), on kind with the in-cluster operator.

* Every pod the operator creates carries requests and limits: in a namespace with a compute
  ResourceQuota and no LimitRange (where a BestEffort pod is refused), the profiling and
  verification Jobs and the predictors all run. The operator-wide pod defaults and each object's
  spec.podTemplate reach the pods; Pod Security (restricted) still admits them.
* /feedback answers only to the Deployment's bearer token.
* kstatus on a real canary: Reconciling while it runs, Stalled once it is aborted, and what Argo
  CD's Lua makes of both.
* The API server refuses a webhook to the metadata address (CEL).
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import yaml
from kubernetes.client import ApiException

import kstatus
from conftest import S3, Kube
from e2e import deployment_support as lw
from e2e.drift_support import SCHEMA, csv_bytes, rows
from operator_fixture import Operator
from unit.test_argocd_health import _health

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

GROUP, VERSION = lw.GROUP, lw.VERSION
TOKEN = "production-feedback-token-0123456789"
POD_DEFAULTS = {"labels": {"team": "platform"}, "annotations": {"example.com/cost-center": "ml"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                                 "effect": "NoSchedule"}]}


def _create(kube: Kube, namespace: str, plural: str, body: dict[str, Any]) -> None:
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def _pods(kube: Kube, namespace: str, selector: str) -> list[Any]:
    return list(kube.core.list_namespaced_pod(namespace, label_selector=selector).items)


def test_every_pod_is_sized_placed_and_restricted_under_a_compute_quota(
    kube: Kube, namespace: str, s3: S3, operator: Operator,
) -> None:
    kube.core.create_namespaced_resource_quota(namespace, {"metadata": {"name": "compute"}, "spec": {"hard": {
        "requests.cpu": "4", "requests.memory": "8Gi", "limits.cpu": "16", "limits.memory": "32Gi"}}})
    kube.core.create_namespaced_service_account(namespace, {"metadata": {"name": "predictor"}})
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "feedback"},
                                                   "stringData": {"token": TOKEN}})
    verifier = {"verifier": {"limits": {"memory": "1536Mi"}}}
    operator.env = {"LOOPWRIGHT_POD_DEFAULTS": yaml.safe_dump(POD_DEFAULTS),
                    "LOOPWRIGHT_DEFAULT_RESOURCES": json.dumps(verifier)}
    operator.start()

    # A Dataset whose profiling pod is placed by its own podTemplate over the defaults.
    instances, labels = rows(600, seed=3)
    key = f"e2e/{namespace}/data.csv"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=csv_bytes(instances, labels))
    _create(kube, namespace, "datasets", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Dataset", "metadata": {"name": "quota"},
        "spec": {"source": {"uri": f"s3://{s3.bucket}/{key}"}, "schema": SCHEMA,
                 "podTemplate": {"nodeSelector": {"kubernetes.io/os": "linux"}, "labels": {"team": "data"},
                                 "resources": {"limits": {"memory": "1Gi"}}}}})
    kube.wait(lambda: (lw.get(kube, namespace, "datasets", "quota").get("status") or {})
              .get("validatedVersion"), timeout=240, what="the Dataset profiled under the quota")
    (profiler,) = [p for p in _pods(kube, namespace, "loopwright.dev/dataset=quota")]
    assert profiler.metadata.labels["team"] == "data"  # the object's label over the default's
    assert profiler.metadata.annotations["example.com/cost-center"] == "ml"
    assert profiler.spec.node_selector == {"kubernetes.io/os": "linux"}
    assert [t.key for t in profiler.spec.tolerations if t.key == "dedicated"] == ["dedicated"]
    resources = profiler.spec.containers[0].resources
    assert resources.requests == {"cpu": "100m", "memory": "256Mi"}
    assert resources.limits == {"cpu": "1", "memory": "1Gi"}

    # A ModelVersion: its verification Job is sized by the operator's defaults.
    lw.register(kube, s3, namespace, model="quota", version=1, kind="good")
    (verifier_pod,) = _pods(kube, namespace, "loopwright.dev/modelversion=quota-v1")
    assert verifier_pod.spec.containers[0].resources.limits == {"cpu": "1", "memory": "1536Mi"}

    # A Deployment with its own identity, spread and size; feedback behind a token.
    _create(kube, namespace, "deployments", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Deployment", "metadata": {"name": "quota"},
        "spec": {"model": "quota", "version": 1, "replicas": 2,
                 "feedback": {"tokenSecretRef": {"name": "feedback", "key": "token"}},
                 "podTemplate": {
                     "serviceAccountName": "predictor",
                     "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname"}],
                     "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                         {"weight": 1, "preference": {"matchExpressions": [
                             {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}}]}},
                     "resources": {"requests": {"memory": "192Mi"}}}}})
    lw.wait_serving(kube, namespace, "quota", timeout=180)
    pods = _pods(kube, namespace, "loopwright.dev/deployment=quota")
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.service_account_name == "predictor"
        assert pod.spec.automount_service_account_token is False
        assert pod.spec.topology_spread_constraints[0].label_selector.match_labels == {
            "loopwright.dev/deployment": "quota", "loopwright.dev/version": "1"}
        assert pod.metadata.labels["team"] == "platform"
        assert pod.spec.containers[0].resources.requests == {"cpu": "100m", "memory": "192Mi"}
        assert pod.spec.security_context.run_as_non_root is True
    quota = kube.core.read_namespaced_resource_quota("compute", namespace)
    print(f"quota used: {quota.status.used}")
    assert quota.status.used["requests.memory"] != "0"

    # /feedback: the token or nothing.
    with kube.port_forward(namespace, f"pod/{pods[0].metadata.name}", 8080) as address, \
            httpx.Client(base_url=f"http://{address}", timeout=10) as client:
        instance = {"a": 0.1, "b": 0.2, "c": 0.3}
        predicted = client.post("/v1/models/quota:predict", json={"instances": [instance]})
        label = [{"id": predicted.json()["ids"][0], "label": 1}]
        refused = client.post("/v1/models/quota/feedback", json={"labels": label})
        assert refused.status_code == 401, refused.text
        wrong = client.post("/v1/models/quota/feedback", json={"labels": label},
                            headers={"authorization": "Bearer not-the-token-0123456789"})
        assert wrong.status_code == 401
        sent = client.post("/v1/models/quota/feedback", json={"labels": label},
                           headers={"authorization": f"Bearer {TOKEN}"})
        assert sent.status_code == 200, sent.text
        assert sent.json()["matched"] == 1
    print(f"feedback: without token {refused.status_code}, wrong token {wrong.status_code}, "
          f"right token {sent.status_code}")
    kstatus_seen = kstatus.compute(lw.get(kube, namespace, "deployments", "quota"))
    assert kstatus_seen.status == kstatus.CURRENT, kstatus_seen


def _state(kube: Kube, namespace: str, name: str) -> tuple[str, str, dict[str, str]]:
    obj = lw.get(kube, namespace, "deployments", name)
    conditions = {c["type"]: f"{c['status']}/{c['reason']}" for c in obj["status"].get("conditions", ())}
    return kstatus.compute(obj).status, _health(obj)[0], conditions


def test_kstatus_and_argo_cd_health_of_a_real_canary(
    kube: Kube, namespace: str, s3: S3, operator: Operator,
) -> None:
    rollout = {"steps": [{"weight": 50, "pause": "1h"}],
               "analysis": {"interval": "2s", "failureLimit": 3, "minRequests": 5,
                            "metrics": {"errorRate": {"max": 0.5}}}}
    client = lw.serve_under_traffic(kube, s3, namespace, model="health", rollout=rollout, seconds=600)
    stable = kube.wait(lambda: (s := _state(kube, namespace, "health"))[0] == kstatus.CURRENT and s,
                       timeout=60, what="a converged Deployment")
    print(f"stable: {stable}")
    assert stable[1] == "Healthy"

    lw.register(kube, s3, namespace, model="health", version=2, kind="good")
    canary = kube.wait(lambda: (s := _state(kube, namespace, "health"))[2].get("Progressing", "").startswith(
        "True") and s, timeout=120, what="the canary in progress")
    print(f"canary: {canary}")
    assert canary[0] == kstatus.IN_PROGRESS
    assert canary[1] == "Progressing"
    assert canary[2]["Reconciling"].startswith("True/")
    assert canary[2]["Ready"] == "True/Serving"  # the stable version serves meanwhile

    lw.patch_rollout(kube, namespace, "health", {"abort": {"version": 2}})
    lw.wait_phase(kube, namespace, "health", "RolledBack", timeout=120)
    aborted = _state(kube, namespace, "health")
    print(f"aborted: {aborted}")
    assert aborted[0] == kstatus.FAILED
    assert aborted[1] == "Degraded"
    assert aborted[2]["Stalled"] == "True/Aborted"
    lw.stop_client(kube, namespace, client)


def test_the_api_server_refuses_a_webhook_to_the_metadata_address(kube: Kube, namespace: str,
                                                                   crds: Any) -> None:
    policy = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy", "metadata": {"name": "leak"},
              "spec": {"deploymentRef": {"name": "any"},
                       "actions": {"webhook": {"url": "http://169.254.169.254/latest/meta-data/"}}}}
    with pytest.raises(ApiException) as refused:
        _create(kube, namespace, "driftpolicies", policy)
    assert refused.value.status == 422
    assert "link-local and cloud metadata addresses are refused" in str(refused.value.body)
