"""The Dataset, ModelVersion and AnalysisTemplate controllers on the runtime, against the shared fake API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fake_api import NS, FakeApi
from loopwright import storage
from loopwright.api.kinds import ANALYSIS_TEMPLATE, DATASET, MODEL_VERSION
from loopwright.operator.controllers import analysistemplate, dataset, modelversion
from loopwright.operator.runtime.client import EVENTS, JOBS, PODS, resource

SHA = "a" * 64


def _conditions(obj: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    assert obj is not None
    return {c["type"]: (c["status"], c["reason"]) for c in obj["status"]["conditions"]}


def _events(api: FakeApi) -> list[tuple[str, str, int]]:
    return sorted((e["type"], e["reason"], e["count"]) for e in api.all(EVENTS).values())


def _finish(api: FakeApi, job: str, *, failed: bool = False, message: str = "") -> None:
    """The Job's controller and kubelet: the Job ends, its pod left a termination message."""
    stored = api.objects[("apis/batch/v1/jobs", NS, job)]
    condition = {"type": "Failed" if failed else "Complete", "status": "True", "reason": "PodFailurePolicy",
                 "message": "exit code 3" if failed else ""}
    stored["status"] = {"conditions": [condition]}
    terminated = {"exitCode": 3 if failed else 0, "message": message, "finishedAt": "2026-01-01T00:00:00Z"}
    api.add(PODS, {"metadata": {"name": f"{job}-pod", "labels": {
        "batch.kubernetes.io/controller-uid": stored["metadata"]["uid"]}},
        "status": {"containerStatuses": [{"name": "main", "state": {"terminated": terminated}}]}})


# -- ModelVersion ------------------------------------------------------------------------------------

MV = resource(MODEL_VERSION)


def _model_version(api: FakeApi) -> None:
    api.add(MV, {"metadata": {"name": "iris-v1"}, "spec": {
        "model": "iris", "version": 1,
        "artifact": {"uri": "s3://bkt/m.skops", "sha256": SHA, "format": "skops"},
        "metrics": {"accuracy": 0.9}}})


def _reconcile_mv(api: FakeApi) -> None:
    api.run(modelversion.ModelVersions().reconcile(api.context(), (NS, "iris-v1")))


def test_a_model_version_is_pending_while_its_verification_job_runs_then_validated() -> None:
    api = FakeApi()
    _model_version(api)
    _reconcile_mv(api)
    assert list(api.all(JOBS)) == ["iris-v1-verify"]
    assert api.obj(MV, "iris-v1")["status"]["phase"] == "Pending"  # type: ignore[index]
    assert _conditions(api.obj(MV, "iris-v1"))["Ready"] == ("False", "Verifying")
    _reconcile_mv(api)  # the Job is adopted, not created twice
    assert list(api.all(JOBS)) == ["iris-v1-verify"]

    _finish(api, "iris-v1-verify", message=json.dumps({"verified": True, "message": "loads"}))
    _reconcile_mv(api)
    validated = api.obj(MV, "iris-v1")
    assert validated is not None
    assert validated["status"]["phase"] == "Validated"
    assert _conditions(validated)["ArtifactVerified"] == ("True", "Verified")
    assert _events(api) == [("Normal", "Validated", 1)]
    api.calls.clear()
    _reconcile_mv(api)  # final: read, nothing more
    assert api.calls == ["GET modelversions/iris-v1"]


def test_an_artifact_the_verifier_refuses_rejects_the_version() -> None:
    api = FakeApi()
    _model_version(api)
    _reconcile_mv(api)
    refusal = json.dumps({"error": "DigestMismatch", "message": "sha"})
    _finish(api, "iris-v1-verify", failed=True, message=refusal)
    _reconcile_mv(api)
    rejected = api.obj(MV, "iris-v1")
    assert rejected is not None
    assert rejected["status"]["phase"] == "Rejected"
    assert _conditions(rejected)["ArtifactVerified"] == ("False", "ArtifactRejected")
    assert _events(api) == [("Warning", "Rejected", 1)]


# -- Dataset -----------------------------------------------------------------------------------------

DS = resource(DATASET)
SCHEMA = {"label": {"name": "y", "task": "classification"}, "columns": [{"name": "x", "type": "numeric"}]}


def _dataset(api: FakeApi, **source: Any) -> None:
    api.add(DS, {"metadata": {"name": "data"}, "spec": {
        "source": {"uri": "s3://bkt/d.csv", **source}, "schema": SCHEMA, "refreshInterval": "2m"}})


def _reconcile_ds(api: FakeApi) -> float | None:
    return api.run(dataset.Datasets().reconcile(api.context(), (NS, "data"))).requeue_after


def test_a_dataset_is_profiled_once_per_fingerprint_and_looked_at_every_refresh_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(storage, "fingerprint", lambda uri, credentials=None: "etag-1")
    api = FakeApi()
    _dataset(api)
    assert _reconcile_ds(api) == 120
    (job,) = api.all(JOBS)
    assert _conditions(api.obj(DS, "data"))["Ready"] == ("False", "Profiling")
    assert _reconcile_ds(api) == 120
    assert list(api.all(JOBS)) == [job]
    assert _events(api) == [("Normal", "Profiling", 1)]

    result = {"digest": "sha256:" + SHA, "valid": True, "rows": 10, "anomalies": []}
    monkeypatch.setattr(storage, "get_bytes", lambda uri, sha256=None: json.dumps(result).encode())
    _finish(api, job)
    _reconcile_ds(api)
    done = api.obj(DS, "data")
    assert done is not None
    assert done["status"]["validatedVersion"] == "sha256:" + SHA
    assert _conditions(done)["Ready"] == ("True", "Validated")
    assert ("Normal", "NewVersion", 1) in _events(api)


def test_a_missing_secret_is_one_warning_however_often_it_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "fingerprint", lambda uri, credentials=None: "etag-1")
    api = FakeApi()
    _dataset(api, credentialsSecretRef={"name": "src"})
    for _ in range(3):
        _reconcile_ds(api)
    assert _conditions(api.obj(DS, "data"))["Ready"] == ("False", "CredentialsNotFound")
    assert _events(api) == [("Warning", "CredentialsNotFound", 1)]
    assert not api.all(JOBS)


def test_an_invalid_dataset_says_so_and_waits_for_a_new_spec() -> None:
    api = FakeApi()
    api.add(DS, {"metadata": {"name": "data"}, "spec": {"source": {"uri": "s3://bkt/d.csv"}}})
    assert _reconcile_ds(api) is None
    assert _conditions(api.obj(DS, "data"))["Ready"] == ("False", "InvalidSpec")


# -- AnalysisTemplate --------------------------------------------------------------------------------


def test_a_template_publishes_ready_once() -> None:
    api = FakeApi()
    res = resource(ANALYSIS_TEMPLATE)
    check = {"name": "errors", "address": "http://prom:9090", "query": "up", "max": 1.0}
    api.add(res, {"metadata": {"name": "t"}, "spec": {"prometheus": [check]}})
    for _ in range(2):
        api.run(analysistemplate.AnalysisTemplates().reconcile(api.context(), (NS, "t")))
    template = api.obj(res, "t")
    assert template is not None
    assert template["status"]["checks"] == 1
    assert _conditions(template)["Ready"] == ("True", "Valid")
    assert api.calls.count("PATCH analysistemplates/t/status") == 1
