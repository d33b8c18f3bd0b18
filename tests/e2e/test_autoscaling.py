"""spec.autoscaling on a real cluster: a real HorizontalPodAutoscaler reading CPU from the kind
overlay's metrics-server scales the stable workload under load, the operator leaves the replicas
it chose alone, and a canary is sized from them; without autoscaling, `kubectl scale mld` sets
the predictor count.

Figures (time to the first scale-up, the replicas seen) are printed for the notes.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from e2e import deployment_support as lw

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

ROLLOUT = {"steps": [{"weight": 50, "pause": "5s"}],
           "analysis": {"interval": "2s", "failureLimit": 1, "minRequests": 5}}
# A low target (20% of the predictor's 100m CPU request) that a single client's load exceeds.
AUTOSCALING = {"minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 20}


def _metrics_api(kube: Any) -> bool:
    found = kube.kubectl("get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", check=False)
    return found.returncode == 0 and bool(json.loads(found.stdout).get("items"))


def _hpa(kube: Any, namespace: str, name: str) -> Any:
    try:
        return client.AutoscalingV2Api(kube.api).read_namespaced_horizontal_pod_autoscaler(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _replica_managers(kube: Any, namespace: str, name: str) -> set[str]:
    """Who owns spec.replicas of a workload, per its managedFields."""
    workload = kube.apps.read_namespaced_deployment(name, namespace)
    return {entry.manager for entry in workload.metadata.managed_fields or ()
            if "f:replicas" in ((entry.fields_v1 or {}).get("f:spec") or {})}


def test_an_hpa_scales_the_stable_version_under_load_and_the_operator_leaves_it(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    kube.wait(lambda: _metrics_api(kube), timeout=180, interval=3,
              what="metrics.k8s.io serving node metrics (metrics-server)")
    lw.register(kube, s3, namespace, model="busy", version=1, kind="good")
    mld = lw.deployment("busy", model="busy", rollout=ROLLOUT)
    mld["spec"]["autoscaling"] = AUTOSCALING
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", mld)
    lw.wait_serving(kube, namespace, "busy", timeout=180)
    hpa = kube.wait(lambda: _hpa(kube, namespace, "busy-v1"), timeout=30, what="the HPA busy-v1")
    assert hpa.spec.scale_target_ref.name == "busy-v1"
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 3)
    assert hpa.metadata.owner_references[0].kind == "Deployment"
    assert lw.workloads(kube, namespace, "busy") == {"busy-v1": 1}
    assert "loopwright" not in _replica_managers(kube, namespace, "busy-v1")

    # Load: one client, as fast as it goes, bounded to 300 s and 20,000 requests.
    started = time.monotonic()
    traffic = lw.start_client(kube, namespace, service="busy", model="busy", seconds=300, pause=0.0)
    scaled = kube.wait(lambda: (lw.workloads(kube, namespace, "busy").get("busy-v1") or 0) >= 2 or None,
                       timeout=300, what="the HPA to scale busy-v1 up", interval=2)
    assert scaled
    seconds = time.monotonic() - started
    replicas = lw.workloads(kube, namespace, "busy")["busy-v1"]
    hpa = _hpa(kube, namespace, "busy-v1")
    print(f"HPA scale-up: {seconds:.0f} s after load started, busy-v1 at {replicas} replicas, "
          f"HPA current metrics {hpa.status.current_metrics}")

    # A spec change makes the operator reconcile at once: replicas (ignored with autoscaling) stay
    # what the HPA chose, and the status reports the autoscaled size.
    kube.custom.patch_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "busy",
                                               {"spec": {"replicas": 1}})
    generation = lw.get(kube, namespace, "deployments", "busy")["metadata"]["generation"]
    kube.wait(lambda: lw.get(kube, namespace, "deployments", "busy")["status"].get("observedGeneration")
              == generation, timeout=60, what="the operator to reconcile the new generation")
    seen = []
    for _ in range(10):  # 20 s of the operator's rounds against the HPA's
        seen.append(lw.workloads(kube, namespace, "busy")["busy-v1"])
        time.sleep(2)
    print(f"busy-v1 replicas over 20 s after the spec change: {seen}")
    assert min(seen) >= 2, seen
    assert "loopwright" not in _replica_managers(kube, namespace, "busy-v1")
    status = lw.get(kube, namespace, "deployments", "busy")["status"]
    assert status["stable"]["replicas"] == status["replicas"] >= 2
    assert status["selector"] == "loopwright.dev/deployment=busy"
    autoscaling = lw.condition(lw.get(kube, namespace, "deployments", "busy"), "Autoscaling")
    assert autoscaling is not None
    assert autoscaling["status"] == "True", autoscaling
    result = lw.stop_client(kube, namespace, traffic)
    print(f"traffic while scaling: {result}")
    assert result["failed"] == 0, result

    # A canary at 50% gets as many pods as the autoscaled stable has, then is promoted at that
    # size; the HPA moves to the new stable workload (the old one's is pruned).
    traffic = lw.start_client(kube, namespace, service="busy", model="busy", seconds=300, pause=0.01,
                              name="client-canary")
    lw.register(kube, s3, namespace, model="busy", version=2, kind="good")

    def canary_sized() -> dict[str, Any] | None:
        status = lw.get(kube, namespace, "deployments", "busy")["status"]
        canary = status.get("canary") or {}
        return status if canary.get("replicas") == status["stable"]["replicas"] >= 2 else None

    status = kube.wait(canary_sized, timeout=120, interval=1,
                       what="a canary sized like the autoscaled stable")
    print(f"canary: {status['canary']['replicas']} pods beside {status['stable']['replicas']} stable "
          f"(live workloads {lw.workloads(kube, namespace, 'busy')})")
    kube.wait(lambda: (lw.get(kube, namespace, "deployments", "busy")["status"].get("stable") or {})
              .get("version") == 2, timeout=240, what="version 2 promoted", interval=1)
    kube.wait(lambda: _hpa(kube, namespace, "busy-v2"), timeout=60, what="the HPA busy-v2")
    kube.wait(lambda: _hpa(kube, namespace, "busy-v1") is None, timeout=60, what="the HPA busy-v1 pruned")
    managers = _replica_managers(kube, namespace, "busy-v2")
    print(f"after promotion: workloads {lw.workloads(kube, namespace, 'busy')}, owners of busy-v2's "
          f"replicas {sorted(managers)}")
    assert "loopwright" not in managers
    assert lw.workloads(kube, namespace, "busy")["busy-v2"] >= 2  # promoted at the autoscaled size, kept
    result = lw.stop_client(kube, namespace, traffic)
    print(f"traffic during the canary: {result}")
    assert result["failed"] == 0, result


def test_kubectl_scale_sets_the_predictors_and_autoscaling_off_removes_the_hpa(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    lw.register(kube, s3, namespace, model="plain", version=1, kind="good")
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments",
                                               lw.deployment("plain", model="plain", rollout=ROLLOUT))
    lw.wait_serving(kube, namespace, "plain", timeout=180)
    kube.kubectl("-n", namespace, "scale", "mld/plain", "--replicas=2")
    kube.wait(lambda: lw.workloads(kube, namespace, "plain") == {"plain-v1": 2}, timeout=60,
              what="plain-v1 scaled to 2 by kubectl scale mld")
    kube.wait(lambda: lw.get(kube, namespace, "deployments", "plain")["status"].get("replicas") == 2,
              timeout=60, what="status.replicas to follow")
    scale = json.loads(kube.kubectl("-n", namespace, "get", "mld/plain", "--subresource=scale",
                                    "-o", "json").stdout)
    print(f"kubectl get mld/plain --subresource=scale: {scale['spec']} {scale['status']}")
    assert scale["spec"]["replicas"] == scale["status"]["replicas"] == 2
    assert scale["status"]["selector"] == "loopwright.dev/deployment=plain"

    # Autoscaling on, then off: the HPA comes and goes, spec.replicas applies again.
    kube.custom.patch_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "plain",
                                               {"spec": {"autoscaling": AUTOSCALING}})
    kube.wait(lambda: _hpa(kube, namespace, "plain-v1"), timeout=60, what="the HPA plain-v1")
    def handed_over() -> set[str] | None:
        managers = _replica_managers(kube, namespace, "plain-v1")
        return managers if managers and "loopwright" not in managers else None

    managers = kube.wait(handed_over, timeout=60, what="plain-v1's replicas handed over by the operator")
    # Kept at 2 by the handover (an HPA may lower it later, after its stabilization window).
    print(f"owners of plain-v1's spec.replicas with autoscaling: {sorted(managers)}, replicas "
          f"{lw.workloads(kube, namespace, 'plain')}")
    kube.custom.patch_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "plain",
                                               {"spec": {"autoscaling": None, "replicas": 3}})
    kube.wait(lambda: _hpa(kube, namespace, "plain-v1") is None, timeout=60, what="the HPA plain-v1 deleted")
    kube.wait(lambda: lw.workloads(kube, namespace, "plain") == {"plain-v1": 3}, timeout=60,
              what="plain-v1 back on spec.replicas (3)")
    obj = lw.get(kube, namespace, "deployments", "plain")
    assert lw.condition(obj, "Autoscaling") is None


def test_a_requests_per_second_target_without_a_metrics_adapter_is_shown_with_a_warning(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    lw.register(kube, s3, namespace, model="rps", version=1, kind="good")
    mld = lw.deployment("rps", model="rps", rollout=ROLLOUT)
    mld["spec"]["autoscaling"] = {**AUTOSCALING, "targetRequestsPerSecond": 5}
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", mld)

    def failing() -> dict[str, Any] | None:
        # Before metrics-server has scraped the new pod, the CPU metric fails first
        # (FailedGetResourceMetric); the requests-per-second metric's failure is the one awaited.
        found = lw.condition(lw.get(kube, namespace, "deployments", "rps"), "Autoscaling")
        failed = found is not None and found["status"] == "False"
        return found if failed and found["reason"] in {"FailedGetPodsMetric", "MetricUnavailable"} else None

    condition = kube.wait(failing, timeout=240, interval=2, what="Autoscaling False for the requests metric")
    print(f"Autoscaling condition: {condition['reason']}: {condition['message']}")
    assert "loopwright_predictor_requests_per_second" in condition["message"]
    lw.events_once(kube, namespace, "rps", reason=condition["reason"], type_="Warning")
