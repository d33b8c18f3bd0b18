"""Hyperparameter search on kind: the trials as one Indexed Job, the best trained and gated.

Two pipelines on the same Dataset: an allow-listed estimator with a random search, and the
sample team pipeline (manifests/samples/byo) with a grid in which one point is invalid for
scikit-learn, so its trial fails (its index only, ``FailIndex``) and the run goes on with the
others. Each run's status and report carry every trial; the ModelVersion has the best one's
parameters.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest

from conftest import REPO, S3, Kube
from e2e import byo_support as byo
from e2e.test_training import Loop

sys.path.insert(0, str(REPO / "tests" / "demo"))
import churn

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1200)]
RUN_TIMEOUT = 480


@pytest.fixture
def loop(kube: Kube, namespace: str, s3: S3, crds: Any, operator: Any) -> Loop:
    return Loop(kube, namespace, s3, operator)


def _dataset(loop: Loop) -> None:
    uri = loop.upload("churn/data.csv", churn.csv_bytes(*churn.rows(1500, seed=2)))
    loop.create("datasets", {"apiVersion": "loopwright.dev/v1alpha1", "kind": "Dataset",
                             "metadata": {"name": "churn"},
                             "spec": {"source": {"uri": uri}, "schema": byo.SCHEMA,
                                      "validation": {"minRows": 100}, "refreshInterval": "3s"}})
    loop.wait_dataset("churn", validated=True)


def _report(s3: S3, run: dict[str, Any]) -> dict[str, Any]:
    bucket, key = run["reportUri"].removeprefix("s3://").split("/", 1)
    body = s3.client().get_object(Bucket=bucket, Key=key.removesuffix(".html") + ".json")["Body"].read()
    return dict(json.loads(body))


def test_a_random_search_runs_its_trials_in_parallel_pods_then_trains_the_best(
    loop: Loop, kube: Kube, namespace: str, s3: S3
) -> None:
    _dataset(loop)
    loop.create("trainingpipelines", {
        "apiVersion": "loopwright.dev/v1alpha1", "kind": "TrainingPipeline", "metadata": {"name": "lr"},
        "spec": {"datasetRef": {"name": "churn"},
                 "model": {"name": "lr", "estimator": "LogisticRegression", "params": {"max_iter": 300}},
                 "search": {"strategy": "random", "trials": 4, "parallelism": 4, "seed": 3,
                            "space": {"C": {"min": 0.001, "max": 100.0, "log": True},
                                      "class_weight": {"values": [None, "balanced"]}}},
                 "metrics": ["f1_macro", "accuracy"],
                 "validation": {"thresholds": [{"metric": "accuracy", "min": 0.6}]},
                 "triggers": {"cooldown": "1s"}}})
    run = loop.wait_run("lr", 1, timeout=RUN_TIMEOUT)
    assert run["phase"] == "Succeeded", run
    job = kube.batch.read_namespaced_job("lr-1-search", namespace)
    assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == ("Indexed", 4, 4)
    assert job.status.succeeded == 4
    search = run["search"]
    assert search["metric"] == "f1_macro"
    assert [t["phase"] for t in search["trials"]] == ["Succeeded"] * 4
    best = next(t for t in search["trials"] if t["index"] == search["best"])
    assert best["score"] == max(t["score"] for t in search["trials"])
    mv = loop.wait_model(run["modelVersion"])
    assert json.loads(mv["spec"]["lineage"]["params"]["C"]) == best["params"]["C"]
    assert mv["status"]["phase"] == "Validated", mv["status"]
    assert _report(s3, run)["search"]["best"] == search["best"]
    assert any(reason == "SearchFinished" for _, reason, _ in loop.events("lr"))


def test_a_failed_trial_fails_only_itself_in_a_teams_grid(
    loop: Loop, kube: Kube, namespace: str, s3: S3
) -> None:
    image = byo.team_image()
    _dataset(loop)
    grid = {"strategy": "grid", "parallelism": 2, "space": {"clf__C": {"values": [0.1, 10.0, -1.0]}}}
    loop.create("trainingpipelines", byo.pipeline("team", "churn", image=image, search=grid))
    run = loop.wait_run("team", 1, timeout=RUN_TIMEOUT)
    assert run["phase"] == "Succeeded", run
    job = kube.batch.read_namespaced_job("team-1-search", namespace)
    assert job.spec.template.spec.containers[0].image == image
    assert job.spec.backoff_limit_per_index == 0
    assert job.status.failed_indexes == "2"
    trials = run["search"]["trials"]
    assert [(t["index"], t["phase"]) for t in trials] == [(0, "Succeeded"), (1, "Succeeded"), (2, "Failed")]
    assert "'C' parameter" in trials[2]["message"], trials[2]
    assert run["search"]["best"] in (0, 1)
    mv = loop.wait_model(run["modelVersion"])
    assert mv["status"]["phase"] == "Validated", mv["status"]
    assert mv["spec"]["image"] == image
    best = trials[run["search"]["best"]]["params"]["clf__C"]
    assert json.loads(mv["spec"]["lineage"]["params"]["clf__C"]) == best
    report = _report(s3, run)
    assert [t["phase"] for t in report["search"]["trials"]] == ["Succeeded", "Succeeded", "Failed"]
