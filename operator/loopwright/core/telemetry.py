"""What the operator exports about the loop, read from the status of each object (pure).

The status is the truth the operator already publishes; these gauges restate it for Prometheus,
one sample set per object, replaced at each change and dropped with the object. Names follow
Prometheus' conventions: base units, ``_seconds``, ``_ratio``, ``_info`` for constant-1 samples
whose labels carry the value, no ``_total`` (these are gauges, not counters).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

PREFIX = "loopwright_"

METRICS: Mapping[str, str] = {
    # Deployment: versions, canary, analysis
    "deployment_stable_version": "Model version served as stable.",
    "deployment_canary_version": "Model version being rolled out as the canary (absent without one).",
    "deployment_canary_weight_ratio": "Traffic share reached by the canary (0-1).",
    "deployment_canary_desired_weight_ratio": "Traffic share of the canary's current step (0-1).",
    "deployment_phase_info": "1 for the Deployment's phase (Stable, Progressing, Paused, RolledBack, ...).",
    "deployment_ready_replicas": "Ready predictor pods, by role (stable, canary).",
    "deployment_analysis_value": "Last canary analysis value, by metric (canary side).",
    "deployment_analysis_verdict_info": "1 for the last verdict of each analysis metric.",
    "deployment_analysis_failures": "Failed analysis checks of the current rollout.",
    "deployment_rejected_versions": "Versions rolled back or aborted for this Deployment.",
    # ModelVersion: the registry
    "modelversion_info": "1 per ModelVersion, with its phase.",
    "modelversion_alias_info": "1 per alias (e.g. production) a ModelVersion holds.",
    # TrainingPipeline: runs
    "training_last_run_duration_seconds": "Wall time of the latest finished run.",
    "training_last_run_failed": "1 when the latest finished run failed.",
    "training_last_run_timestamp_seconds": "When the latest finished run ended (Unix time).",
    "training_runs_active": "Runs in progress (0 or 1).",
    # DriftPolicy: statistics and verdicts
    "drift_feature_statistic": "Drift statistic of one feature at the last check.",
    "drift_feature_threshold": "Threshold applied to that feature.",
    "drift_feature_drifted": "1 when that feature drifted at the last check.",
    "drift_prediction_statistic": "Prediction drift statistic at the last check.",
    "drift_share_ratio": "Share of features that drifted at the last check.",
    "drift_detected": "1 while drift is confirmed (DriftDetected=True).",
    "drift_samples": "Predictions in the window of the last check.",
    "performance_value": "Live value of the performance metric, from labels sent back.",
    "performance_degraded": "1 while live performance is degraded (PerformanceDegraded=True).",
    # every kind: kstatus
    "resource_stalled": "1 while the object is Stalled (needs a human), by reason.",
    "resource_reconciling": "1 while the object is Reconciling.",
}


class Sample(NamedTuple):
    name: str
    labels: dict[str, str]
    value: float


def samples(kind: str, obj: Mapping[str, Any]) -> list[Sample]:
    """The samples of one object (its namespace and name are on every one)."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    spec = obj.get("spec") or {}
    base = {"namespace": str(meta.get("namespace", "")), "name": str(meta.get("name", ""))}
    out: list[Sample] = []

    def add(name: str, value: float | int | bool | None, **labels: Any) -> None:
        if value is not None:
            named = {**base, **{k: str(v) for k, v in labels.items()}}
            out.append(Sample(PREFIX + name, named, float(value)))

    conditions = {c.get("type"): c for c in status.get("conditions") or ()}
    for type_, metric in (("Stalled", "resource_stalled"), ("Reconciling", "resource_reconciling")):
        cond = conditions.get(type_)
        if cond is not None:
            add(metric, cond.get("status") == "True", kind=kind, reason=cond.get("reason", ""))
    if kind == "Deployment":
        _deployment(add, spec, status)
    elif kind == "ModelVersion":
        add("modelversion_info", 1, model=spec.get("model", ""), version=spec.get("version", ""),
            phase=status.get("phase") or "Pending")
        for alias in status.get("aliases") or ():
            add("modelversion_alias_info", 1, model=spec.get("model", ""), version=spec.get("version", ""),
                alias=alias)
    elif kind == "TrainingPipeline":
        _pipeline(add, spec, status)
    elif kind == "DriftPolicy":
        _drift(add, spec, status, conditions)
    return out


