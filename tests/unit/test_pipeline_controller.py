"""The TrainingPipeline reconcile against a fake API: the Job first, then the status; restarts adopt.

The fake keeps pipelines and Jobs in dicts, bumps resourceVersion on every status write and
answers a stale write with 409 like the API server. ``fresh_process`` forgets what the
operator process remembers, as a restart would.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from collections.abc import Iterator, Mapping
from types import SimpleNamespace
from typing import Any

import kubernetes
import pytest

from loopwright.core.training import runs
from loopwright.operator.builders.jobs import JobSettings
from loopwright.operator.controllers import _runtime, pipeline

NS = "ns"
DATASETS = {
    (NS, "data"): [
        {
            "validatedVersion": "sha256:" + "a" * 64,
            "uri": "s3://bucket/data.csv",
            "format": "csv",
            "schema": {
                "label": {"name": "y", "task": "classification"},
                "columns": [{"name": "x", "type": "numeric"}],
            },
            "credentialsSecret": None,
        }
    ]
}


class FakeApi:
    def __init__(self) -> None:
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.fail_status_write = False
        self.refuse_jobs: kubernetes.client.ApiException | None = None
        self._rv = itertools.count(1)

    def add_pipeline(self, name: str, *, uid: str = "uid-1", **triggers: Any) -> dict[str, Any]:
        self.pipelines[name] = {
            "apiVersion": "loopwright.dev/v1alpha1",
            "kind": "TrainingPipeline",
            "metadata": {"name": name, "namespace": NS, "uid": uid, "generation": 1,
                         "resourceVersion": str(next(self._rv))},
            "spec": {
                "datasetRef": {"name": "data"},
                "model": {"name": name, "estimator": "LogisticRegression"},
                "triggers": {"cooldown": "10m", **triggers},
            },
        }
        return copy.deepcopy(self.pipelines[name])

    def get(self, kind: Any, *, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"GET {name}")
        obj = self.pipelines.get(name)
        return copy.deepcopy(obj) if obj is not None else None

    def patch_status(self, kind: Any, obj: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        self.calls.append(f"PATCH {name}")
        stored = self.pipelines[name]
        if self.fail_status_write:
            raise kubernetes.client.ApiException(status=500, reason="the operator died here")
        if obj["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]:
            raise _runtime.ConflictError(name)
        current = stored.setdefault("status", {})
        for key, value in status.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = copy.deepcopy(value)
        stored["metadata"]["resourceVersion"] = str(next(self._rv))
        return copy.deepcopy(stored)

    def create_job(self, manifest: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        name = manifest["metadata"]["name"]
        self.calls.append(f"POST {name}")
        if self.refuse_jobs is not None:
            raise self.refuse_jobs
        if name in self.jobs:
            return copy.deepcopy(self.jobs[name]), False
        self.jobs[name] = copy.deepcopy(dict(manifest))
        return copy.deepcopy(self.jobs[name]), True

    def read_job(self, *, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"GET job {name}")
        job = self.jobs.get(name)
        return copy.deepcopy(job) if job is not None else None

    def delete_job(self, *, namespace: str, name: str) -> None:
        self.jobs.pop(name, None)

    def post_event(self, obj: Mapping[str, Any], *, type_: str, reason: str, message: str) -> None:
        self.calls.append(f"EVENT {reason}")

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.pipelines[name].get("status") or {})


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeApi]:
    fake = FakeApi()
    for attr in ("get", "patch_status", "create_job", "read_job", "delete_job", "post_event"):
        monkeypatch.setattr(_runtime, attr, getattr(fake, attr))
    monkeypatch.setattr(_runtime, "settings", lambda: SimpleNamespace(artifact_bucket="bucket"))
    monkeypatch.setattr(
        _runtime,
        "job_settings",
        lambda *, training=False: JobSettings(image="loopwright/trainer:test", s3_endpoint=None,
                                              credentials_secret=None, suspend=True),
    )
    monkeypatch.setattr(pipeline, "_EVENTS", _Inline())
    fresh_process()
    yield fake
    fresh_process()


class _Inline:
    """The event threads, run in the caller's thread so a test sees the Events at once."""

    def submit(self, fn: Any, /, *args: Any) -> None:
        fn(*args)


def fresh_process() -> None:
    pipeline._job_phases.clear()
    pipeline._champions.clear()


