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
from loopwright.api.kinds import TRAINING_PIPELINE
from loopwright.core.training import runs
from loopwright.operator.controllers import pipeline
from loopwright.operator.controllers.pipeline import lifecycle as pipeline_runs
from loopwright.operator.runtime.client import EVENTS, JOBS, ApiError, resource
from loopwright.operator.runtime.queue import Result

PIPELINES = resource(TRAINING_PIPELINE)
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
