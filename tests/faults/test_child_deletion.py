"""Case 3: a user deletes what the operator made (a predictor Deployment or Service, a training Job)
or the ModelVersion being served. Each is recreated or reported with a condition, and a client
predicting through the Service all along counts the requests that failed during each deletion."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from e2e import deployment_support as lw
from e2e.test_training import Loop, dataset, make_csv, pipeline
from faults.traffic import Client

pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.timeout(900)]

ROLLOUT = {"steps": [{"weight": 50, "pause": "5s"}]}
MODEL = "churn"


def _uid(read: Any) -> str | None:
    try:
        return str(read().metadata.uid)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _recreated(kube: Any, read: Any, *, old: str, what: str) -> float:
    """Seconds until an object with another uid than `old` exists."""
    start = time.monotonic()
    kube.wait(lambda: _uid(read) not in (None, old), timeout=120, what=f"{what} recreated", interval=0.2)
    return time.monotonic() - start


def _pods(kube: Any, namespace: str) -> list[Any]:
    selector = f"loopwright.dev/deployment={MODEL}"
    return list(kube.core.list_namespaced_pod(namespace, label_selector=selector).items)


def _ready(pod: Any) -> bool:
    return pod.metadata.deletion_timestamp is None and any(
        c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _serving(kube: Any, namespace: str) -> None:
    def ready() -> bool:
        slices = kube.discovery.list_namespaced_endpoint_slice(
            namespace, label_selector=f"kubernetes.io/service-name={MODEL}").items
        return any(e.conditions.ready for s in slices for e in s.endpoints or [])

    kube.wait(ready, timeout=180, what="a ready endpoint behind the Service", interval=0.2)


def test_predictor_children_and_served_version_deleted_under_traffic(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    lw.register(kube, s3, namespace, model=MODEL, version=1, kind="good")
    kube.custom.create_namespaced_custom_object(
        lw.GROUP, lw.VERSION, namespace, "deployments", lw.deployment(MODEL, model=MODEL, rollout=ROLLOUT))
    lw.wait_serving(kube, namespace, MODEL, timeout=180)
    traffic = Client.start(kube, namespace, service=MODEL, model=MODEL)
    baseline = traffic.now()

    # The Service: kube-proxy drops its rules at once; the operator applies it again.
    before = traffic.now()
    read_service = lambda: kube.core.read_namespaced_service(MODEL, namespace)  # noqa: E731
    old = _uid(read_service)
    kube.core.delete_namespaced_service(MODEL, namespace)
    seconds = _recreated(kube, read_service, old=old, what="the Service")
    _serving(kube, namespace)
    during = traffic.now().minus(before)
    figures.record("Service deleted: seconds until recreated", f"{seconds:.1f}")
    figures.record("Service deleted: failed requests", during.describe())
    assert seconds < 10, seconds  # its deletion wakes the owner (not the 30 s idle round)

    # The predictor's apps/v1 Deployment (as kubectl deletes it: its pods follow in the background).
    workload = f"{MODEL}-v1"
    before = traffic.now()
    read_workload = lambda: kube.apps.read_namespaced_deployment(workload, namespace)  # noqa: E731
    old = _uid(read_workload)
    old_pods = {p.metadata.name for p in _pods(kube, namespace)}
    start = time.monotonic()
    kube.apps.delete_namespaced_deployment(workload, namespace, propagation_policy="Background")
    seconds = _recreated(kube, read_workload, old=old, what="the predictor Deployment")
    kube.wait(lambda: any(_ready(p) for p in _pods(kube, namespace) if p.metadata.name not in old_pods),
              timeout=180, what="a new predictor pod ready", interval=0.2)
    ready = time.monotonic() - start
    kube.wait(lambda: not old_pods & {p.metadata.name for p in _pods(kube, namespace)}, timeout=120,
              what="the old predictor pods gone", interval=0.5)
    time.sleep(3)
    during = traffic.now().minus(before)
    figures.record("predictor Deployment deleted: seconds until recreated", f"{seconds:.1f}")
    figures.record("predictor Deployment deleted: seconds until Ready again", f"{ready:.1f}")
    figures.record("predictor Deployment deleted: failed requests", during.describe())
    assert during.failures.get("cut", 0) == 0, during  # requests being answered were answered
    assert seconds < 10, seconds

    # The ModelVersion being served: its pods keep serving, and the Deployment says so
    # (Degraded=True ModelVersionMissing); Ready stays True, as the stable pods do serve.
    before = traffic.now()
    kube.custom.delete_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "modelversions", workload)

    def reported() -> dict[str, Any] | None:
        obj = lw.get(kube, namespace, "deployments", MODEL)
        degraded = lw.condition(obj, "Degraded") or {}
        return obj if degraded.get("reason") == "ModelVersionMissing" else None

    start = time.monotonic()
    obj = kube.wait(reported, timeout=90, what="the deleted ModelVersion reported", interval=0.5)
    seconds = time.monotonic() - start
    time.sleep(10)
    during = traffic.now().minus(before)
    degraded = lw.condition(obj, "Degraded")
    assert (lw.condition(obj, "Ready") or {}).get("status") == "True", obj["status"]
    figures.record("served ModelVersion deleted: seconds until reported", f"{seconds:.1f}")
    figures.record("served ModelVersion deleted: condition",
                   f"Degraded={degraded['status']} {degraded['reason']}: {degraded['message']}")
    figures.record("served ModelVersion deleted: failed requests (10 s after)", during.describe())
    assert during.failed == 0, during
    assert lw.workloads(kube, namespace, MODEL) == {workload: 1}

    final = traffic.stop().minus(baseline)
    figures.record("whole case: failed requests", final.describe())


def test_training_job_deleted_mid_run_is_reported_and_the_next_run_trains(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    loop = Loop(kube, namespace, s3, operator)
    uri = loop.upload("points/data.csv", make_csv(rows=300, seed=1))
    loop.create("datasets", dataset("points", uri))
    loop.wait_dataset("points", validated=True)
    loop.create("trainingpipelines", pipeline("clf", "points", model="clf"))
    job = loop.wait(lambda: next(iter(loop.jobs("loopwright.dev/trainingpipeline=clf")), None),
                    what="run 1's Job")
    start = time.monotonic()
    kube.batch.delete_namespaced_job(job.metadata.name, namespace, propagation_policy="Background")
    run = loop.wait_run("clf", 1)
    seconds = time.monotonic() - start
    assert (run["phase"], run["reason"]) == ("Failed", "JobDeleted"), run
    assert f"Job {job.metadata.name} disappeared" in run["message"]
    assert "disappeared" in loop.event("clf", "RunFailed")[1]
    figures.record("training Job deleted: seconds until the run is Failed/JobDeleted", f"{seconds:.1f}")
    # No ModelVersion from the interrupted run; the next run (new data) trains and registers.
    assert loop.list("modelversions") == []
    loop.upload("points/data.csv", make_csv(rows=320, seed=2))
    run = loop.wait_run("clf", 2)
    assert run["phase"] == "Succeeded", run
    assert [mv["metadata"]["name"] for mv in loop.list("modelversions")] == [run["modelVersion"]]
    jobs = sorted(j.metadata.name for j in loop.jobs("loopwright.dev/trainingpipeline=clf"))
    assert jobs == ["clf-2"], jobs
