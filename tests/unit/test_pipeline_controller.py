"""The TrainingPipeline reconcile against the shared fake API: the Job first, then the status; restarts adopt.

The fake bumps resourceVersion on every write and answers a stale write with 409 like the API
server. ``fresh_process`` forgets what the operator process remembers, as a restart would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from fake_api import NS, FakeApi
from loopwright import storage
from loopwright.api.kinds import MODEL_VERSION, TRAINING_PIPELINE
from loopwright.core.training import runs
from loopwright.operator.controllers import pipeline
from loopwright.operator.controllers.pipeline import lifecycle as pipeline_runs
from loopwright.operator.runtime.client import EVENTS, JOBS, ApiError, resource
from loopwright.operator.runtime.queue import Result

PIPELINES = resource(TRAINING_PIPELINE)
MODEL_VERSIONS = resource(MODEL_VERSION)
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


def fresh_process() -> None:
    for key in list(pipeline_runs.job_phases):
        pipeline_runs.job_phases.pop(key)
    pipeline_runs.champions.clear()


@pytest.fixture
def api() -> Iterator[FakeApi]:
    fresh_process()
    yield FakeApi()
    fresh_process()


def _add(api: FakeApi, name: str = "p", *, uid: str = "uid-1", **triggers: Any) -> dict[str, Any]:
    return api.add(PIPELINES, {"metadata": {"name": name, "uid": uid}, "spec": {
        "datasetRef": {"name": "data"},
        "model": {"name": name, "estimator": "LogisticRegression"},
        "triggers": {"cooldown": "10m", **triggers}}})


def _reconcile(api: FakeApi, *, body: dict[str, Any] | None = None,
               job: dict[str, Any] | None = None) -> Result:
    controller = pipeline.Pipelines()
    controller.datasets = DATASETS
    if body is not None:
        controller.bodies[(NS, "p")] = body
    if job is not None:
        controller.jobs[(NS, "p")] = job
    result: Result = api.run(controller.reconcile(api.context(), (NS, "p")))
    return result


def _status(api: FakeApi) -> dict[str, Any]:
    return dict((api.obj(PIPELINES, "p") or {}).get("status") or {})


def _stored(api: FakeApi) -> dict[str, Any]:
    return api.objects[(f"apis/{PIPELINES.group}/{PIPELINES.version}/{PIPELINES.plural}", NS, "p")]


def _events(api: FakeApi) -> list[str]:
    return [e["reason"] for e in api.all(EVENTS).values()]


def test_a_new_pipeline_gets_its_job_before_the_status_write(api: FakeApi) -> None:
    result = _reconcile(api, body=_add(api))
    assert api.calls == ["POST jobs", "PATCH trainingpipelines/p/status", "POST events"]
    status = _status(api)
    assert status["runCount"] == 1
    assert [r["name"] for r in status["runs"]] == ["p-1"]
    assert status["runs"][0]["phase"] == "Pending"
    assert status["trainedDatasetVersion"] == DATASETS[(NS, "data")][0]["validatedVersion"]
    job = api.all(JOBS)["p-1"]
    record = runs.job_record(job)
    assert record is not None
    assert record.run.to_wire() == status["runs"][0]
    assert runs.owned_by(job, uid="uid-1")
    assert _events(api) == ["RunStarted"]
    assert result.requeue_after == pipeline.SAFETY_POLL_SECONDS  # a run is active: look again later


def test_status_write_lost_after_the_job_then_a_restart_adopts_the_job(api: FakeApi) -> None:
    body = _add(api)
    api.refuse("PATCH", "trainingpipelines", ApiError(500, "Internal Server Error", "the operator died here"))
    with pytest.raises(ApiError):
        _reconcile(api, body=body)
    assert list(api.all(JOBS)) == ["p-1"]
    assert "runCount" not in _status(api)

    fresh_process()
    api.refusals.clear()
    api.calls.clear()
    _reconcile(api, body=api.obj(PIPELINES, "p"))
    assert list(api.all(JOBS)) == ["p-1"]
    status = _status(api)
    assert status["runCount"] == 1
    assert [r["name"] for r in status["runs"]] == ["p-1"]
    assert api.calls[:3] == ["POST jobs", "GET jobs/p-1", "PATCH trainingpipelines/p/status"]


def test_a_lost_run_is_recorded_from_its_job_event_even_when_nothing_would_start(api: FakeApi) -> None:
    _add(api)
    _stored(api)["metadata"]["annotations"] = {"loopwright.dev/train-request": "r1"}
    api.refuse("PATCH", "trainingpipelines", ApiError(500, "Internal Server Error", "died"))
    with pytest.raises(ApiError):
        _reconcile(api)
    handled = runs.job_record(api.all(JOBS)["p-1"])
    assert handled is not None
    assert handled.handled_request == "r1"

    # Meanwhile suspended and asked again: no run would start, yet the Job exists and must be
    # the recorded run, having handled the request it was started for (r2 waits its turn).
    fresh_process()
    api.refusals.clear()
    _stored(api)["spec"]["triggers"]["suspend"] = True
    _stored(api)["metadata"]["annotations"] = {"loopwright.dev/train-request": "r2"}
    _reconcile(api, job=api.all(JOBS)["p-1"])
    status = _status(api)
    assert status["runCount"] == 1
    kept = ("id", "name", "trigger", "datasetVersion", "startTime")
    assert {k: status["runs"][0][k] for k in kept} == {k: handled.run.to_wire()[k] for k in kept}
    assert status["runs"][0]["reason"] == "JobSuspended"  # and followed: the Job was read
    assert status["handledTrainRequest"] == "r1"
    assert status["runs"][0]["trigger"] == "Manual"
    assert list(api.all(JOBS)) == ["p-1"]


def test_a_job_event_of_a_recorded_run_changes_nothing(api: FakeApi) -> None:
    _add(api)
    _reconcile(api)
    before = _status(api)
    api.calls.clear()
    _reconcile(api, job=api.all(JOBS)["p-1"])
    assert _status(api) == before
    assert not any(call.startswith(("POST", "PATCH")) for call in api.calls)


def test_a_stale_body_adopts_the_job_instead_of_a_second_run(api: FakeApi) -> None:
    stale = _add(api)
    _reconcile(api, body=stale)
    _reconcile(api, body=stale)
    assert list(api.all(JOBS)) == ["p-1"]
    assert _status(api)["runCount"] == 1


def test_a_job_of_a_deleted_namesake_is_never_adopted(api: FakeApi) -> None:
    _add(api, uid="old")
    _reconcile(api)
    old_job = api.all(JOBS)["p-1"]
    body = _add(api, uid="new")
    with pytest.raises(RuntimeError, match="another owner"):
        _reconcile(api, body=body)
    assert "runCount" not in _status(api)
    with pytest.raises(RuntimeError, match="another owner"):
        _reconcile(api, job=old_job)
    assert "runCount" not in _status(api)
    assert runs.owned_by(api.all(JOBS)["p-1"], uid="old")


def test_an_event_that_cannot_be_posted_is_logged_not_raised(
    api: FakeApi, caplog: pytest.LogCaptureFixture
) -> None:
    api.refuse("POST", "events", ApiError(503, "Service Unavailable", "API server unreachable"))
    _reconcile(api, body=_add(api))
    assert _status(api)["runCount"] == 1
    assert "cannot post event RunStarted on ns/p" in caplog.text


def test_a_job_the_api_refuses_is_a_condition_and_one_event_then_starts_once_allowed(api: FakeApi) -> None:
    _add(api)
    quota = ('jobs.batch "p-1" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1, '
             "used: count/jobs.batch=5, limited: count/jobs.batch=5")
    api.refuse("POST", "jobs", ApiError(403, "Forbidden", quota))
    results = [_reconcile(api) for _ in range(2)]
    ready = next(c for c in _status(api)["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "JobRefused")
    assert ready["message"].startswith('cannot create Job p-1: jobs.batch "p-1" is forbidden: exceeded quota')
    assert _events(api) == ["JobRefused"]
    assert api.all(EVENTS).popitem()[1]["count"] == 1
    assert _status(api)["runCount"] == 0
    assert not api.all(JOBS)
    assert results[-1].requeue_after == pipeline_runs.RETRY_SECONDS

    api.refusals.clear()
    _reconcile(api)
    assert list(api.all(JOBS)) == ["p-1"]
    ready = next(c for c in _status(api)["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Ready")


def test_a_job_create_that_fails_otherwise_is_retried_as_an_error(api: FakeApi) -> None:
    _add(api)
    api.refuse("POST", "jobs", ApiError(503, "Service Unavailable", "etcd"))
    with pytest.raises(ApiError):
        _reconcile(api)
    assert "conditions" not in _status(api)


def test_the_run_is_given_its_gates_and_the_champion_for_its_report(api: FakeApi) -> None:
    spec = {"model": "p", "version": 3, "metrics": {"accuracy": 0.9}}
    api.run(pipeline.champion_event(type="MODIFIED", namespace=NS, name="p-v3", spec=spec,
                                    status={"aliases": ["production"]}))
    api.run(pipeline.champion_event(type="ADDED", namespace=NS, name="p-v4", spec={**spec, "version": 4},
                                    status={}))
    _reconcile(api, body=_add(api))
    command = api.all(JOBS)["p-1"]["spec"]["template"]["spec"]["containers"][0]["command"]
    gates = json.loads(command[command.index("--gates-json") + 1])
    assert gates["model"] == "p"
    assert gates["champion"] == {"name": "p-v3", "version": 3, "metrics": {"accuracy": 0.9}}
    assert gates["validation"]["champion"]["alias"] == "production"
    # The alias moves on: the old champion is forgotten, a deleted one too.
    api.run(pipeline.champion_event(type="MODIFIED", namespace=NS, name="p-v3", spec=spec, status={}))
    assert (NS, "p", "production") not in pipeline_runs.champions


def test_new_data_in_the_cooldown_asks_the_queue_to_come_back_when_it_ends(api: FakeApi) -> None:
    _add(api, cooldown="5m")
    _reconcile(api)
    _stored(api)["status"]["runs"][0]["phase"] = "Succeeded"  # the run is over
    newer = {**DATASETS[(NS, "data")][0], "validatedVersion": "sha256:" + "b" * 64}
    controller = pipeline.Pipelines()
    controller.datasets = {(NS, "data"): [newer]}
    result = api.run(controller.reconcile(api.context(), (NS, "p")))
    assert list(api.all(JOBS)) == ["p-1"]  # held back by the cooldown
    assert result.requeue_after is not None
    assert 200 < result.requeue_after <= 300


SEARCH = {"strategy": "grid", "space": {"C": {"values": [0.1, 1.0, 10.0]}}, "parallelism": 2}


def _searching(api: FakeApi, results: dict[int, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """A pipeline with a 3-trial grid whose search Job ran; ``results`` are the trials' files."""
    _add(api)
    _stored(api)["spec"]["search"] = SEARCH
    _stored(api)["spec"]["metrics"] = ["f1_macro"]

    def get_bytes(uri: str, **_: Any) -> bytes:
        index = int(uri.rsplit("/", 1)[1].removesuffix(".json"))
        if index not in results:
            raise storage.ObjectNotFoundError(uri)
        return json.dumps(results[index]).encode()

    monkeypatch.setattr(storage, "get_bytes", get_bytes)
    _reconcile(api)


