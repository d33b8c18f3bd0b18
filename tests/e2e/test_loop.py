"""The whole loop on a real cluster, in one test, with the real operator (every controller).

Dataset v1 -> the pipeline trains -> ModelVersion v1 validated -> the Deployment serves v1;
in-distribution traffic shows no drift; shifted traffic is detected and the DriftPolicy asks
for a retrain (trigger Drift); the predictors' captured requests, joined with the labels sent
back, become Dataset v2 (``python -m loopwright.jobs.compactor`` as a Job); the requested run trains
on it; v2 is validated, rolled out by canary and promoted; the DriftPolicy follows the
promotion and the same shifted traffic is no drift against the new reference.

One choreography step keeps the test deterministic: the pipeline is suspended while the
new data is being made, so the DriftPolicy's request waits for it (a suspended pipeline
keeps a train request for later) instead of racing it and training on the old version.

Each milestone is recorded; a failure says which ones were reached.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, TypeVar

import pytest

from conftest import ML_IMAGE, S3, Kube, restricted
from e2e.deployment_support import start_client, stop_client
from e2e.drift_support import (
    FEEDBACK,
    GROUP,
    SCHEMA,
    VERSION,
    Traffic,
    condition,
    csv_bytes,
    feedback_secret,
    forward_pods,
    get,
    ready_pods,
    retrain_request,
    rows,
)
from loopwright import storage
from loopwright.jobs import compactor
from operator_fixture import CREDENTIALS_SECRET, Operator

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

T = TypeVar("T")
NAME = "loop"  # Dataset, pipeline, model and Deployment share it
POLICY = "loop-watch"
SHIFT = 3.0
TRAINER_IMAGE = ML_IMAGE


class Milestones:
    """What the loop reached, for an honest failure message."""

    def __init__(self, kube: Kube, namespace: str, operator: Operator) -> None:
        self.kube, self.ns, self.operator = kube, namespace, operator
        self.reached: list[str] = []

    def wait(self, what: str, probe: Callable[[], T | None], *, timeout: float, interval: float = 1.0) -> T:
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                self.reached.append(what)
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"loop stopped before: {what} (after {timeout:.0f}s)\nreached: "
                            + " -> ".join(self.reached) + "\n" + self._state(), pytrace=False)
            time.sleep(interval)

    def done(self, what: str) -> None:
        self.reached.append(what)

    def _state(self) -> str:
        lines = []
        for plural in ("datasets", "trainingpipelines", "modelversions", "deployments", "driftpolicies"):
            items = self.kube.custom.list_namespaced_custom_object(GROUP, VERSION, self.ns, plural)["items"]
            for obj in items:
                status = obj.get("status") or {}
                conditions = {c["type"]: f"{c['status']}/{c['reason']}"
                              for c in status.get("conditions") or ()}
                brief = {k: status.get(k) for k in ("phase", "version", "validatedVersion", "runCount",
                                                    "stable", "canary", "modelVersion", "samples",
                                                    "consecutive", "aliases") if status.get(k) is not None}
                lines.append(f"{plural}/{obj['metadata']['name']}: {json.dumps(brief)} {conditions}")
        return "\n".join(lines)


def _dataset(uri: str) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Dataset", "metadata": {"name": NAME},
            "spec": {"source": {"uri": uri}, "schema": SCHEMA, "validation": {"minRows": 500},
                     "refreshInterval": "2s"}}


def _pipeline() -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingPipeline", "metadata": {"name": NAME},
            "spec": {"datasetRef": {"name": NAME},
                     "model": {"name": NAME, "estimator": "LogisticRegression"},
                     "metrics": ["accuracy"],
                     "validation": {"thresholds": [{"metric": "accuracy", "min": 0.75}],
                                    "champion": {"margin": 0.05}},
                     # New data trains the first version; afterwards the cooldown leaves retraining to
                     # the DriftPolicy's request, which the cooldown does not hold back.
                     "triggers": {"onNewData": True, "cooldown": "1h"}}}


def _deployment() -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Deployment", "metadata": {"name": NAME},
            "spec": {"model": NAME, "version": "latest", "replicas": 2, "capture": {"fraction": 1.0},
                     "feedback": FEEDBACK,
                     "rollout": {"steps": [{"weight": 50, "pause": "6s"}],
                                 "analysis": {"interval": "2s", "minRequests": 20, "failureLimit": 3}}}}


def _policy() -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy", "metadata": {"name": POLICY},
            "spec": {"deploymentRef": {"name": NAME}, "interval": "2s", "window": "15m", "minSamples": 300,
                     "consecutive": 2,
                     "performance": {"metric": "accuracy", "maxDrop": 0.15, "minLabels": 100},
                     "actions": {"retrain": {"pipelineRef": {"name": NAME}, "cooldown": "1h"}}}}


def _capture_job(
    *, captures: str, profile: str, output: str, since_ms: int, s3_endpoint: str
) -> dict[str, Any]:
    """The documented capture path as a Job: captured rows + labels -> an object of the Dataset."""
    env = [{"name": "AWS_ENDPOINT_URL", "value": s3_endpoint}, {"name": "HOME", "value": "/tmp"}] + [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": k}}}
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "capture-to-dataset"},
            "spec": {"backoffLimit": 0, "template": {"spec": restricted({
                "restartPolicy": "Never", "containers": [{
                    "name": "capture", "image": TRAINER_IMAGE, "env": env,
                    "command": ["loopwright-compactor", "--captures", captures,
                                "--profile", profile, "--output", output, "--since-ms", str(since_ms)]}]})}}}


def _patch(kube: Kube, namespace: str, plural: str, name: str, body: dict[str, Any]) -> None:
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, body)


def test_the_whole_loop(kube: Kube, namespace: str, s3: S3, operator: Operator,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in (("AWS_ENDPOINT_URL", s3.endpoint), ("AWS_ACCESS_KEY_ID", s3.access_key),
                       ("AWS_SECRET_ACCESS_KEY", s3.secret_key), ("AWS_DEFAULT_REGION", s3.region)):
        monkeypatch.setenv(key, value)  # the test reads the captures itself while waiting for them
    m = Milestones(kube, namespace, operator)
    data_uri = f"s3://{s3.bucket}/e2e/{namespace}/data/current.csv"
    s3c = s3.client()
    instances, labels = rows(3000, seed=1)
    s3c.put_object(Bucket=s3.bucket, Key=data_uri.split("/", 3)[3], Body=csv_bytes(instances, labels))

    def create(plural: str, body: dict[str, Any]) -> None:
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)

    # -- version 1 ----------------------------------------------------------------------------
    create("datasets", _dataset(data_uri))
    create("trainingpipelines", _pipeline())
    m.wait("Dataset v1 validated", lambda: (get(kube, "datasets", namespace, NAME).get("status") or {})
           .get("validatedVersion"), timeout=180)

    def mv_phase(name: str) -> str | None:
        items = kube.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions")["items"]
        found = next((o for o in items if o["metadata"]["name"] == name), None)
        return (found.get("status") or {}).get("phase") if found else None

    m.wait("ModelVersion v1 Validated", lambda: mv_phase(f"{NAME}-v1") == "Validated", timeout=300)
    feedback_secret(kube, namespace)
    create("deployments", _deployment())

    def serving(version: int) -> dict[str, Any] | None:
        status = get(kube, "deployments", namespace, NAME).get("status") or {}
        stable = status.get("stable") or {}
        ok = status.get("phase") == "Stable" and stable.get("version") == version and not status.get("canary")
        return status if ok else None

    m.wait("Deployment serves v1", lambda: serving(1), timeout=240)
    pods = m.wait("2 predictor pods of v1 ready", lambda: _two_pods(kube, namespace, 1), timeout=120)
    mv1 = get(kube, "modelversions", namespace, f"{NAME}-v1")
    assert "production" in mv1["status"].get("aliases", [])

    # -- no drift on in-distribution traffic ---------------------------------------------------
    create("driftpolicies", _policy())
    try:
        with ExitStack() as stack:
            _drift_and_retrain(kube, namespace, s3, m, forward_pods(kube, namespace, pods, stack), mv1)
    finally:
        kube.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", POLICY)


def _drift_and_retrain(kube: Kube, namespace: str, s3: S3, m: Milestones, endpoints: list[str],
                       mv1: dict[str, Any]) -> None:
    traffic = Traffic(model=NAME)
    policy = lambda: get(kube, "driftpolicies", namespace, POLICY)  # noqa: E731

    # The first check takes the pods' counters as the baseline: traffic before it is not in the window.
    m.wait("first drift check", lambda: (policy().get("status") or {}).get("lastCheckTime"), timeout=60)
    instances, labels = rows(600, seed=11)
    traffic.predict(endpoints, instances, labels)
    assert traffic.feedback() == 600

    def judged(
        expected: tuple[str, str], type_: str = "DriftDetected"
    ) -> Callable[[], dict[str, Any] | None]:
        def probe() -> dict[str, Any] | None:
            obj = policy()
            return obj if condition(obj, type_) == expected else None
        return probe

    def no_drift(samples: int) -> Callable[[], dict[str, Any] | None]:
        # Checks run while traffic and labels arrive: one may judge part of them, so wait for all.
        def probe() -> dict[str, Any] | None:
            obj = policy()
            return obj if (
                condition(obj, "DriftDetected") == ("False", "NoDrift")
                and condition(obj, "PerformanceDegraded") == ("False", "WithinMaxDrop")
                and obj["status"]["samples"] >= samples
            ) else None
        return probe

    m.wait("no drift on in-distribution traffic", no_drift(600), timeout=60)

    # -- shifted traffic: drift detected, a retrain requested (it waits for the new data) ---------
    _patch(kube, namespace, "trainingpipelines", NAME, {"spec": {"triggers": {"suspend": True}}})
    since_ms = int(time.time() * 1000)
    instances, labels = rows(1500, shift=SHIFT, seed=12)
    traffic.predict(endpoints, instances, labels)
    obj = m.wait("drift detected on shifted traffic", judged(("True", "DriftConfirmed")), timeout=60)
    drifted = {f["name"]: f["drifted"] for f in obj["status"]["features"]}
    assert drifted == {"a": True, "b": True, "c": False}
    token = obj["status"]["lastRetrainRun"]
    annotations = retrain_request(kube, namespace, NAME, token=token)
    assert annotations["loopwright.dev/train-trigger"] == "Drift"
    m.done("retrain requested (trigger Drift)")
    # Labels come later than predictions: v1 gets about half of the shifted rows wrong.
    assert traffic.feedback() == 1500
    obj = m.wait("performance degraded", judged(("True", "PerformanceDropped"), "PerformanceDegraded"),
                 timeout=60)
    assert obj["status"]["lastRetrainRun"] == token  # the cooldown holds a second retrain back

    # -- the captured traffic, with its labels, becomes Dataset v2 ---------------------------------
    captures = f"s3://{s3.bucket}/captures/{namespace}/{NAME}/"
    m.wait("predictors flushed their captures", lambda: _labelled_rows(captures, since_ms) >= 1500,
           timeout=90, interval=3)
    dataset_v1 = get(kube, "datasets", namespace, NAME)["status"]["validatedVersion"]
    data_uri = get(kube, "datasets", namespace, NAME)["spec"]["source"]["uri"]
    in_cluster = s3.in_cluster
    kube.batch.create_namespaced_job(namespace, _capture_job(
        captures=captures, profile=mv1["spec"]["profileUri"], output=data_uri, since_ms=since_ms,
        s3_endpoint=in_cluster))
    m.wait("capture Job succeeded", lambda: kube.batch.read_namespaced_job_status(
        "capture-to-dataset", namespace).status.succeeded, timeout=120)

    def new_version() -> str | None:
        status = get(kube, "datasets", namespace, NAME).get("status") or {}
        version = status.get("validatedVersion")
        return version if version and version != dataset_v1 and status.get("version") == version else None

    dataset_v2 = m.wait("Dataset v2 (captured) validated", new_version, timeout=120)
    assert get(kube, "datasets", namespace, NAME)["status"]["rows"] == 1500

    # -- the requested run trains on it; v2 validated, canary, promoted ----------------------------
    _patch(kube, namespace, "trainingpipelines", NAME, {"spec": {"triggers": {"suspend": False}}})

    def drift_run() -> dict[str, Any] | None:
        runs = (get(kube, "trainingpipelines", namespace, NAME).get("status") or {}).get("runs") or []
        return next((r for r in runs if r.get("trigger") == "Drift" and r.get("phase") == "Succeeded"), None)

    run = m.wait("Drift-triggered run succeeded", drift_run, timeout=300)
    assert run["datasetVersion"] == dataset_v2
    mv2 = run["modelVersion"]
    assert mv2 == f"{NAME}-v2"
    def validated() -> bool:
        return (get(kube, "modelversions", namespace, mv2).get("status") or {}).get("phase") == "Validated"

    m.wait("ModelVersion v2 Validated", validated, timeout=240)

    # Shifted traffic through the Service (kube-proxy spreads it over stable and canary pods) from a
    # pod in the cluster, while the canary is analysed; bounded in time and count.
    client = start_client(kube, namespace, service=NAME, model=NAME, seconds=300, pause=0.05, shift=SHIFT,
                          name="canary-client")

    def promoted() -> bool:
        status = get(kube, "deployments", namespace, NAME).get("status") or {}
        stable = status.get("stable") or {}
        return status.get("phase") == "Stable" and stable.get("version") == 2 and not status.get("canary")

    m.wait("v2 rolled out by canary and promoted", promoted, timeout=300, interval=0.5)
    stop_client(kube, namespace, client)
    history = get(kube, "deployments", namespace, NAME)["status"].get("history") or []
    assert any(h["version"] == 2 and h["event"] == "Promoted" for h in history), history
    m.wait("production alias on v2", lambda: "production" in (
        get(kube, "modelversions", namespace, mv2).get("status") or {}).get("aliases", []), timeout=30)

    # -- drift clears on the new reference ----------------------------------------------------
    m.wait("DriftPolicy follows the promotion", lambda: (policy().get("status") or {})
           .get("modelVersion") == mv2, timeout=60)
    # The retrain it requested settles with the promotion of the version it produced.
    settled = m.wait("the retrain settles as Promoted", lambda: (policy().get("status") or {}).get("retrain")
                     if condition(policy(), "Retraining") == ("False", "Promoted") else None, timeout=60)
    assert (settled["token"], settled["modelVersion"], settled["version"]) == (token, mv2, 2)
    pods2 = m.wait("predictor pods of v2 ready", lambda: _two_pods(kube, namespace, 2), timeout=120)
    traffic = Traffic(model=NAME)
    instances, labels = rows(800, shift=SHIFT, seed=14)
    with ExitStack() as stack:
        traffic.predict(forward_pods(kube, namespace, pods2, stack), instances, labels)
        assert traffic.feedback() == 800
    obj = m.wait("no drift against v2 on shifted traffic", no_drift(800), timeout=60)
    drifted = {f["name"]: f["drifted"] for f in obj["status"]["features"]}
    assert drifted == {"a": False, "b": False, "c": False}


def _two_pods(kube: Kube, namespace: str, version: int) -> list[str] | None:
    found = ready_pods(kube, namespace, deployment=NAME, version=version)
    return found if len(found) == 2 else None


def _labelled_rows(captures: str, since_ms: int) -> int:
    """Captured rows since ``since_ms`` that have a label (what the capture Job will write)."""
    rows_: list[bytes] = []
    labels_: list[bytes] = []
    for obj in storage.list_objects(captures):
        target = labels_ if obj.uri.endswith(compactor.LABELS_SUFFIX) else rows_
        target.extend(storage.get_bytes(obj.uri).splitlines())
    return len(compactor.join(rows_, labels_, since_ms=since_ms).rows)
