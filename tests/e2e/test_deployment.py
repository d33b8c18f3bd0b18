"""A Deployment on a real cluster: the first version serves through the Service, then a new
validated version goes through every canary step and is promoted while a client keeps
sending predictions and sees no failed request."""

from __future__ import annotations

from typing import Any

import pytest

from e2e import deployment_support as lw

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

ROLLOUT = {
    "steps": [{"weight": 10, "pause": "6s"}, {"weight": 50, "pause": "6s"}],
    "analysis": {
        "interval": "2s",
        "failureLimit": 1,
        "minRequests": 5,
        "metrics": {
            "errorRate": {"max": 0.01},
            "latencyP95": {"max": "500ms"},
            "predictionDrift": {"max": 0.5},
        },
    },
}


def test_first_version_serves_then_a_new_version_is_promoted_step_by_step(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any
) -> None:
    lw.register(kube, s3, namespace, model="iris", version=1, kind="good")
    kube.custom.create_namespaced_custom_object(
        lw.GROUP,
        lw.VERSION,
        namespace,
        "deployments",
        lw.deployment("iris", model="iris", rollout=ROLLOUT),
    )

    # Version 1 goes straight to stable and serves through the Service.
    def serving() -> Any:
        obj = lw.get(kube, namespace, "deployments", "iris")
        ready = lw.condition(obj, "Ready")
        return obj if ready and ready["status"] == "True" else None

    obj = kube.wait(serving, timeout=120, what="Deployment iris Ready", interval=1)
    status = obj["status"]
    assert status["phase"] == "Stable"
    assert status["stable"]["version"] == 1
    assert status["url"] == f"http://iris.{namespace}.svc.cluster.local:80"
    assert lw.workloads(kube, namespace, "iris") == {"iris-v1": 1}
    assert "production" in lw.get(kube, namespace, "modelversions", "iris-v1")["status"]["aliases"]
    svc = kube.core.read_namespaced_service("iris", namespace)
    assert svc.spec.selector == {"loopwright.dev/deployment": "iris"}
    pdb = kube.kubectl("get", "pdb", "-n", namespace, "iris", "-o", "jsonpath={.spec.maxUnavailable}")
    assert pdb.stdout == "1"

    client = lw.start_client(kube, namespace, service="iris", model="iris", seconds=10)
    first = lw.client_result(kube, namespace, client, timeout=120)
    assert first["failed"] == 0, first
    assert set(first["codes"]) == {"200"}, first
    assert first["n"] > 20, first

    # A client runs throughout the rollout of version 2.
    client = lw.start_client(kube, namespace, service="iris", model="iris", seconds=600, name="client-2")
    kube.wait(
        lambda: kube.core.read_namespaced_pod(client, namespace).status.phase == "Running",
        timeout=60,
        what="the traffic pod running",
    )
    lw.register(kube, s3, namespace, model="iris", version=2, kind="good")

    seen: list[tuple[int, int, int]] = []
    passes: list[dict[str, Any]] = []

    def promoted() -> Any:
        obj = lw.get(kube, namespace, "deployments", "iris")
        st = obj.get("status") or {}
        if st.get("canary"):
            c = st["canary"]
            point = (c["step"], c["desiredWeight"], c["weight"])
            analysis = st.get("analysis") or {}
            if analysis.get("verdict") == "Pass":
                passes.append({r["metric"]: r for r in analysis["results"]})
            if not seen or seen[-1] != point:
                seen.append(point)
        return obj if (st.get("stable") or {}).get("version") == 2 and st.get("phase") == "Stable" else None

    obj = kube.wait(promoted, timeout=240, what="version 2 promoted", interval=0.5)
    status = obj["status"]
    assert "canary" not in status or status["canary"] is None
    # Both steps were visited, with the actual weight honest about one pod per side.
    assert {(step, desired) for step, desired, _ in seen} >= {(0, 10), (1, 50)}, seen
    assert (0, 10, 50) in seen, seen
    assert status["history"][0]["event"] == "Promoted"
    assert status["history"][0]["version"] == 2
    # Every step was judged on numbers: no errors, a real p95, no prediction drift.
    assert passes, "no passing analysis observed during the rollout"
    judged = passes[-1]
    assert set(judged) == {"errorRate", "latencyP95", "predictionDrift"}
    assert judged["errorRate"]["value"] == 0.0
    assert 0 < judged["latencyP95"]["value"] <= judged["latencyP95"]["threshold"] == 0.5
    assert judged["predictionDrift"]["value"] <= 0.5

    reasons = [e.reason for e in lw.events_once(kube, namespace, "iris", reason="Promoted")]
    assert reasons.count("CanaryStep") >= 2, reasons
    kube.wait(
        lambda: lw.workloads(kube, namespace, "iris") == {"iris-v2": 1},
        timeout=60,
        what="only version 2's workload left",
    )

    # The registry is updated after the old workload is deleted.
    def registry() -> tuple[dict[str, Any], dict[str, Any]] | None:
        mv1, mv2 = (lw.get(kube, namespace, "modelversions", f"iris-v{v}")["status"] for v in (1, 2))
        return (mv1, mv2) if [d["event"] for d in mv2.get("deployments", [])][:1] == ["Promoted"] else None

    mv1, mv2 = kube.wait(registry, timeout=30, what="the promotion in version 2's registry entry")
    assert [d["event"] for d in mv2["deployments"]][:2] == ["Promoted", "Canary"]
    assert "production" in mv2["aliases"]
    assert "production" not in (mv1.get("aliases") or [])

    printed = kube.kubectl("get", "mld", "-n", namespace, "iris").stdout
    assert "Stable" in printed
    assert "iris" in printed

    result = lw.stop_client(kube, namespace, client)
    print(f"traffic during the rollout: {result}")
    assert result["failed"] == 0, result
    assert set(result["codes"]) == {"200"}, result
    assert result["n"] > 100, result
    kube.custom.delete_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", "iris")
