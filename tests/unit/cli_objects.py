"""Recorded API objects of one model's loop (churn, mid-canary, drift confirmed), for the plugin's tests.

Every object's spec and status are checked against the API models (test_cli_objects_are_valid),
so the plugin is tested on shapes the operator really writes.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from loopwright.api import names

NOW = datetime(2025, 3, 4, 12, 0, 0, tzinfo=UTC)
NAMESPACE = "demo"
DIGEST_NEW = "sha256:" + "a1" * 32
DIGEST_OLD = "sha256:" + "b2" * 32


def ts(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def meta(name: str, minutes_ago: float, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": NAMESPACE,
        "uid": f"uid-{name}",
        "generation": 1,
        "resourceVersion": "100",
        "creationTimestamp": ts(minutes_ago),
        "managedFields": [{"manager": "kubectl"}],
        **extra,
    }


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": 1,
        "lastTransitionTime": ts(5),
    }


DATASET = {
    "apiVersion": names.API_VERSION,
    "kind": "Dataset",
    "metadata": meta("churn", 600),
    "spec": {
        "source": {"uri": "s3://loopwright/data/churn/", "format": "csv"},
        "schema": {
            "label": {"name": "churned", "task": "classification"},
            "columns": [
                {"name": "tenure_months", "type": "numeric"},
                {"name": "monthly_charges", "type": "numeric"},
                {"name": "plan", "type": "categorical"},
            ],
        },
    },
    "status": {
        "observedGeneration": 1,
        "version": DIGEST_NEW,
        "shortVersion": DIGEST_NEW[7:19],
        "rows": 12000,
        "validatedVersion": DIGEST_NEW,
        "profileUri": "s3://loopwright/profiles/x.json",
        "history": [
            {"version": DIGEST_NEW, "rows": 12000, "validated": True, "observedTime": ts(90)},
            {"version": DIGEST_OLD, "rows": 10000, "validated": True, "observedTime": ts(590)},
        ],
        "conditions": [
            cond("Ready", "True", "Validated", "12000 rows"),
            cond("Validated", "True", "Validated", "no anomalies"),
        ],
    },
}


def run(
    number: int, phase: str, trigger: str, digest: str, start: float, end: float | None, **extra: Any
) -> dict[str, Any]:
    out = {
        "id": number,
        "name": f"churn-{number}",
        "trigger": trigger,
        "datasetVersion": digest,
        "phase": phase,
        "startTime": ts(start),
        **extra,
    }
    if end is not None:
        out["completionTime"] = ts(end)
    return out


RUN_PREFIX = "s3://loopwright/models/demo/churn/runs"
PIPELINE = {
    "apiVersion": names.API_VERSION,
    "kind": "TrainingPipeline",
    "metadata": meta("churn", 600, annotations={"argocd.argoproj.io/tracking-id": "churn:x/y"}),
    "spec": {
        "datasetRef": {"name": "churn"},
        "model": {"name": "churn", "estimator": "RandomForestClassifier", "params": {"n_estimators": 50}},
        "metrics": ["accuracy", "f1_macro"],
        "triggers": {"onNewData": True, "cooldown": "10m"},
    },
    "status": {
        "observedGeneration": 1,
        "phase": "Running",
        "lastRun": "churn-5",
        "runCount": 5,
        "runs": [
            run(5, "Running", "Drift", DIGEST_NEW, 1, None, reason="Running"),
            run(
                4,
                "Succeeded",
                "NewData",
                DIGEST_NEW,
                88,
                87,
                modelVersion="churn-v4",
                reason="Registered",
                reportUri=f"{RUN_PREFIX}/churn-4/report.html",
            ),
            run(3, "Succeeded", "Manual", DIGEST_OLD, 500, 499, modelVersion="churn-v3", reason="Registered"),
            run(
                2, "Failed", "Schedule", DIGEST_OLD, 540, 539, reason="BadData", message="label has one class"
            ),
            run(
                1, "Succeeded", "NewData", DIGEST_OLD, 590, 589, modelVersion="churn-v1", reason="Registered"
            ),
        ],
        "handledTrainRequest": "churn-1741089540",
        "conditions": [
            cond("Ready", "True", "Ready", "trains on churn"),
            cond("Training", "True", "RunActive", "run churn-5 is Running"),
        ],
    },
}


def version(
    number: int,
    run_name: str | None,
    digest: str,
    accuracy: float,
    *,
    phase: str,
    checks: list[dict[str, Any]],
    aliases: list[str],
    minutes: float,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": "churn",
        "version": number,
        "artifact": {"uri": f"{RUN_PREFIX}/{run_name}/model.skops", "sha256": "c3" * 32, "format": "skops"},
        "metrics": {"accuracy": accuracy, "f1_macro": round(accuracy - 0.05, 4)},
        "primaryMetric": {"name": "accuracy", "value": accuracy},
        "profileUri": f"{RUN_PREFIX}/{run_name}/profile.json",
    }
    if run_name:
        spec["lineage"] = {
            "dataset": {"name": "churn", "version": digest},
            "pipeline": {"name": "churn", "run": run_name},
            "image": "loopwright/trainer:0.1.0",
            "estimator": "RandomForestClassifier",
            "params": {"n_estimators": "50"},
            "seed": 42,
        }
        spec["reportUri"] = f"{RUN_PREFIX}/{run_name}/report.html"
    return {
        "apiVersion": names.API_VERSION,
        "kind": "ModelVersion",
        "metadata": meta(f"churn-v{number}", minutes),
        "spec": spec,
        "status": {
            "observedGeneration": 1,
            "phase": phase,
            "checks": checks,
            "aliases": aliases,
            "conditions": [cond("Ready", "True" if phase == "Validated" else "False", phase)],
        },
    }


def check(
    name: str, passed: bool, message: str, value: float | None = None, threshold: float | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "passed": passed, "message": message}
    if value is not None:
        out |= {"metric": "accuracy", "value": value, "threshold": threshold}
    return out


ARTIFACT_OK = check("artifact", True, "verified")
VERSIONS = [
    version(
        4,
        "churn-4",
        DIGEST_NEW,
        0.871,
        phase="Validated",
        aliases=[],
        minutes=86,
        checks=[
            ARTIFACT_OK,
            check("min:accuracy", True, "accuracy 0.871 >= 0.75", 0.871, 0.75),
            check(
                "champion",
                True,
                "accuracy 0.871 >= 0.852 (champion churn-v3 0.862, margin 0.01)",
                0.871,
                0.852,
            ),
        ],
    ),
    version(
        3,
        "churn-3",
        DIGEST_OLD,
        0.862,
        phase="Validated",
        aliases=["production"],
        minutes=498,
        checks=[ARTIFACT_OK, check("min:accuracy", True, "accuracy 0.862 >= 0.75", 0.862, 0.75)],
    ),
    version(
        2,
        None,
        DIGEST_OLD,
        0.7,
        phase="Rejected",
        aliases=[],
        minutes=520,
        checks=[ARTIFACT_OK, check("min:accuracy", False, "accuracy 0.7 not >= 0.75", 0.7, 0.75)],
    ),
    version(1, "churn-1", DIGEST_OLD, 0.84, phase="Validated", aliases=[], minutes=588, checks=[ARTIFACT_OK]),
]

DEPLOYMENT = {
    "apiVersion": names.API_VERSION,
    "kind": "Deployment",
    "metadata": meta("churn", 595),
    "spec": {
        "model": "churn",
        "version": "latest",
        "replicas": 2,
        "rollout": {
            "steps": [{"weight": 10, "pause": "5m"}, {"weight": 50}],
            "analysis": {"interval": "1m", "failureLimit": 2, "minRequests": 50},
        },
    },
    "status": {
        "observedGeneration": 1,
        "phase": "Progressing",
        "stable": {
            "version": 3,
            "modelVersion": "churn-v3",
            "replicas": 2,
            "readyReplicas": 2,
            "desiredWeight": 90,
            "weight": 90,
        },
        "canary": {
            "version": 4,
            "modelVersion": "churn-v4",
            "replicas": 1,
            "readyReplicas": 1,
            "step": 0,
            "desiredWeight": 10,
            "weight": 10,
            "stepStartTime": ts(3),
            "weightReachedTime": ts(2),
        },
        "analysis": {
            "lastTime": ts(0.5),
            "failures": 0,
            "checks": 2,
            "verdict": "Pass",
            "results": [
                {
                    "metric": "errorRate",
                    "value": 0.0,
                    "threshold": 0.01,
                    "verdict": "Pass",
                    "message": "0 of 180 canary requests answered 5xx (0.00%, at most 1.00% allowed)",
                },
                {
                    "metric": "latencyP95",
                    "value": 0.004,
                    "threshold": 0.05,
                    "verdict": "Pass",
                    "message": "canary p95 4.0 ms, at most 50.0 ms allowed",
                },
            ],
        },
        "history": [{"version": 3, "event": "Promoted", "time": ts(490), "message": "all steps passed"}],
        "url": "http://churn.demo.svc:80",
        "conditions": [cond("Ready", "True", "Progressing", "canary churn-v4 at 10%")],
    },
}


def feature(
    name: str, method: str, statistic: float | None, threshold: float, drifted: bool
) -> dict[str, Any]:
    return {
        "name": name,
        "method": method,
        "statistic": statistic,
        "threshold": threshold,
        "drifted": drifted,
    }


DRIFT_REPORT = "s3://loopwright/models/demo/churn/drift/churn/20250304T115900Z.html"
POLICY = {
    "apiVersion": names.API_VERSION,
    "kind": "DriftPolicy",
    "metadata": meta("churn", 590),
    "spec": {
        "deploymentRef": {"name": "churn"},
        "interval": "1m",
        "window": "10m",
        "minSamples": 100,
        "consecutive": 2,
        "driftShare": 0.5,
        "actions": {"retrain": {"pipelineRef": {"name": "churn"}}},
    },
    "status": {
        "observedGeneration": 1,
        "lastCheckTime": ts(1),
        "modelVersion": "churn-v3",
        "samples": 1840,
        "features": [
            feature("tenure_months", "psi", 0.3121, 0.2, True),
            feature("monthly_charges", "psi", 0.0213, 0.2, False),
            feature("plan", "chiSquared", 0.0031, 0.05, True),
        ],
        "prediction": {"method": "psi", "statistic": 0.0504, "threshold": 0.2, "drifted": False},
        "driftShare": 0.6667,
        "drifted": True,
        "consecutive": 2,
        "lastRetrainTime": ts(1),
        "lastRetrainRun": "churn-1741089540",
        "lastRetrainTrigger": "Drift",
        "lastRetrainReportUri": DRIFT_REPORT,
        "reportUri": DRIFT_REPORT,
        "reportTime": ts(1),
        "checks": [
            {
                "time": ts(1),
                "modelVersion": "churn-v3",
                "samples": 1840,
                "drifted": True,
                "driftShare": 0.6667,
                "driftedFeatures": ["tenure_months", "plan"],
                "predictionDrifted": False,
                "reportUri": DRIFT_REPORT,
            },
            {
                "time": ts(2),
                "modelVersion": "churn-v3",
                "samples": 1500,
                "drifted": True,
                "driftShare": 0.6667,
                "driftedFeatures": ["tenure_months", "plan"],
                "predictionDrifted": False,
                "reportUri": DRIFT_REPORT.replace("115900", "115800"),
            },
            {
                "time": ts(3),
                "modelVersion": "churn-v3",
                "samples": 1200,
                "drifted": False,
                "driftShare": 0.3333,
                "driftedFeatures": ["plan"],
                "predictionDrifted": False,
                "reportUri": DRIFT_REPORT.replace("115900", "115700"),
            },
            {"time": ts(4), "modelVersion": "churn-v3", "samples": 40},
        ],
        "conditions": [
            cond("Ready", "True", "Checked", "checked 1840 predictions"),
            cond("DriftDetected", "True", "DriftConfirmed", "drift share 0.67 (threshold 0.5)"),
            cond("InsufficientData", "False", "EnoughData", "1840 predictions"),
            cond("PerformanceDegraded", "False", "NotConfigured", "spec.performance is not set"),
        ],
    },
}

OTHER_MODEL = {
    "apiVersion": names.API_VERSION,
    "kind": "Deployment",
    "metadata": meta("fraud", 30),
    "spec": {"model": "fraud"},
    "status": {"phase": "Pending"},
}


def objects() -> dict[names.KindName, list[dict[str, Any]]]:
    """A fresh deep copy of the namespace's objects by kind."""
    return copy.deepcopy(
        {
            names.DATASET: [DATASET],
            names.TRAINING_PIPELINE: [PIPELINE],
            names.MODEL_VERSION: VERSIONS,
            names.DEPLOYMENT: [DEPLOYMENT, OTHER_MODEL],
            names.DRIFT_POLICY: [POLICY],
        }
    )