def test_a_new_pipeline_gets_its_job_before_the_status_write(api: FakeApi) -> None:
    body = api.add_pipeline("p")
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, body=body)
    assert api.calls == ["POST p-1", "PATCH p", "EVENT RunStarted"]
    status = api.status("p")
    assert status["runCount"] == 1
    assert [r["name"] for r in status["runs"]] == ["p-1"]
    assert status["runs"][0]["phase"] == "Pending"
    assert status["trainedDatasetVersion"] == DATASETS[(NS, "data")][0]["validatedVersion"]
    record = runs.job_record(api.jobs["p-1"])
    assert record is not None
    assert record.run.to_wire() == status["runs"][0]
    assert runs.owned_by(api.jobs["p-1"], uid="uid-1")


def test_status_write_lost_after_the_job_then_a_restart_adopts_the_job(api: FakeApi) -> None:
    body = api.add_pipeline("p")
    api.fail_status_write = True
    with pytest.raises(kubernetes.client.ApiException):
        pipeline.sync(namespace=NS, name="p", datasets=DATASETS, body=body)
    assert list(api.jobs) == ["p-1"]
    assert "runCount" not in api.status("p")

    fresh_process()
    api.fail_status_write = False
    api.calls.clear()
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, body=api.add_pipeline("p"))
    assert list(api.jobs) == ["p-1"]
    status = api.status("p")
    assert status["runCount"] == 1
    assert [r["name"] for r in status["runs"]] == ["p-1"]
    assert api.calls[:2] == ["POST p-1", "PATCH p"]


def test_a_lost_run_is_recorded_from_its_job_event_even_when_nothing_would_start(api: FakeApi) -> None:
    api.add_pipeline("p")
    api.pipelines["p"]["metadata"]["annotations"] = {"loopwright.dev/train-request": "r1"}
    api.fail_status_write = True
    with pytest.raises(kubernetes.client.ApiException):
        pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    handled = runs.job_record(api.jobs["p-1"])
    assert handled is not None

    assert handled.handled_request == "r1"

    # Meanwhile suspended and asked again: no run would start, yet the Job exists and must be
    # the recorded run, having handled the request it was started for (r2 waits its turn).
    fresh_process()
    api.fail_status_write = False
    api.pipelines["p"]["spec"]["triggers"]["suspend"] = True
    api.pipelines["p"]["metadata"]["annotations"] = {"loopwright.dev/train-request": "r2"}
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, job=api.jobs["p-1"])
    status = api.status("p")
    assert status["runCount"] == 1
    kept = ("id", "name", "trigger", "datasetVersion", "startTime")
    assert {k: status["runs"][0][k] for k in kept} == {k: handled.run.to_wire()[k] for k in kept}
    assert status["runs"][0]["reason"] == "JobSuspended"  # and followed: the Job was read
    assert status["handledTrainRequest"] == "r1"
    assert status["runs"][0]["trigger"] == "Manual"
    assert list(api.jobs) == ["p-1"]


def test_a_job_event_of_a_recorded_run_changes_nothing(api: FakeApi) -> None:
    api.add_pipeline("p")
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    before = api.status("p")
    api.calls.clear()
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, job=api.jobs["p-1"])
    assert api.status("p") == before
    assert not any(call.startswith(("POST", "PATCH")) for call in api.calls)


def test_a_stale_body_adopts_the_job_instead_of_a_second_run(api: FakeApi) -> None:
    stale = api.add_pipeline("p")
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, body=stale)
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, body=stale)
    assert list(api.jobs) == ["p-1"]
    assert api.status("p")["runCount"] == 1


def test_a_job_of_a_deleted_namesake_is_never_adopted(api: FakeApi) -> None:
    api.add_pipeline("p", uid="old")
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    del api.pipelines["p"]
    body = api.add_pipeline("p", uid="new")
    with pytest.raises(RuntimeError, match="another owner"):
        pipeline.sync(namespace=NS, name="p", datasets=DATASETS, body=body)
    assert "runCount" not in api.status("p")
    with pytest.raises(RuntimeError, match="another owner"):
        pipeline.sync(namespace=NS, name="p", datasets=DATASETS, job=api.jobs["p-1"])
    assert "runCount" not in api.status("p")
    assert runs.owned_by(api.jobs["p-1"], uid="old")


def test_an_event_that_cannot_be_posted_is_logged_not_raised(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_: Any, **__: Any) -> None:
        raise ConnectionError("API server unreachable")

    monkeypatch.setattr(_runtime, "post_event", refuse)
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, body=api.add_pipeline("p"))
    assert api.status("p")["runCount"] == 1
    assert "cannot post events on ns/p" in caplog.text


