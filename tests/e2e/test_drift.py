"""DriftPolicy against the in-cluster operator and real predictor pods.

The test trains with the real trainer, registers ModelVersions by hand, and lets the operator
serve version 1 (a pinned Deployment); traffic goes to each predictor pod through a port-forward
(prediction ids are per pod), the webhook to a receiver pod in the namespace. It checks, in
order: no traffic is
InsufficientData; in-distribution traffic is no drift; a predictor pod replaced
mid-window does not corrupt the counts; shifted traffic is DriftDetected after
`consecutive` checks, with an Event, one retrain request (trigger Drift) and the
webhook; the retrain in flight holds back a second one; wrong predictions on the
shifted data degrade performance; a promotion resets the window to the new
reference, where the same shifted traffic is no drift.
"""

from __future__ import annotations

import base64
from contextlib import ExitStack
from typing import Any

import pytest

from conftest import S3, Crd, Kube
from e2e.drift_support import (
    FEEDBACK,
    GROUP,
    VERSION,
    Traffic,
    condition,
    csv_bytes,
    event_reasons,
    feedback_secret,
    forward_pods,
    get,
    host_env,
    model_version,
    ready_pods,
    received,
    retrain_request,
    rows,
    start_webhook_receiver,
    train,
)
from operator_fixture import Operator

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

MODEL = "drifty"
MLD = "drifty"
POLICY = "drifty-watch"
PIPELINE = "drifty-train"
SHIFT = 3.0


def _status(kube: Kube, namespace: str) -> dict[str, Any]:
    return get(kube, "driftpolicies", namespace, POLICY).get("status") or {}


def _pods(kube: Kube, namespace: str, version: int, *, not_name: str | None = None) -> list[str]:
    """Wait for 2 ready predictor pods of ``version`` (not ``not_name``); their names."""
    def probe() -> list[str] | None:
        found = ready_pods(kube, namespace, deployment=MLD, version=version)
        return found if len(found) == 2 and not_name not in found else None

    return kube.wait(probe, timeout=180, what=f"2 ready predictor pods of v{version}")


def _policy_when(kube: Kube, namespace: str, type_: str, expected: tuple[str, str]) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        obj = get(kube, "driftpolicies", namespace, POLICY)
        return obj if condition(obj, type_) == expected else None

    return kube.wait(probe, timeout=30, what=f"{type_}={expected}")


def _events(kube: Kube, namespace: str, *reasons: str) -> list[str]:
    def probe() -> list[str] | None:
        found = event_reasons(kube, namespace, POLICY)
        return found if set(reasons) <= set(found) else None

    return kube.wait(probe, timeout=30, what=f"events {reasons}")


def _checked_after(kube: Kube, namespace: str, since: str | None, *, checks: int = 1) -> dict[str, Any]:
    """Wait until ``checks`` more checks have run after the one stamped ``since``; return the status."""
    seen: list[str] = []

    def probe() -> dict[str, Any] | None:
        status = _status(kube, namespace)
        stamp = status.get("lastCheckTime")
        if stamp and stamp != since and stamp not in seen:
            seen.append(stamp)
        return status if len(seen) >= checks else None

    return kube.wait(probe, timeout=60, what=f"{checks} more drift check(s)", interval=0.5)


def test_drift_policy_detects_acts_and_resets_on_promotion(
    kube: Kube, namespace: str, crds: dict[str, Crd], s3: S3, operator: Operator,
) -> None:
    env = host_env(s3)
    prefix = f"s3://{s3.bucket}/e2e/{namespace}"
    s3c = s3.client()

    # Version 1 trained on in-distribution data, version 2 on shifted data (the real trainer).
    summaries = {}
    for version, shift in ((1, 0.0), (2, SHIFT)):
        instances, labels = rows(3000, shift=shift, seed=version)
        s3c.put_object(Bucket=s3.bucket, Key=f"e2e/{namespace}/data-v{version}.csv",
                       Body=csv_bytes(instances, labels))
        summaries[version] = train(dataset_uri=f"{prefix}/data-v{version}.csv",
                                   output_prefix=f"{prefix}/runs/v{version}", env=env)
        kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions",
                                                    model_version(model=MODEL, version=version,
                                                                  summary=summaries[version]))
    kube.core.create_namespaced_secret(namespace, {"metadata": {"name": "hook"}, "data": {
        "token": base64.b64encode(b"hook-token\n").decode()}})
    operator.allow_secrets()  # the webhook's token: the README's per-namespace opt-in
    hook_url = start_webhook_receiver(kube, namespace)
    feedback_secret(kube, namespace)

    # The Deployment (mldeploy) pinned to version 1; the pipeline to retrain (its Dataset does not
    # exist, so a request stays a request: the annotations are what is checked).
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "deployments", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "Deployment", "metadata": {"name": MLD},
        "spec": {"model": MODEL, "version": 1, "replicas": 2, "feedback": FEEDBACK,
                 "rollout": {"steps": [{"weight": 50, "pause": "1h"}]}}})
    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingpipelines", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingPipeline", "metadata": {"name": PIPELINE},
        "spec": {"datasetRef": {"name": "unused"},
                 "model": {"name": MODEL, "estimator": "LogisticRegression"}}})
    pods = _pods(kube, namespace, 1)

    kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy", "metadata": {"name": POLICY},
        "spec": {
            "deploymentRef": {"name": MLD}, "interval": "2s", "window": "10m", "minSamples": 300,
            "consecutive": 2, "driftShare": 0.5,
            "performance": {"metric": "accuracy", "maxDrop": 0.15, "minLabels": 100},
            "actions": {"retrain": {"pipelineRef": {"name": PIPELINE}, "cooldown": "1h"},
                        "webhook": {"url": hook_url, "secretRef": {"name": "hook", "key": "token"}}},
        }})
    _scenario(kube, namespace, pods, summaries, operator)


