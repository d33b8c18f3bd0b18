"""Run phases from Jobs, failure reasons, refusal before any Job, history bounds."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from loopwright.api.pipeline import Run, TrainingPipelineSpec
from loopwright.core.training import runs


def _job(*conditions: tuple[str, str, str], suspend: bool = False, **status: Any) -> dict[str, Any]:
    return {
        "spec": {"suspend": suspend},
        "status": {
            **status,
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "reason": r,
                    "message": m,
                    "lastTransitionTime": "2026-01-01T00:00:10Z",
                }
                for t, r, m in conditions
            ],
        },
    }


def _pod(
    *,
    exit_code: int,
    reason: str = "Error",
    summary: dict[str, Any] | None = None,
    finished: str = "2026-01-01T00:00:05Z",
) -> dict[str, Any]:
    terminated = {"exitCode": exit_code, "reason": reason, "finishedAt": finished}
    if summary is not None:
        terminated["message"] = json.dumps(summary)
    return {"status": {"containerStatuses": [{"name": "main", "state": {"terminated": terminated}}]}}


def test_phases_of_an_unfinished_job() -> None:
    assert runs.job_outcome(_job()).phase == "Pending"
    assert runs.job_outcome(_job(suspend=True)).reason == "JobSuspended"
    assert runs.job_outcome(_job(active=1)).phase == "Running"


def test_completed_job_succeeds_with_its_completion_time() -> None:
    outcome = runs.job_outcome(_job(("Complete", "", ""), completionTime="2026-01-01T00:01:00Z"))
    assert outcome.phase == "Succeeded"
    assert outcome.completion_time == "2026-01-01T00:01:00Z"


def test_deadline_is_reported_as_such() -> None:
    outcome = runs.job_outcome(
        _job(("Failed", "DeadlineExceeded", "Job was active longer than specified")), [_pod(exit_code=137)]
    )
    assert (outcome.phase, outcome.reason) == ("Failed", "DeadlineExceeded")


def test_trainer_exit_codes_name_the_reason_with_the_trainers_message() -> None:
    failed = ("Failed", "PodFailurePolicy", "Container main for pod ns/p-1-x failed with exit code 2 ...")
    bad_params = runs.job_outcome(
        _job(failed), [_pod(exit_code=2, summary={"error": "BadParameters", "message": "C must be > 0"})]
    )
    assert (bad_params.reason, bad_params.message) == ("BadParameters", "C must be > 0")
    bad_data = runs.job_outcome(_job(failed), [_pod(exit_code=3, summary={"message": "digest mismatch"})])
    assert (bad_data.reason, bad_data.message) == ("BadData", "digest mismatch")
    # The pods may already be gone: the podFailurePolicy message still names the exit code.
    assert runs.job_outcome(_job(failed)).reason == "BadParameters"


def test_oom_and_plain_failures() -> None:
    oom = runs.job_outcome(
        _job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        [_pod(exit_code=137, reason="OOMKilled")],
    )
    assert oom.reason == "OutOfMemory"
    assert "memory" in (oom.message or "")
    # cgroup v1: the pod-level cgroup took the kill, so containerd reports the container as "Error".
    pod_level = runs.job_outcome(
        _job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        [_pod(exit_code=137, reason="Error")],
    )
    assert pod_level.reason == "OutOfMemory"
    crashed = runs.job_outcome(
        _job(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        [
            _pod(
                exit_code=1,
                summary={"error": "StorageError", "message": "s3 down"},
                finished="2026-01-01T00:00:09Z",
            ),
            _pod(exit_code=1, summary={"message": "older"}, finished="2026-01-01T00:00:01Z"),
        ],
    )
    assert crashed.reason == "BackoffLimitExceeded"
    assert "s3 down" in (crashed.message or "")
    assert "older" not in (crashed.message or "")


def test_log_tail_termination_message_is_kept_as_text() -> None:
    pod = _pod(exit_code=1)
    pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] = "Traceback...\nKeyError: 'x'"
    assert runs.termination_summary([pod]) == {"message": "Traceback...\nKeyError: 'x'"}


def _spec(
    estimator: str, params: dict[str, Any] | None = None, metrics: list[str] | None = None
) -> TrainingPipelineSpec:
    return TrainingPipelineSpec.model_validate(
        {
            "datasetRef": {"name": "d"},
            "metrics": metrics or [],
            "model": {"name": "m", "estimator": estimator, "params": params or {}},
        }
    )


def test_refusal_before_any_job() -> None:
    assert runs.refusal(_spec("LogisticRegression", {"C": 1.0}), task="classification") == []
    assert "not allowed" in runs.refusal(_spec("SVC"), task="classification")[0]
    assert any("n_jobs" in e for e in runs.refusal(_spec("LogisticRegression", {"n_jobs": 4}), task=None))
    assert any("regression" in e for e in runs.refusal(_spec("LogisticRegression"), task="regression"))
    wrong_metric = runs.refusal(_spec("LogisticRegression", metrics=["rmse"]), task="classification")
    assert wrong_metric == ["metric 'rmse' does not apply to classification"]


def _run(run_id: int, phase: str) -> Run:
    return Run(id=run_id, name=f"p-{run_id}", trigger="Manual", phase=phase)


def test_prune_keeps_the_newest_and_the_active() -> None:
    history = [
        _run(5, "Running"),
        _run(4, "Succeeded"),
        _run(3, "Failed"),
        _run(2, "Succeeded"),
        _run(1, "Failed"),
    ]
    kept, dropped = runs.prune(history, history_limit=2)
    assert [r.id for r in kept] == [5, 4]
    assert [r.id for r in dropped] == [3, 2, 1]
    kept, dropped = runs.prune(
        [_run(3, "Succeeded"), _run(2, "Succeeded"), _run(1, "Pending")], history_limit=1
    )
    assert [r.id for r in kept] == [3, 1]
    assert [r.id for r in dropped] == [2]


def test_apply_outcome_and_active_run() -> None:
    run = _run(1, "Pending").model_copy(update={"message": "new data"})
    done = runs.apply_outcome(
        run, runs.Outcome(phase="Succeeded", reason="Completed", completion_time="2026-01-01T00:01:00Z")
    )
    assert done.completion_time == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert done.message == "new data"
    assert runs.active_run([done]) is None
    assert runs.active_run([_run(2, "Running"), done]).id == 2
    assert runs.run_name("p", 12) == "p-12"


def test_a_job_carries_its_run_record_and_its_owner() -> None:
    run = Run(id=3, name="p-3", trigger="Manual", phase="Pending", dataset_version="sha256:x",
              start_time=datetime(2026, 1, 1, tzinfo=UTC), reason="JobCreated", message="train request 't'")
    record = runs.Record(run=run, handled_request="t")
    job = {"metadata": {"ownerReferences": [{"uid": "u1"}],
                        "annotations": {runs.RECORD_ANNOTATION: record.annotation()}}}
    assert runs.job_record(job) == record
    assert runs.owned_by(job, uid="u1")
    assert not runs.owned_by(job, uid="u2")
    assert not runs.owned_by({"metadata": {}}, uid="u1")
    for raw in ("", "{", '{"run": {"id": 0}}', "[]", '{"other": 1}'):
        assert runs.job_record({"metadata": {"annotations": {runs.RECORD_ANNOTATION: raw}}}) is None
    assert runs.job_record({}) is None
