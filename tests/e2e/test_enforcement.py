"""What a real kubelet, containerd, kernel and Pod Security admission enforce on Loopwright's pods.

Elsewhere in the suite: a trainer over its memory limit is OOMKilled by the kernel and its run
reports OutOfMemory (test_training.test_failing_jobs_report_their_reason); an operator pod
deleted mid-canary is replaced by its Deployment and resumes at the same step
(test_deployment_manual.test_operator_restart_mid_canary_resumes_at_the_same_step); canary traffic
reaches stable and canary pods through a Service, that is kube-proxy (test_deployment*).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client

import e2e.deployment_support as lw
from conftest import ML_IMAGE, Kube

pytestmark = pytest.mark.cluster


def test_restricted_admission_rejects_a_non_compliant_pod(kube: Kube, namespace: str) -> None:
    labels = kube.core.read_namespace(namespace).metadata.labels
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    privileged = {"metadata": {"name": "privileged"}, "spec": {"containers": [{
        "name": "c", "image": ML_IMAGE, "securityContext": {"privileged": True}}]}}
    with pytest.raises(client.exceptions.ApiException) as refused:
        kube.core.create_namespaced_pod(namespace, privileged)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "privileged" in message
    assert "runAsNonRoot" in message


def test_a_write_to_the_read_only_root_filesystem_fails(kube: Kube, namespace: str) -> None:
    script = ("import os; print('uid', os.getuid(), 'gid', os.getgid(), flush=True); "
              "open('/opt/loopwright/written', 'w')")
    pod = kube.run_pod(namespace, {"metadata": {"name": "writer"}, "spec": {"containers": [{
        "name": "writer", "image": ML_IMAGE, "command": ["python", "-c", script]}]}})
    log = kube.logs(namespace, "writer")
    assert kube.exit_code(pod) == 1, log
    assert "uid 65532 gid 65532" in log
    assert "Read-only file system" in log


def _predictor_pods(kube: Kube, namespace: str, name: str) -> list[Any]:
    selector = f"loopwright.dev/deployment={name}"
    return list(kube.core.list_namespaced_pod(namespace, label_selector=selector).items)


def test_a_predictor_killed_at_its_memory_limit_is_restarted_and_reported(
        kube: Kube, crds: Any, s3: Any, namespace: str, operator: Any) -> None:
    lw.register(kube, s3, namespace, model="tight", version=1, kind="good")
    body = lw.deployment("tight", model="tight", rollout={"steps": [{"weight": 50, "pause": "5s"}]})
    body["spec"]["resources"] = {"requests": {"memory": "40Mi"}, "limits": {"memory": "40Mi"}}
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", body)

    def oom_restarted() -> Any:
        # The kernel's SIGKILL (137). containerd names it OOMKilled, or "Error" when on cgroup v1 the
        # pod-level cgroup (same limit) took the kill; nothing else kills this container.
        for pod in _predictor_pods(kube, namespace, "tight"):
            for status in pod.status.container_statuses or []:
                last = status.last_state.terminated if status.last_state else None
                if last is not None and last.reason in ("OOMKilled", "Error") and status.restart_count >= 1:
                    return status
        return None

    status = kube.wait(oom_restarted, timeout=180,
                       what="the predictor OOMKilled and restarted by the kubelet")
    assert status.last_state.terminated.exit_code == 137

    def reported() -> dict[str, Any] | None:
        obj = lw.get(kube, namespace, "deployments", "tight")
        degraded = lw.condition(obj, "Degraded") or {}
        return obj if degraded.get("status") == "True" and degraded.get("reason") == "Unavailable" else None

    obj = kube.wait(reported, timeout=60, what="the Deployment to report its stable pods unavailable")
    assert (lw.condition(obj, "Ready") or {}).get("reason") == "Unavailable", obj["status"]
    assert "0/1 pods ready" in (lw.condition(obj, "Ready") or {}).get("message", ""), obj["status"]

    # With room to load its model, the next pods serve and the Deployment is Ready again.
    kube.custom.patch_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "tight", {
        "spec": {"resources": {"requests": {"memory": "256Mi"}, "limits": {"memory": "512Mi"}}}})
    lw.wait_serving(kube, namespace, "tight", timeout=180)


def test_probes_are_the_kubelets_and_the_service_goes_through_kube_proxy(
        kube: Kube, crds: Any, s3: Any, namespace: str, operator: Any) -> None:
    lw.register(kube, s3, namespace, model="probed", version=1, kind="good")
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", lw.deployment(
        "probed", model="probed", rollout={"steps": [{"weight": 50, "pause": "5s"}]}, replicas=2))
    lw.wait_serving(kube, namespace, "probed", timeout=180)
    def ready_pods() -> list[Any] | None:
        return [p for p in _predictor_pods(kube, namespace, "probed") if p.metadata.deletion_timestamp is None
                and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])] or None

    pods = kube.wait(ready_pods, timeout=60, what="ready predictor pods")
    for pod in pods:
        (container,) = pod.spec.containers
        assert container.readiness_probe.http_get.path == "/v2/health/ready"
    # The kubelet's verdicts feed the EndpointSlices kube-proxy programs: the ready pods, and only them.
    slices = kube.discovery.list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=probed").items
    ready = {e.target_ref.name for s in slices for e in s.endpoints or [] if e.conditions.ready}
    assert ready == {p.metadata.name for p in pods}
    # A pod reaches the predictor by the Service's name: CoreDNS, then the ClusterIP kube-proxy serves.
    client_pod = lw.start_client(kube, namespace, service="probed", model="probed", seconds=5,
                                 name="via-service")
    result = lw.client_result(kube, namespace, client_pod, timeout=120)
    assert result["failed"] == 0, result
    assert result["codes"].get("200", 0) > 0, result