def _deployment(add: Any, spec: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    model = spec.get("model", "")
    stable, canary = status.get("stable") or {}, status.get("canary") or {}
    if stable:
        add("deployment_stable_version", stable.get("version"), model=model)
        add("deployment_ready_replicas", stable.get("readyReplicas", 0), model=model, role="stable")
    if canary:
        add("deployment_canary_version", canary.get("version"), model=model)
        add("deployment_ready_replicas", canary.get("readyReplicas", 0), model=model, role="canary")
    add("deployment_canary_weight_ratio", (canary.get("weight") or 0) / 100, model=model)
    add("deployment_canary_desired_weight_ratio", (canary.get("desiredWeight") or 0) / 100, model=model)
    if status.get("phase"):
        add("deployment_phase_info", 1, model=model, phase=status["phase"])
    analysis = status.get("analysis") or {}
    add("deployment_analysis_failures", analysis.get("failures", 0) if canary else 0, model=model)
    for result in analysis.get("results") or ():
        add("deployment_analysis_value", result.get("value"), model=model, metric=result.get("metric", ""))
        add("deployment_analysis_verdict_info", 1, model=model, metric=result.get("metric", ""),
            verdict=result.get("verdict", ""))
    add("deployment_rejected_versions", len(status.get("rejectedVersions") or ()), model=model)


def _pipeline(add: Any, spec: Mapping[str, Any], status: Mapping[str, Any]) -> None:
    model = (spec.get("model") or {}).get("name", "")
    runs = status.get("runs") or ()
    add("training_runs_active", sum(r.get("phase") in ("Pending", "Running") for r in runs), model=model)
    finished = next((r for r in runs if r.get("phase") in ("Succeeded", "Failed")
                     and r.get("completionTime")), None)
    if finished is None:
        return
    end = _time(finished["completionTime"])
    if finished.get("startTime"):
        add("training_last_run_duration_seconds", (end - _time(finished["startTime"])).total_seconds(),
            model=model)
    add("training_last_run_failed", finished.get("phase") == "Failed", model=model)
    add("training_last_run_timestamp_seconds", end.timestamp(), model=model)


def _drift(add: Any, spec: Mapping[str, Any], status: Mapping[str, Any],
           conditions: Mapping[str, Mapping[str, Any]]) -> None:
    deployment = (spec.get("deploymentRef") or {}).get("name", "")
    for feature in status.get("features") or ():
        labels = {"deployment": deployment, "feature": feature.get("name", ""),
                  "method": feature.get("method", "")}
        add("drift_feature_statistic", feature.get("statistic"), **labels)
        add("drift_feature_threshold", feature.get("threshold"), **labels)
        add("drift_feature_drifted", feature.get("drifted"), **labels)
    prediction = status.get("prediction") or {}
    add("drift_prediction_statistic", prediction.get("statistic"), deployment=deployment,
        method=prediction.get("method", ""))
    add("drift_share_ratio", status.get("driftShare"), deployment=deployment)
    add("drift_samples", status.get("samples"), deployment=deployment)
    for type_, metric in (("DriftDetected", "drift_detected"),
                          ("PerformanceDegraded", "performance_degraded")):
        if type_ in conditions:
            add(metric, conditions[type_].get("status") == "True", deployment=deployment)
    performance = status.get("performance") or {}
    add("performance_value", performance.get("value"), deployment=deployment,
        metric=performance.get("metric", ""))


def _time(value: str) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
