"""Case 2: the artifact store unreachable (every packet to the S3 server reset; its data kept).

* during training runs: a run whose policy allows retries (backoffLimit 3) trains once S3 is back;
  one without (backoffLimit 0) fails with the storage error as its reason; no ModelVersion but
  from the run that succeeded;
* while the operator registers a finished run: it waits for S3 instead of failing the run;
* during a predictor start: the new version is not loaded and says why, the old one serves;
* during capture: the rows that could not be written are counted on /metrics, serving goes on.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from e2e import deployment_support as lw
from e2e.drift_support import ready_pods
from e2e.test_training import Loop, dataset, make_csv, pipeline
from faults.node import Node, s3_unreachable
from faults.traffic import Client
from faults.waits import load_refused

pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.timeout(900)]

OUTAGE = 25


def _job(kube: Any, namespace: str, name: str) -> Any:
    return kube.batch.read_namespaced_job(name, namespace)


def test_s3_down_during_training_runs_and_their_registration(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    loop = Loop(kube, namespace, s3, operator)
    node = Node.of_cluster()
    uri = loop.upload("points/data.csv", make_csv(rows=500, seed=1))
    loop.create("datasets", dataset("points", uri, refresh="1h"))
    loop.wait_dataset("points", validated=True)

    # Two runs start as S3 goes away: one may retry its pod, the other may not.
    loop.create("trainingpipelines", pipeline("patient", "points", model="patient", job={"backoffLimit": 3}))
    loop.create("trainingpipelines", pipeline("hasty", "points", model="hasty"))
    loop.wait(lambda: len(loop.jobs("loopwright.dev/trainingpipeline")) == 2, what="both Jobs")
    with s3_unreachable(kube, node):
        time.sleep(OUTAGE)
    back = time.monotonic()
    hasty = loop.wait_run("hasty", 1, timeout=240)
    assert (hasty["phase"], hasty["reason"]) == ("Failed", "BackoffLimitExceeded"), hasty
    assert "Could not connect to the endpoint URL" in hasty["message"], hasty
    patient = loop.wait_run("patient", 1, timeout=300)
    assert patient["phase"] == "Succeeded", patient
    attempts = _job(kube, namespace, "patient-1").status.failed or 0
    figures.record(f"S3 down {OUTAGE} s at the start of a run, backoffLimit 3: failed trainer pods", attempts)
    figures.record("... seconds from S3 back to the run Succeeded", f"{time.monotonic() - back:.1f}")
    figures.record("S3 down, backoffLimit 0: the run's reason",
                   f"{hasty['reason']}: {hasty['message'][-160:]}")
    assert attempts >= 1
    loop.wait_model("patient-v1", phases=("Validated",))
    names = sorted(mv["metadata"]["name"] for mv in loop.list("modelversions"))
    assert names == ["patient-v1"], names  # nothing from the failed run

    # A run finishes while the operator is away; S3 is down when it comes back to register it.
    loop.create("trainingpipelines", pipeline("late", "points", model="late"))
    loop.wait(lambda: loop.jobs("loopwright.dev/trainingpipeline=late"), what="late's Job")
    operator.scale_down(kill=True)
    kube.wait(lambda: (_job(kube, namespace, "late-1").status.succeeded or 0) >= 1, timeout=240,
              what="late's Job to complete without the operator", interval=1)
    with s3_unreachable(kube, node):
        operator.start()
        time.sleep(OUTAGE)
        run = loop.get("trainingpipelines", "late")["status"]["runs"][0]
        assert run["phase"] in ("Pending", "Running"), run  # waiting, not failed
        tries = operator.log().count("runs/late-1/result.json: Could not connect")
    back = time.monotonic()
    run = loop.wait_run("late", 1, timeout=120)
    assert run["phase"] == "Succeeded", run
    figures.record("S3 down while registering a finished run: the run meanwhile",
                   f"stays active ({tries} reads of its result refused, retried), no failure")
    figures.record("... seconds from S3 back to registered", f"{time.monotonic() - back:.1f}")
    loop.wait_model("late-v1", phases=("Validated",))


def test_s3_down_during_a_predictor_start_and_capture(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    model = "churn"
    node = Node.of_cluster()
    lw.register(kube, s3, namespace, model=model, version=1, kind="good")
    lw.register(kube, s3, namespace, model=model, version=2, kind="good")
    body = lw.deployment(model, model=model, version=1, rollout={"steps": [{"weight": 50, "pause": "5s"}]})
    body["spec"]["capture"] = {"fraction": 1.0}
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", body)
    lw.wait_serving(kube, namespace, model, timeout=180)
    traffic = Client.start(kube, namespace, service=model, model=model)
    before = traffic.now()

    with s3_unreachable(kube, node):
        start = time.monotonic()
        kube.custom.patch_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", model,
                                                   {"spec": {"version": 2}})
        loaded = load_refused(kube, namespace, model, 2, timeout=180)
        seconds = time.monotonic() - start
        figures.record("S3 down at a predictor start: seconds until reported", f"{seconds:.1f}")
        figures.record("... reason shown", loaded["message"][-140:])
        # Capture flushes every 30 s: wait for one to fail.
        pod = ready_pods(kube, namespace, deployment=model, version=1)[0]
        with kube.port_forward(namespace, f"pod/{pod}", 8080) as address:
            def write_failed() -> int:
                text = httpx.get(f"http://{address}/metrics", timeout=5).text
                line = next(x for x in text.splitlines() if 'reason="writeFailed"' in x)
                return int(line.rsplit(" ", 1)[1])

            lost = kube.wait(write_failed, timeout=90, what="a capture write to fail", interval=2)
        during = traffic.now().minus(before)
        assert lw.get(kube, namespace, "deployments", model)["status"]["stable"]["version"] == 1
    back = time.monotonic()
    figures.record("S3 down: captured rows lost and counted (writeFailed)", lost)
    figures.record("S3 down: failed requests to the serving version", during.describe())
    assert during.failed == 0, during

    # S3 back: the kubelet restarts the predictor (its back-off), which loads version 2: a canary.
    kube.wait(lambda: ((lw.get(kube, namespace, "deployments", model)["status"].get("canary") or {})
                       .get("readyReplicas") or 0) >= 1,
              timeout=400, what="version 2's predictor ready after S3 is back", interval=1)
    figures.record("S3 back: seconds until version 2's predictor is ready (kubelet back-off)",
                   f"{time.monotonic() - back:.1f}")
    final = traffic.stop().minus(before)
    figures.record("S3 down and back: failed requests in all", final.describe())
    assert final.failed == 0, final


def test_s3_down_during_a_drift_check_gives_no_verdict(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    model = "drifty"
    node = Node.of_cluster()
    lw.register(kube, s3, namespace, model=model, version=1, kind="good")
    body = lw.deployment(model, model=model, version=1, rollout={"steps": [{"weight": 50, "pause": "5s"}]})
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", body)
    lw.wait_serving(kube, namespace, model, timeout=180)
    traffic = Client.start(kube, namespace, service=model, model=model)
    policy = {"apiVersion": f"{lw.GROUP}/{lw.VERSION}", "kind": "DriftPolicy", "metadata": {"name": model},
              "spec": {"deploymentRef": {"name": model}, "interval": "2s", "window": "10m",
                       "minSamples": 100}}

    def status() -> dict[str, Any]:
        return lw.get(kube, namespace, "driftpolicies", model)

    def unavailable() -> bool:
        return (lw.condition(status(), "Ready") or {}).get("reason") == "ProfileUnavailable"

    with s3_unreachable(kube, node):
        start = time.monotonic()
        kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "driftpolicies", policy)
        kube.wait(unavailable, timeout=60, what="ProfileUnavailable", interval=0.5)
        reported = time.monotonic() - start
        time.sleep(OUTAGE)
        obj = status()
        drift = lw.condition(obj, "DriftDetected")
        # No verdict without the reference profile: never a NoDrift from missing data.
        assert drift is None or drift["status"] == "Unknown", obj["status"]
        assert "drifted" not in (obj.get("status") or {}), obj["status"]
    figures.record("S3 down, a new DriftPolicy: seconds until Ready=False ProfileUnavailable",
                   f"{reported:.1f}")
    figures.record(f"S3 down {OUTAGE} s: drift verdicts meanwhile",
                   f"none (DriftDetected {drift and drift['status']})")
    back = time.monotonic()

    def verdict() -> dict[str, Any] | None:
        found = lw.condition(status(), "DriftDetected") or {}
        return found if found.get("status") in ("True", "False") else None

    found = kube.wait(verdict, timeout=120, what="a drift verdict once S3 is back", interval=0.5)
    figures.record("S3 back: seconds until the first verdict",
                   f"{time.monotonic() - back:.1f} ({found['reason']})")
    assert found["reason"] == "NoDrift", found  # in-distribution traffic
    result = traffic.stop()
    assert result.failed == 0, result