def test_a_job_the_api_refuses_is_a_condition_and_one_event_then_starts_once_allowed(api: FakeApi) -> None:
    api.add_pipeline("p")
    quota = kubernetes.client.ApiException(status=403, reason="Forbidden")
    quota.body = ('{"kind":"Status","message":"jobs.batch \\"p-1\\" is forbidden: exceeded quota: '
                  'jobs, requested: count/jobs.batch=1, used: count/jobs.batch=5, '
                  'limited: count/jobs.batch=5"}')
    api.refuse_jobs = quota
    for _ in range(2):
        pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    ready = next(c for c in api.status("p")["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "JobRefused")
    assert ready["message"].startswith('cannot create Job p-1: jobs.batch "p-1" is forbidden: exceeded quota')
    assert api.calls.count("EVENT JobRefused") == 1
    assert api.status("p")["runCount"] == 0
    assert not api.jobs

    api.refuse_jobs = None
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    assert list(api.jobs) == ["p-1"]
    ready = next(c for c in api.status("p")["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Ready")


def test_a_job_create_that_fails_otherwise_is_retried_as_an_error(api: FakeApi) -> None:
    api.add_pipeline("p")
    api.refuse_jobs = kubernetes.client.ApiException(status=503, reason="Service Unavailable")
    with pytest.raises(kubernetes.client.ApiException):
        pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    assert "conditions" not in api.status("p")


def test_the_run_is_given_its_gates_and_the_champion_for_its_report(api: FakeApi) -> None:
    spec = {"model": "p", "version": 3, "metrics": {"accuracy": 0.9}}
    asyncio.run(pipeline.champion_event(type="MODIFIED", namespace=NS, name="p-v3", spec=spec,
                                        status={"aliases": ["production"]}))
    asyncio.run(pipeline.champion_event(type="ADDED", namespace=NS, name="p-v4", spec={**spec, "version": 4},
                                        status={}))
    body = api.add_pipeline("p")
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, body=body)
    command = api.jobs["p-1"]["spec"]["template"]["spec"]["containers"][0]["command"]
    gates = json.loads(command[command.index("--gates-json") + 1])
    assert gates["model"] == "p"
    assert gates["champion"] == {"name": "p-v3", "version": 3, "metrics": {"accuracy": 0.9}}
    assert gates["validation"]["champion"]["alias"] == "production"
    # The alias moves on: the old champion is forgotten, a deleted one too.
    asyncio.run(pipeline.champion_event(type="MODIFIED", namespace=NS, name="p-v3", spec=spec, status={}))
    assert (NS, "p", "production") not in pipeline._champions


SEARCH = {"strategy": "grid", "space": {"C": {"values": [0.1, 1.0, 10.0]}}, "parallelism": 2}


def _searching(api: FakeApi, results: dict[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline with a 3-trial grid whose search Job ran; ``results`` are the trials' files."""
    api.add_pipeline("p")
    api.pipelines["p"]["spec"]["search"] = SEARCH
    api.pipelines["p"]["spec"]["metrics"] = ["f1_macro"]

    def get_bytes(uri: str, **_: Any) -> bytes:
        index = int(uri.rsplit("/", 1)[1].removesuffix(".json"))
        if index not in results:
            raise pipeline.storage.ObjectNotFoundError(uri)
        return json.dumps(results[index]).encode()

    monkeypatch.setattr(pipeline.storage, "get_bytes", get_bytes)
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)


def _finish(api: FakeApi, name: str, *, failed: bool = False) -> None:
    condition = {"type": "Failed" if failed else "Complete", "status": "True",
                 "lastTransitionTime": "2026-03-02T10:00:00Z"}
    _job_changed(api, name, {"conditions": [condition], "succeeded": 2})


def _job_changed(api: FakeApi, name: str, status: dict[str, Any]) -> None:
    """The Job's status moved on, and its watch event was seen (as job_event notes it)."""
    api.jobs[name]["status"] = status
    api.jobs[name]["spec"]["suspend"] = False  # the fixture creates Jobs suspended
    pipeline._job_phases[(NS, name)] = str(runs.job_outcome(api.jobs[name]).phase)


def test_a_search_runs_its_trials_as_one_indexed_job_then_trains_the_best(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = {0: {"phase": "Succeeded", "score": 0.7}, 1: {"phase": "Succeeded", "score": 0.8},
               2: {"phase": "Failed", "error": "BadParameters", "message": "C too large"}}
    _searching(api, results, monkeypatch)
    assert list(api.jobs) == ["p-1-search"]
    job = api.jobs["p-1-search"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 3, 2)
    run = api.status("p")["runs"][0]
    assert (run["phase"], run["reason"], run["search"]) == (
        "Pending", "Searching", {"job": "p-1-search", "metric": "f1_macro", "trials": []})

    _job_changed(api, "p-1-search", {"active": 2, "succeeded": 1})
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, job=api.jobs["p-1-search"])
    run = api.status("p")["runs"][0]
    assert (run["phase"], run["message"]) == ("Running", "searching: 1 of 3 trials done, 2 running")

    _finish(api, "p-1-search", failed=True)  # one index failed: the Job fails, the run goes on
    api.calls.clear()
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, job=api.jobs["p-1-search"])
    assert sorted(api.jobs) == ["p-1", "p-1-search"]
    run = api.status("p")["runs"][0]
    assert (run["phase"], run["reason"]) == ("Running", "Training")
    assert run["search"]["best"] == 1
    assert [(t["index"], t["phase"], t.get("score")) for t in run["search"]["trials"]] == [
        (0, "Succeeded", 0.7), (1, "Succeeded", 0.8), (2, "Failed", None)]
    assert run["search"]["trials"][1]["params"] == {"C": 1.0}
    assert "best of 2/3 trials: #1 f1_macro=0.8" in run["message"]
    command = api.jobs["p-1"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "loopwright-trainer"
    assert json.loads(command[command.index("--params-json") + 1]) == {"C": 1.0}
    assert json.loads(command[command.index("--search-json") + 1])["best"] == 1
    assert "EVENT SearchFinished" in api.calls

    _finish(api, "p-1")  # the training Job as usual (registration is another test's business)
    api.pipelines["p"]["status"]["runs"][0]["phase"] = "Succeeded"
    api.pipelines["p"]["spec"]["historyLimit"] = 1
    api.pipelines["p"]["metadata"]["annotations"] = {"loopwright.dev/train-request": "again"}
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    assert sorted(api.jobs) == ["p-2-search"]  # pruning took the run's two Jobs


def test_a_search_whose_trials_all_failed_fails_the_run(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    failed = {"phase": "Failed", "error": "BadParameters", "message": "C must be > 0"}
    _searching(api, {0: failed}, monkeypatch)
    _finish(api, "p-1-search", failed=True)
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, job=api.jobs["p-1-search"])
    run = api.status("p")["runs"][0]
    assert (run["phase"], run["reason"]) == ("Failed", "AllTrialsFailed")
    assert run["message"] == "all 3 trials failed (trial 0: C must be > 0)"
    assert "best" not in run["search"]
    assert list(api.jobs) == ["p-1-search"]


def test_a_restart_after_the_search_adopts_the_training_job(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    _searching(api, {i: {"phase": "Succeeded", "score": 0.5 + i / 10} for i in range(3)}, monkeypatch)
    _finish(api, "p-1-search")
    api.fail_status_write = True
    with pytest.raises(kubernetes.client.ApiException):
        pipeline.sync(namespace=NS, name="p", datasets=DATASETS, job=api.jobs["p-1-search"])
    assert "p-1" in api.jobs
    fresh_process()
    api.fail_status_write = False
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    run = api.status("p")["runs"][0]
    assert (run["reason"], run["search"]["best"]) == ("Training", 2)
    assert sorted(api.jobs) == ["p-1", "p-1-search"]
def _identical_version(api: FakeApi, monkeypatch: pytest.MonkeyPatch, *, digest: str) -> None:
    version = {"metadata": {"name": "p-v2", "labels": {"loopwright.dev/model": "p"}},
               "spec": {"model": "p", "version": 2, "lineage": {"inputsDigest": digest}}}
    monkeypatch.setattr(pipeline.kube, "list_objects", lambda *_, **__: [version])


def test_a_drift_run_on_the_inputs_of_an_existing_version_ends_without_a_job(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.add_pipeline("p")
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    first = api.status("p")["runs"][0]
    assert first["inputsDigest"].startswith("sha256:")
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
    api.jobs["p-1"]["status"] = {"conditions": [failed]}
    pipeline._job_phases.pop((NS, "p-1"))  # as the Job's watch event does
    monkeypatch.setattr(_runtime, "job_pods", lambda job: [])
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, job=api.jobs["p-1"])
    _identical_version(api, monkeypatch, digest=first["inputsDigest"])
    api.pipelines["p"]["metadata"]["annotations"] = {"loopwright.dev/train-request": "watch-1",
                                                     "loopwright.dev/train-trigger": "Drift"}
    api.calls.clear()
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    status = api.status("p")
    run = status["runs"][0]
    assert (run["name"], run["phase"], run["reason"], run.get("request")) == ("p-2", "Skipped", "NoNewData",
                                                                           "watch-1")
    assert run["message"].startswith("no new data since version 2 (p-v2 was trained on the same dataset")
    assert "new labelled data" in run["message"]
    assert "p-2" not in api.jobs  # nothing trained, nothing registered
    assert status["handledTrainRequest"] == "watch-1"
    assert "EVENT NoNewData" in api.calls
    training = next(c for c in status["conditions"] if c["type"] == "Training")
    assert training["status"] == "False"
    # A person asking for the same run still gets it: only Drift and Performance need something new.
    api.pipelines["p"]["metadata"]["annotations"] = {"loopwright.dev/train-request": "manual-1"}
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    assert "p-3" in api.jobs
    assert api.status("p")["runs"][0]["request"] == "manual-1"


def test_a_drift_run_on_new_inputs_trains(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    _identical_version(api, monkeypatch, digest="sha256:" + "0" * 64)
    api.add_pipeline("p")
    api.pipelines["p"]["metadata"]["annotations"] = {"loopwright.dev/train-request": "watch-1",
                                                     "loopwright.dev/train-trigger": "Drift"}
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    assert list(api.jobs) == ["p-1"]
    assert api.status("p")["runs"][0]["trigger"] == "Drift"


def test_registration_never_reuses_a_version_number(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[dict[str, Any]] = []
    monkeypatch.setattr(pipeline.kube, "list_objects", lambda *_, **__: [
        {"metadata": {"name": "p-v1", "labels": {}}, "spec": {"version": 1}}])
    monkeypatch.setattr(pipeline.kube, "create_object", lambda kind, *, namespace, body: created.append(body))
    monkeypatch.setattr(pipeline.storage, "get_bytes", lambda uri: json.dumps({
        "artifacts": {"model": {"uri": "s3://bucket/m.skops", "sha256": "a" * 64}},
        "dataset": {"digest": "sha256:" + "c" * 64}, "metrics": {"accuracy": 0.9}}).encode())
    monkeypatch.setattr(_runtime, "settings", lambda: SimpleNamespace(artifact_bucket="bucket",
                                                                      trainer_image="trainer:test"))
    api.add_pipeline("p")
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    api.pipelines["p"]["status"]["lastVersion"] = 4  # versions 2 to 4 were deleted since
    api.jobs["p-1"]["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    pipeline._job_phases.pop((NS, "p-1"))
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, job=api.jobs["p-1"])
    assert [c["metadata"]["name"] for c in created] == ["p-v5"]
    assert created[0]["spec"]["lineage"]["inputsDigest"] == api.status("p")["runs"][0]["inputsDigest"]
    assert api.status("p")["lastVersion"] == 5
    assert api.status("p")["runs"][0]["modelVersion"] == "p-v5"
def _finish_job(api: FakeApi, name: str) -> None:
    api.jobs[name]["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    pipeline._job_phases[(NS, name)] = "Succeeded"  # what its watch event records


def test_a_finished_run_waits_for_s3_to_come_back_and_fails_only_on_a_missing_result(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pipeline.kube, "list_objects", lambda *a, **k: [])
    body = api.add_pipeline("p")
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS, body=body)
    _finish_job(api, "p-1")

    def unreachable(uri: str, **_: Any) -> bytes:
        raise pipeline.storage.StorageError(f"cannot read {uri}: Could not connect to the endpoint URL")

    monkeypatch.setattr(pipeline.storage, "get_bytes", unreachable)
    with pytest.raises(pipeline.storage.StorageError):  # the caller retries it (CLOCK.later)
        pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    assert api.status("p")["runs"][0]["phase"] != "Failed"

    def missing(uri: str, **_: Any) -> bytes:
        raise pipeline.storage.ObjectNotFoundError(f"{uri}: no such object")

    monkeypatch.setattr(pipeline.storage, "get_bytes", missing)
    pipeline.sync(namespace=NS, name="p", datasets=DATASETS)
    run = api.status("p")["runs"][0]
    assert (run["phase"], run["reason"]) == ("Failed", "ResultUnreadable")
