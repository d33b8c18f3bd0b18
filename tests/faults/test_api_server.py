"""Case 1: no API server for 60 s (its static pod stopped) during a training run and during a canary.

The operator keeps its pod (same uid, restartCount unchanged) and recovers its watches by itself;
no Job or ModelVersion is made twice; the canary resumes at the step it was at; the predictors
serve all along (the data plane does not need the API server). Figures: seconds to converge after
the API server answers again, and the requests that failed meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from e2e import deployment_support as lw
from e2e.test_training import Loop, dataset, make_csv, pipeline
from faults.node import Node, restart_cluster_dns
from faults.traffic import Client

pytestmark = [pytest.mark.cluster, pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(900)]

DOWN_SECONDS = 60
ANALYSIS = {"interval": "2s", "failureLimit": 2, "minRequests": 5, "metrics": {"errorRate": {"max": 0.05}}}


@pytest.fixture(autouse=True)
def _cluster_dns_afresh(kube: Any) -> Iterator[None]:
    yield
    restart_cluster_dns(kube)


def _operator_pod(operator: Any) -> tuple[str, int]:
    pod = operator.pod()
    return pod.metadata.uid, sum(s.restart_count for s in pod.status.container_statuses or [])


def _time(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def test_api_server_down_during_a_training_run(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    loop = Loop(kube, namespace, s3, operator)
    pod_before = _operator_pod(operator)
    uri = loop.upload("points/data.csv", make_csv(rows=2000, seed=1))
    loop.create("datasets", dataset("points", uri, refresh="1h"))
    loop.wait_dataset("points", validated=True)
    loop.create("trainingpipelines", pipeline("clf", "points", model="clf"))
    loop.wait(lambda: loop.jobs("loopwright.dev/trainingpipeline=clf"), what="run 1's Job")

    outage = Node.of_cluster().stop_api_server(kube, seconds=DOWN_SECONDS)
    figures.record("API server down during a training run: seconds without an API", f"{outage.seconds:.0f}")
    def complete() -> bool:
        job = kube.batch.read_namespaced_job("clf-1", namespace)
        return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])

    loop.wait(complete, what="the Job Complete (kube-controller-manager back)", timeout=300)
    completed = time.monotonic() - outage.back
    run = loop.wait_run("clf", 1, timeout=300)
    ran = time.monotonic() - outage.back
    figures.record("API back: seconds until the Job is Complete (Job controller)", f"{completed:.1f}")
    assert run["phase"] == "Succeeded", run
    loop.wait_model("clf-v1", phases=("Validated",))
    validated = time.monotonic() - outage.back
    figures.record("API back: seconds until run 1 Succeeded", f"{ran:.1f}")
    figures.record("API back: seconds until its ModelVersion Validated", f"{validated:.1f}")

    # Watches recovered: a pipeline created now starts its run on its watch event.
    start = time.monotonic()
    loop.create("trainingpipelines", pipeline("clf-b", "points", model="clf-b"))
    loop.wait(lambda: loop.jobs("loopwright.dev/trainingpipeline=clf-b"), what="clf-b's Job", timeout=60)
    reacted = time.monotonic() - start
    figures.record("API back: seconds from a new pipeline to its Job (watch alive)", f"{reacted:.1f}")
    assert reacted < 20, reacted  # its watch event, not the 60 s safety poll
    loop.wait_run("clf-b", 1)

    # Nothing twice; the same operator process throughout.
    jobs = sorted(j.metadata.name for j in loop.jobs("loopwright.dev/trainingpipeline=clf"))
    assert jobs == ["clf-1"], jobs
    names = sorted(mv["metadata"]["name"] for mv in loop.list("modelversions"))
    assert names == ["clf-b-v1", "clf-v1"], names
    status = loop.get("trainingpipelines", "clf")["status"]
    assert status["runCount"] == 1, status
    assert _operator_pod(operator) == pod_before
    figures.record("operator pod during the outage", "same pod, 0 restarts")


def test_api_server_down_during_a_canary(
        kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, figures: Any) -> None:
    rollout = {"steps": [{"weight": 10, "pause": "5s"}, {"weight": 30, "pause": "100s"},
                         {"weight": 50, "pause": "5s"}], "analysis": ANALYSIS}
    pod_before = _operator_pod(operator)
    lw.register(kube, s3, namespace, model="eta", version=1, kind="good")
    kube.custom.create_namespaced_custom_object(
        lw.GROUP, lw.VERSION, namespace, "deployments", lw.deployment("eta", model="eta", rollout=rollout))
    lw.wait_serving(kube, namespace, "eta", timeout=180)
    traffic = Client.start(kube, namespace, service="eta", model="eta")
    lw.register(kube, s3, namespace, model="eta", version=2, kind="good")

    def canary() -> dict[str, Any]:
        return (lw.get(kube, namespace, "deployments", "eta").get("status") or {}).get("canary") or {}

    kube.wait(lambda: canary().get("step") == 1 and canary().get("weightReachedTime"), timeout=180,
              what="the canary at step 2 (index 1) with its weight reached", interval=0.5)
    before = canary()
    sent = traffic.now()
    outage = Node.of_cluster().stop_api_server(kube, seconds=DOWN_SECONDS)
    figures.record("API server down during a canary: seconds without an API", f"{outage.seconds:.0f}")

    def analysed_again() -> dict[str, Any] | None:
        status = lw.get(kube, namespace, "deployments", "eta").get("status") or {}
        last = _time((status.get("analysis") or {}).get("lastTime"))
        return status if last is not None and last > outage.back_at else None

    status = kube.wait(analysed_again, timeout=120, what="an analysis check after the outage", interval=0.5)
    converged = time.monotonic() - outage.back
    figures.record("API back: seconds until the canary is analysed again", f"{converged:.1f}")
    resumed = status["canary"]
    assert resumed["version"] == 2
    assert resumed["step"] == 1, resumed  # the step it was at, neither restarted nor skipped
    assert resumed["stepStartTime"] == before["stepStartTime"], (before, resumed)
    during = traffic.now().minus(sent)
    figures.record("API server down during a canary: failed requests", during.describe())

    kube.wait(lambda: ((lw.get(kube, namespace, "deployments", "eta")["status"].get("stable") or {})
                       .get("version") == 2), timeout=240, what="version 2 promoted", interval=1)
    promoted = time.monotonic() - outage.back
    figures.record("API back: seconds until version 2 promoted (step 2 had ~40 s left)", f"{promoted:.1f}")
    steps = [e.message for e in lw.events(kube, namespace, "eta") if e.reason == "CanaryStep"]
    assert len(steps) == 3, steps  # each step announced once
    names = sorted(mv["metadata"]["name"] for mv in kube.custom.list_namespaced_custom_object(
        lw.GROUP, lw.VERSION, namespace, "modelversions")["items"])
    assert names == ["eta-v1", "eta-v2"]
    kube.wait(lambda: lw.workloads(kube, namespace, "eta") == {"eta-v2": 1}, timeout=60,
              what="only version 2's workload left")
    total = traffic.stop().minus(sent)
    figures.record("outage and promotion: failed requests", total.describe())
    assert during.failed == 0, during
    assert _operator_pod(operator) == pod_before
