"""Reports from a real loop, opened with kubectl loopwright: the training report of a run (by the
trainer in its Job), and the drift report of the check that asked for a retrain (by the operator).

Traffic comes from a pod inside the cluster through the Deployment's Service, shifted away from the
training data, so the DriftPolicy confirms drift and requests a retrain of the pipeline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import kubernetes
import pytest

from e2e import deployment_support as lw
from e2e.drift_support import SCHEMA, csv_bytes, rows

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(900)]

NAME = "churn"
POLICY = "churn-watch"
IMAGE = "loopwright/ml:0.1.0"
_TRAFFIC = r"""
import json, random, sys, time, http.client
host, model, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
rng, sent, deadline = random.Random(7), 0, time.monotonic() + seconds
while time.monotonic() < deadline and sent < 20000:
    rows = [{"a": rng.gauss(2.0, 1), "b": rng.gauss(2.0, 1), "c": rng.gauss(0, 1)} for _ in range(20)]
    try:
        conn = http.client.HTTPConnection(host, 80, timeout=10)
        conn.request("POST", f"/v1/models/{model}:predict", json.dumps({"instances": rows}),
                     {"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()
        sent += len(rows)
    except OSError:
        time.sleep(0.5)
    time.sleep(0.05)
print(sent)
"""


def _plugin(namespace: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "loopwright.cli", "-n", namespace, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _create(
    kube: Any, namespace: str, plural: str, kind: str, spec: dict[str, Any], name: str = NAME
) -> None:
    kube.custom.create_namespaced_custom_object(
        lw.GROUP,
        lw.VERSION,
        namespace,
        plural,
        {"apiVersion": f"{lw.GROUP}/{lw.VERSION}", "kind": kind, "metadata": {"name": name}, "spec": spec},
    )


def _traffic_pod(namespace: str) -> dict[str, Any]:
    restricted = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    host = f"{NAME}.{namespace}.svc.cluster.local"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "shifted-traffic"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "client",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": restricted,
                    "command": ["python", "-c", _TRAFFIC, host, NAME, "120"],
                }
            ],
        },
    }


def test_reports_of_a_real_run_and_of_the_check_that_asked_for_a_retrain(
    kube: Any, crds: Any, s3: Any, namespace: str, operator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in (
        ("AWS_ENDPOINT_URL", s3.endpoint),
        ("AWS_ACCESS_KEY_ID", s3.access_key),
        ("AWS_SECRET_ACCESS_KEY", s3.secret_key),
        ("AWS_DEFAULT_REGION", s3.region),
    ):
        monkeypatch.setenv(key, value)  # the plugin reads reports with the user's S3 credentials
    instances, labels = rows(2000, seed=1)
    key = f"e2e/{namespace}/data.csv"
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=csv_bytes(instances, labels))
    _create(
        kube,
        namespace,
        "datasets",
        "Dataset",
        {
            "source": {"uri": f"s3://{s3.bucket}/{key}"},
            "schema": SCHEMA,
            "validation": {"minRows": 500},
            "refreshInterval": "1h",
        },
    )
    _create(
        kube,
        namespace,
        "trainingpipelines",
        "TrainingPipeline",
        {
            "datasetRef": {"name": NAME},
            "model": {"name": NAME, "estimator": "LogisticRegression"},
            "metrics": ["accuracy"],
            "validation": {"thresholds": [{"metric": "accuracy", "min": 0.7}]},
            "triggers": {"onNewData": True, "cooldown": "1h"},
        },
    )

    def validated() -> bool:
        try:
            return lw.phase(kube, namespace, "modelversions", f"{NAME}-v1") == "Validated"
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            return False

    kube.wait(validated, timeout=400, what="ModelVersion churn-v1 Validated", interval=2)

    page = _plugin(namespace, "report", f"mlp/{NAME}", "-f", "-")
    assert f"<title>Training report: {NAME}-1</title>" in page
    assert "Passes its gates: 2 of 2 checks" in page  # min:accuracy and champion (none yet: Pass)
    assert 'aria-label="confusion matrix"' in page
    mv = lw.get(kube, namespace, "modelversions", f"{NAME}-v1")
    assert mv["spec"]["reportUri"].endswith(f"/runs/{NAME}-1/report.html")

    _create(kube, namespace, "deployments", "Deployment", {"model": NAME, "replicas": 1})
    lw.wait_serving(kube, namespace, NAME, timeout=180)
    _create(
        kube,
        namespace,
        "driftpolicies",
        "DriftPolicy",
        {
            "deploymentRef": {"name": NAME},
            "interval": "3s",
            "window": "15m",
            "minSamples": 300,
            "consecutive": 2,
            "actions": {"retrain": {"pipelineRef": {"name": NAME}, "cooldown": "1h"}},
        },
        name=POLICY,
    )
    kube.core.create_namespaced_pod(namespace, _traffic_pod(namespace))

    def asked() -> dict[str, Any] | None:
        status = lw.get(kube, namespace, "driftpolicies", POLICY).get("status") or {}
        return status if status.get("lastRetrainReportUri") else None

    status = kube.wait(asked, timeout=240, what="a retrain requested by a check with its report", interval=2)
    assert status["lastRetrainTrigger"] == "Drift"
    assert status["checks"][0]["reportUri"] == status["reportUri"]
    page = _plugin(namespace, "report", f"dp/{POLICY}", "--retrain", "-f", "-")
    assert "<title>Drift report: churn-watch</title>" in page
    assert "Drift confirmed: 2 of 3 features drifted" in page
    assert (
        f"requested a retrain of TrainingPipeline {NAME} (request {status['lastRetrainRun']}, trigger Drift)"
        in page
    )
    assert 'aria-label="a: reference against current"' in page

    tree = _plugin(namespace, "get", NAME)
    assert re.search(rf"^Drift {POLICY}:\s+Drift · drifted: a, b$", tree, re.M), tree
    drift = _plugin(namespace, "drift", POLICY)
    assert "LAST CHECKS" in drift
    kube.core.delete_namespaced_pod("shifted-traffic", namespace)
