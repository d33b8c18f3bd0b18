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