def _job(api: FakeApi, name: str) -> dict[str, Any]:
    return api.objects[("apis/batch/v1/jobs", NS, name)]


def _finish(api: FakeApi, name: str, *, failed: bool = False) -> None:
    condition = {"type": "Failed" if failed else "Complete", "status": "True",
                 "lastTransitionTime": "2026-03-02T10:00:00Z"}
    _job_changed(api, name, {"conditions": [condition], "succeeded": 2})


def _job_changed(api: FakeApi, name: str, status: dict[str, Any]) -> None:
    """The Job's status moved on, and its watch event was seen (as job_event notes it)."""
    _job(api, name)["status"] = status
    _job(api, name)["spec"]["suspend"] = False  # the fixture creates Jobs suspended
    pipeline_runs.job_phases.put((NS, name), str(runs.job_outcome(_job(api, name)).phase))


def test_a_search_runs_its_trials_as_one_indexed_job_then_trains_the_best(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = {0: {"phase": "Succeeded", "score": 0.7}, 1: {"phase": "Succeeded", "score": 0.8},
               2: {"phase": "Failed", "error": "BadParameters", "message": "C too large"}}
    _searching(api, results, monkeypatch)
    assert list(api.all(JOBS)) == ["p-1-search"]
    job = api.all(JOBS)["p-1-search"]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 3, 2)
    run = _status(api)["runs"][0]
    assert (run["phase"], run["reason"], run["search"]) == (
        "Pending", "Searching", {"job": "p-1-search", "metric": "f1_macro", "trials": []})

    _job_changed(api, "p-1-search", {"active": 2, "succeeded": 1})
    _reconcile(api, job=api.all(JOBS)["p-1-search"])
    run = _status(api)["runs"][0]
    assert (run["phase"], run["message"]) == ("Running", "searching: 1 of 3 trials done, 2 running")

    _finish(api, "p-1-search", failed=True)  # one index failed: the Job fails, the run goes on
    _reconcile(api, job=api.all(JOBS)["p-1-search"])
    assert sorted(api.all(JOBS)) == ["p-1", "p-1-search"]
    run = _status(api)["runs"][0]
    assert (run["phase"], run["reason"]) == ("Running", "Training")
    assert run["search"]["best"] == 1
    assert [(t["index"], t["phase"], t.get("score")) for t in run["search"]["trials"]] == [
        (0, "Succeeded", 0.7), (1, "Succeeded", 0.8), (2, "Failed", None)]
    assert run["search"]["trials"][1]["params"] == {"C": 1.0}
    assert "best of 2/3 trials: #1 f1_macro=0.8" in run["message"]
    command = api.all(JOBS)["p-1"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[0] == "loopwright-trainer"
    assert json.loads(command[command.index("--params-json") + 1]) == {"C": 1.0}
    assert json.loads(command[command.index("--search-json") + 1])["best"] == 1
    assert "SearchFinished" in _events(api)

    _finish(api, "p-1")  # the training Job as usual (registration is another test's business)
    _stored(api)["status"]["runs"][0]["phase"] = "Succeeded"
    _stored(api)["spec"]["historyLimit"] = 1
    _stored(api)["metadata"]["annotations"] = {"loopwright.dev/train-request": "again"}
    _reconcile(api)
    assert sorted(api.all(JOBS)) == ["p-2-search"]  # pruning took the run's two Jobs


def test_a_search_whose_trials_all_failed_fails_the_run(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = {"phase": "Failed", "error": "BadParameters", "message": "C must be > 0"}
    _searching(api, {0: failed}, monkeypatch)
    _finish(api, "p-1-search", failed=True)
    _reconcile(api, job=api.all(JOBS)["p-1-search"])
    run = _status(api)["runs"][0]
    assert (run["phase"], run["reason"]) == ("Failed", "AllTrialsFailed")
    assert run["message"] == "all 3 trials failed (trial 0: C must be > 0)"
    assert "best" not in run["search"]
    assert list(api.all(JOBS)) == ["p-1-search"]


def test_a_restart_after_the_search_adopts_the_training_job(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _searching(api, {i: {"phase": "Succeeded", "score": 0.5 + i / 10} for i in range(3)}, monkeypatch)
    _finish(api, "p-1-search")
    api.refuse("PATCH", "trainingpipelines", ApiError(500, "Internal Server Error", "died"))
    with pytest.raises(ApiError):
        _reconcile(api, job=api.all(JOBS)["p-1-search"])
    assert "p-1" in api.all(JOBS)
    fresh_process()
    api.refusals.clear()
    _reconcile(api)
    run = _status(api)["runs"][0]
    assert (run["reason"], run["search"]["best"]) == ("Training", 2)
    assert sorted(api.all(JOBS)) == ["p-1", "p-1-search"]


def _identical_version(api: FakeApi, *, digest: str) -> None:
    api.add(MODEL_VERSIONS, {"metadata": {"name": "p-v2", "labels": {"loopwright.dev/model": "p"}},
                             "spec": {"model": "p", "version": 2, "lineage": {"inputsDigest": digest}}})


def test_a_drift_run_on_the_inputs_of_an_existing_version_ends_without_a_job(api: FakeApi) -> None:
    _add(api)
    _reconcile(api)
    first = _status(api)["runs"][0]
    assert first["inputsDigest"].startswith("sha256:")
    failed = {"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}
    _job(api, "p-1")["status"] = {"conditions": [failed]}
    pipeline_runs.job_phases.pop((NS, "p-1"))  # as the Job's watch event does
    _reconcile(api, job=api.all(JOBS)["p-1"])
    _identical_version(api, digest=first["inputsDigest"])
    _stored(api)["metadata"]["annotations"] = {"loopwright.dev/train-request": "watch-1",
                                               "loopwright.dev/train-trigger": "Drift"}
    _reconcile(api)
    status = _status(api)
    run = status["runs"][0]
    assert (run["name"], run["phase"], run["reason"], run.get("request")) == ("p-2", "Skipped", "NoNewData",
                                                                           "watch-1")
    assert run["message"].startswith("no new data since version 2 (p-v2 was trained on the same dataset")
    assert "new labelled data" in run["message"]
    assert "p-2" not in api.all(JOBS)  # nothing trained, nothing registered
    assert status["handledTrainRequest"] == "watch-1"
    assert "NoNewData" in _events(api)
    training = next(c for c in status["conditions"] if c["type"] == "Training")
    assert training["status"] == "False"
    # A person asking for the same run still gets it: only Drift and Performance need something new.
    _stored(api)["metadata"]["annotations"] = {"loopwright.dev/train-request": "manual-1"}
    _reconcile(api)
    assert "p-3" in api.all(JOBS)
    assert _status(api)["runs"][0]["request"] == "manual-1"


def test_a_drift_run_on_new_inputs_trains(api: FakeApi) -> None:
    _identical_version(api, digest="sha256:" + "0" * 64)
    _add(api)
    _stored(api)["metadata"]["annotations"] = {"loopwright.dev/train-request": "watch-1",
                                               "loopwright.dev/train-trigger": "Drift"}
    _reconcile(api)
    assert list(api.all(JOBS)) == ["p-1"]
    assert _status(api)["runs"][0]["trigger"] == "Drift"


def test_registration_never_reuses_a_version_number(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    api.add(MODEL_VERSIONS, {"metadata": {"name": "p-v1", "labels": {"loopwright.dev/model": "p"}},
                             "spec": {"model": "p", "version": 1}})
    monkeypatch.setattr(storage, "get_bytes", lambda uri: json.dumps({
        "artifacts": {"model": {"uri": "s3://bucket/m.skops", "sha256": "a" * 64}},
        "dataset": {"digest": "sha256:" + "c" * 64}, "metrics": {"accuracy": 0.9}}).encode())
    _add(api)
    _reconcile(api)
    _stored(api)["status"]["lastVersion"] = 4  # versions 2 to 4 were deleted since
    _job(api, "p-1")["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    pipeline_runs.job_phases.pop((NS, "p-1"))
    _reconcile(api, job=api.all(JOBS)["p-1"])
    assert sorted(api.all(MODEL_VERSIONS)) == ["p-v1", "p-v5"]
    created = api.all(MODEL_VERSIONS)["p-v5"]
    assert created["spec"]["lineage"]["inputsDigest"] == _status(api)["runs"][0]["inputsDigest"]
    assert _status(api)["lastVersion"] == 5
    assert _status(api)["runs"][0]["modelVersion"] == "p-v5"


def test_a_finished_run_waits_for_s3_to_come_back_and_fails_only_on_a_missing_result(
    api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    _reconcile(api, body=_add(api))
    _job(api, "p-1")["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    pipeline_runs.job_phases.put((NS, "p-1"), "Succeeded")  # what its watch event records

    def unreachable(uri: str, **_: Any) -> bytes:
        raise storage.StorageError(f"cannot read {uri}: Could not connect to the endpoint URL")

    monkeypatch.setattr(storage, "get_bytes", unreachable)
    with pytest.raises(storage.StorageError):  # the queue retries it, with backoff
        _reconcile(api)
    assert _status(api)["runs"][0]["phase"] != "Failed"

    def missing(uri: str, **_: Any) -> bytes:
        raise storage.ObjectNotFoundError(f"{uri}: no such object")

    monkeypatch.setattr(storage, "get_bytes", missing)
    _reconcile(api)
    run = _status(api)["runs"][0]
    assert (run["phase"], run["reason"]) == ("Failed", "ResultUnreadable")
