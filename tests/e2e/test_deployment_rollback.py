"""Bad versions are rolled back automatically: one that errors, one that is slow, one whose
predictions drift from stable's. Real models that behave badly (see deployment_support)."""

from __future__ import annotations

from typing import Any

import pytest

from e2e import deployment_support as lw

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

# errorRate is always judged; each case adds the bound its model breaks. Only the metric under
# test is configured next to it, so a loaded machine cannot make another bound fail alongside.
CASES = [
    ("erroring", "errorRate", {}),
    ("slow", "latencyP95", {"latencyP95": {"max": "10ms"}}),
    ("drifting", "predictionDrift", {"predictionDrift": {"max": 0.2}}),
]


@pytest.mark.parametrize(("kind", "metric", "bound"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_version_is_rolled_back_with_its_reason(
    kind: str,
    metric: str,
    bound: dict[str, Any],
    kube: Any,
    crds: Any,
    s3: Any,
    namespace: str,
    operator: Any,
) -> None:
    rollout = {
        "steps": [{"weight": 50, "pause": "30s"}],
        "analysis": {
            "interval": "3s",
            "failureLimit": 1,
            "minRequests": 10,
            "metrics": {"errorRate": {"max": 0.05}, **bound},
        },
    }
    client = lw.serve_under_traffic(kube, s3, namespace, model="churn", rollout=rollout, seconds=600)
    lw.register(kube, s3, namespace, model="churn", version=2, kind=kind)

    obj = lw.wait_phase(kube, namespace, "churn", "RolledBack", timeout=240)
    status = obj["status"]
    assert status["stable"]["version"] == 1
    assert status.get("canary") is None
    assert status["rejectedVersions"] == [2]
    last = status["history"][0]
    assert (last["version"], last["event"]) == (2, "RolledBack")
    assert metric in last["message"], last
    failed = [r for r in status["analysis"]["results"] if r["verdict"] == "Fail"]
    assert [r["metric"] for r in failed] == [metric], status["analysis"]["results"]
    assert failed[0]["value"] > failed[0]["threshold"]
    degraded = lw.condition(obj, "Degraded")
    assert degraded is not None
    assert (degraded["status"], degraded["reason"]) == ("True", "RolledBack")
    assert lw.condition(obj, "Ready")["status"] == "True"  # stable still serves

    def rolled_back_event() -> Any:
        return [
            e
            for e in lw.events(kube, namespace, "churn")
            if e.type == "Warning" and e.reason == "RolledBack" and metric in e.message
        ]

    kube.wait(rolled_back_event, timeout=30, what=f"a RolledBack Warning event naming {metric}")
    kube.wait(
        lambda: lw.workloads(kube, namespace, "churn") == {"churn-v1": 1},
        timeout=60,
        what="the canary's workload deleted",
    )
    def registry_once_rolled_back() -> dict[str, Any] | None:
        # The registry is updated after the canary's workload is deleted.
        status: dict[str, Any] = lw.get(kube, namespace, "modelversions", "churn-v2")["status"]
        return status if (status.get("deployments") or [{}])[0].get("event") == "RolledBack" else None

    mv2 = kube.wait(registry_once_rolled_back, timeout=30, what="the rollback in version 2's registry entry")
    assert "production" not in (mv2.get("aliases") or [])

    # Rejected for this Deployment: `latest` does not try it again.
    kube.custom.patch_namespaced_custom_object(
        lw.GROUP,
        lw.VERSION,
        namespace,
        "deployments",
        "churn",
        {"spec": {"replicas": 1, "rollout": {"paused": False}}},
    )
    result = lw.stop_client(kube, namespace, client)
    status = lw.get(kube, namespace, "deployments", "churn")["status"]
    assert status.get("canary") is None
    assert status["stable"]["version"] == 1
    if kind == "erroring":
        assert int(result["codes"].get("500", 0)) > 0, result  # the errors were real 5xx answers
    kube.custom.delete_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "churn")