def _scenario(kube: Kube, namespace: str, pods: list[str], summaries: dict[int, dict[str, Any]],
              operator: Operator) -> None:
    with ExitStack() as forwards:  # every port-forward the checks open ends with them
        _checks(kube, namespace, Traffic(model=MODEL), forwards, pods, summaries, operator)


def _checks(kube: Kube, namespace: str, traffic: Traffic, forwards: ExitStack, pods: list[str],
            summaries: dict[int, dict[str, Any]], operator: Operator) -> None:
    endpoints = forward_pods(kube, namespace, pods, forwards)
    # 1. No traffic yet: checks run, but nothing is judged.
    status = _checked_after(kube, namespace, None)
    obj = get(kube, "driftpolicies", namespace, POLICY)
    assert condition(obj, "Ready") == ("True", "Checked"), operator.log()[-3000:]
    assert condition(obj, "InsufficientData") == ("True", "TooFewSamples")
    assert condition(obj, "DriftDetected") == ("Unknown", "InsufficientData")
    assert status["modelVersion"] == f"{MODEL}-v1"
    assert status["samples"] == 0
    # No finalizer: deleting the policy (or its namespace) never waits for the operator.
    assert not obj["metadata"].get("finalizers")

    # 2. In-distribution traffic with true labels: no drift, performance as at training.
    instances, labels = rows(600, seed=11)
    traffic.predict(endpoints, instances, labels)
    assert traffic.feedback() == 600
    # Two checks: one may have been scraping while the traffic was still being sent.
    status = _checked_after(kube, namespace, _status(kube, namespace)["lastCheckTime"], checks=2)
    assert status["samples"] == 600, status
    assert status["drifted"] is False
    assert status["consecutive"] == 0
    assert status["driftShare"] == 0.0
    assert {f["name"]: f["drifted"] for f in status["features"]} == {"a": False, "b": False, "c": False}
    assert all(f["statistic"] < 0.1 for f in status["features"]), status["features"]
    accuracy = summaries[1]["metrics"]["accuracy"]
    assert status["performance"]["labels"] == 600
    assert status["performance"]["reference"] == pytest.approx(accuracy)
    assert abs(status["performance"]["value"] - accuracy) < 0.1
    obj = get(kube, "driftpolicies", namespace, POLICY)
    assert condition(obj, "DriftDetected") == ("False", "NoDrift")
    assert condition(obj, "PerformanceDegraded") == ("False", "WithinMaxDrop")
    assert condition(obj, "InsufficientData") == ("False", "EnoughData")

    # 3. A predictor pod is replaced: what it served stays, its successor counts from its start.
    selector = f"loopwright.dev/deployment={MLD}"
    victim = kube.core.list_namespaced_pod(namespace, label_selector=selector).items[0]
    kube.core.delete_namespaced_pod(victim.metadata.name, namespace, grace_period_seconds=1)
    successors = _pods(kube, namespace, 1, not_name=victim.metadata.name)
    endpoints = forward_pods(kube, namespace, successors, forwards)
    status = _checked_after(kube, namespace, status["lastCheckTime"])
    assert status["samples"] == 600, "a vanished pod's contribution must stay in the window"

    # 4. Shifted traffic: a and b drift, c does not; confirmed after 2 checks; retrain + event + webhook.
    instances, labels = rows(1500, shift=SHIFT, seed=12)
    traffic.predict(endpoints, instances, labels)
    status = _checked_after(kube, namespace, _status(kube, namespace)["lastCheckTime"], checks=2)
    assert status["samples"] == 2100
    assert status["drifted"] is True
    drifted = {f["name"]: f["drifted"] for f in status["features"]}
    assert drifted == {"a": True, "b": True, "c": False}
    assert status["driftShare"] == pytest.approx(2 / 3)

    obj = _policy_when(kube, namespace, "DriftDetected", ("True", "DriftConfirmed"))
    status = obj["status"]
    assert status["consecutive"] >= 2
    token = status["lastRetrainRun"]
    assert token.startswith(f"{POLICY}-")
    assert status["lastRetrainTrigger"] == "Drift"
    annotations = retrain_request(kube, namespace, PIPELINE, token=token)
    assert annotations["loopwright.dev/train-trigger"] == "Drift"
    reasons = _events(kube, namespace, "DriftConfirmed", "RetrainRequested")
    assert reasons.count("RetrainRequested") == 1
    # One retrain per cause: it is in flight until its run, gate and rollout are over (this
    # pipeline's Dataset does not exist, so its run never starts: it waits for the run).
    assert status["retrain"]["token"] == token
    assert status["retrain"]["phase"] == "AwaitingRun"
    assert condition(obj, "Retraining") == ("True", "AwaitingRun")
    hooks = kube.wait(lambda: received(kube, namespace) or None, timeout=30, what="the webhook POST")
    assert hooks[0]["auth"] == "Bearer hook-token"
    assert hooks[0]["json"]["event"] == "DriftConfirmed"
    assert hooks[0]["json"]["modelVersion"] == f"{MODEL}-v1"
    assert hooks[0]["json"]["status"]["driftShare"] == pytest.approx(2 / 3)

    # 5. Labels for the shifted predictions: v1 gets about half wrong -> PerformanceDegraded, but the
    #    retrain is held back by the cooldown (one request in all).
    assert traffic.feedback() == 1500
    obj = _policy_when(kube, namespace, "PerformanceDegraded", ("True", "PerformanceDropped"))
    perf = obj["status"]["performance"]
    assert perf["labels"] == 2100
    assert perf["value"] < accuracy - 0.15
    assert obj["status"]["lastRetrainRun"] == token
    assert condition(obj, "Retraining") == ("True", "AwaitingRun")  # not the cooldown: the same cause
    pipeline = get(kube, "trainingpipelines", namespace, PIPELINE)
    assert pipeline["metadata"]["annotations"]["loopwright.dev/train-request"] == token
    assert event_reasons(kube, namespace, POLICY).count("RetrainRequested") == 1

    # 6. The operator crashes and comes back: the window starts empty (InsufficientData, verdicts
    #    kept), the consecutive count and the cooldown come from the status: no second retrain.
    operator.scale_down(kill=True)
    # As if it had died between recording the retrain in the status and annotating the pipeline.
    unset = {"loopwright.dev/train-request": None, "loopwright.dev/train-trigger": None}
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "trainingpipelines", PIPELINE,
                                               {"metadata": {"annotations": unset}})
    before = _status(kube, namespace)["lastCheckTime"]
    operator.start()
    status = _checked_after(kube, namespace, before)
    assert status["samples"] == 0
    obj = get(kube, "driftpolicies", namespace, POLICY)
    assert condition(obj, "InsufficientData") == ("True", "TooFewSamples")
    assert condition(obj, "DriftDetected") == ("True", "DriftConfirmed")
    instances, labels = rows(400, shift=SHIFT, seed=15)
    traffic.predict(endpoints, instances, labels)
    assert traffic.feedback() == 400
    status = _checked_after(kube, namespace, _status(kube, namespace)["lastCheckTime"], checks=2)
    assert status["samples"] == 400
    assert status["consecutive"] >= 4  # counted on from before the restart
    assert status["lastRetrainRun"] == token
    assert event_reasons(kube, namespace, POLICY).count("RetrainRequested") == 1
    # The recorded request was completed with the same token (still one run), not a new one.
    annotations = retrain_request(kube, namespace, PIPELINE, token=token)
    assert annotations["loopwright.dev/train-trigger"] == "Drift"

    # 7. Promotion to v2 (trained on shifted data): a new window against the new reference, where the
    #    same shifted traffic is no drift.
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, "deployments", MLD, {
        "spec": {"version": 2, "rollout": {"promote": {"version": 2}}}})
    kube.wait(lambda: (get(kube, "deployments", namespace, MLD).get("status") or {}).get("stable", {})
              .get("version") == 2, timeout=180, what="version 2 promoted")
    pods2 = _pods(kube, namespace, 2)
    obj = _policy_when(kube, namespace, "DriftDetected", ("Unknown", "InsufficientData"))
    assert obj["status"]["modelVersion"] == f"{MODEL}-v2"
    assert obj["status"]["samples"] == 0
    assert obj["status"]["consecutive"] == 0
    # Verdicts against v1 no longer hold; nothing is known about v2 yet.
    assert condition(obj, "DriftDetected") == ("Unknown", "InsufficientData")
    assert condition(obj, "PerformanceDegraded") == ("Unknown", "InsufficientData")
    _events(kube, namespace, "ReferenceChanged")
    instances, labels = rows(800, shift=SHIFT, seed=13)
    traffic.predict(forward_pods(kube, namespace, pods2, forwards), instances, labels)
    assert traffic.feedback() == 800
    status = _checked_after(kube, namespace, _status(kube, namespace)["lastCheckTime"], checks=2)
    assert status["samples"] == 800
    assert status["drifted"] is False
    assert {f["name"]: f["drifted"] for f in status["features"]} == {"a": False, "b": False, "c": False}
    assert status["performance"]["value"] > summaries[2]["metrics"]["accuracy"] - 0.1
    obj = get(kube, "driftpolicies", namespace, POLICY)
    assert condition(obj, "DriftDetected") == ("False", "NoDrift")
    assert condition(obj, "PerformanceDegraded") == ("False", "WithinMaxDrop")
