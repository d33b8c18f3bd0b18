"""Training runs: naming, the phase of a run from its Job, failure reasons, history bounds.

Run N is ``status.runCount+1`` and its Job is named ``<pipeline>-<N>``. The Job is created
first and carries the run's record (an annotation); the status is written after it. So the
Job's name is known ahead, a restart between the two writes adopts the Job (a create gets 409,
or the Job's watch event brings the record) instead of creating a second one, and the status
recorded is the one the Job actually runs.
The run's phase is a pure function of the Job (and, for a failure, of its pods): the Job
controller does the retrying, bounded by ``backoffLimit`` and ``activeDeadlineSeconds``, and
the run reports why it ended without the operator retrying anything itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loopwright import artifacts
from loopwright.api.names import child_name
from loopwright.api.pipeline import MetricName, Run, RunPhase, TrainingPipelineSpec
from loopwright.core import estimators
from loopwright.core.training import search
from loopwright.jobs import contract as _job

ACTIVE_PHASES = frozenset({RunPhase.PENDING, RunPhase.RUNNING})
RECORD_ANNOTATION = "loopwright.dev/run-record"
"""On a training Job: the run as it is to be recorded in the pipeline's status (JSON)."""
REGRESSION_METRICS = frozenset({MetricName.R2, MetricName.MAE, MetricName.RMSE})

_MESSAGE_LIMIT = 4096
_EXIT_CODE = re.compile(r"exit code (\d+)")


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """Where a run stands according to its Job."""

    phase: RunPhase
    reason: str | None = None
    message: str | None = None
    completion_time: str | None = None


@dataclass(frozen=True, kw_only=True)
class Record:
    """What starting a run writes into the pipeline's status, carried by the run's Job too."""

    run: Run
    handled_request: str | None
    """The train-request token this run consumed (or the one already handled before it)."""

    def annotation(self) -> str:
        return json.dumps({"run": self.run.to_wire(), "handledTrainRequest": self.handled_request},
                          separators=(",", ":"))


def owned_by(job: Mapping[str, Any], *, uid: str) -> bool:
    """Whether the pipeline with ``uid`` owns the Job.

    A Job of the right name but another owner is left from a deleted pipeline of the same
    name, not yet removed by the garbage collector: never to be adopted.
    """
    refs = (job.get("metadata") or {}).get("ownerReferences") or ()
    return any(ref.get("uid") == uid for ref in refs)


def job_record(job: Mapping[str, Any]) -> Record | None:
    """The run record a Job carries (None if it has no readable one)."""
    raw = ((job.get("metadata") or {}).get("annotations") or {}).get(RECORD_ANNOTATION)
    if not raw:
        return None
    try:
        value = json.loads(raw)
        return Record(run=Run.model_validate(value["run"]), handled_request=value.get("handledTrainRequest"))
    except (ValueError, KeyError, TypeError):
        return None


def job_image(job: Mapping[str, Any]) -> str:
    """The image a run's Job ran (a factory's pipeline runs its own; the ModelVersion keeps it)."""
    containers = (((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or ()
    return str(next((c.get("image") for c in containers if c.get("name") == _job.CONTAINER), "") or "")


def run_name(pipeline: str, run_id: int) -> str:
    """The run's name, which is also its Job's: ``<pipeline>-<id>`` within 63 characters."""
    return child_name(pipeline, str(run_id))


def refusal(spec: TrainingPipelineSpec, *, task: str | None) -> list[str]:
    """Every reason the trainer would refuse this spec, checked before any Job exists.

    ``task`` is the Dataset label's task when known; metrics of the other task are refused
    like an estimator of the other task, since the Job could only fail. A factory's parameters
    are its own (the trainer reports them); its declared types must not come from modules that
    run code, and a search must fit its bounds (every trial's parameters, for an estimator).
    """
    model = spec.model
    errors = estimators.validate(model.estimator, model.params, task=task) if model.estimator else []
    errors += [f"trustedTypes: {t} is never trusted (its module can run code or touch the system)"
               for t in artifacts.forbidden_types(model.trusted_types)]
    if spec.search is not None:
        errors += search.refusal(spec.search, estimator=model.estimator, params=model.params, task=task)
    if task is not None:
        regression = task == "regression"
        wrong = [str(m) for m in spec.metrics if (m in REGRESSION_METRICS) != regression]
        errors += [f"metric {m!r} does not apply to {task}" for m in wrong]
    return errors


def active_run(runs: Sequence[Run]) -> Run | None:
    """The run still in progress, if any (at most one exists by construction)."""
    return next((r for r in runs if r.phase in ACTIVE_PHASES), None)


def job_outcome(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]] = ()) -> Outcome:
    """The run's phase from its Job; for a failed Job, the reason from the Job and its pods.

    Reasons, most specific first: the trainer's exit codes 2 (BadParameters) and 3 (BadData),
    a container killed for memory (OutOfMemory), the deadline (DeadlineExceeded), retries used
    up (BackoffLimitExceeded). The message is the trainer's own summary when it left one.
    """
    status = job.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or () if c.get("status") == "True"}
    if "Complete" in conditions:
        return Outcome(phase=RunPhase.SUCCEEDED, reason="Completed",
                       completion_time=status.get("completionTime")
                       or conditions["Complete"].get("lastTransitionTime"))
    if "Failed" in conditions:
        failed = conditions["Failed"]
        reason, message = _failure(failed, pods)
        return Outcome(phase=RunPhase.FAILED, reason=reason, message=message[:_MESSAGE_LIMIT],
                       completion_time=failed.get("lastTransitionTime"))
    if (job.get("spec") or {}).get("suspend"):
        return Outcome(phase=RunPhase.PENDING, reason="JobSuspended", message="the Job is suspended")
    if status.get("active") or status.get("succeeded") or status.get("failed"):
        return Outcome(phase=RunPhase.RUNNING, reason="Running")
    return Outcome(phase=RunPhase.PENDING, reason="JobCreated")


def _failure(condition: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    job_reason = str(condition.get("reason") or "Failed")
    job_message = str(condition.get("message") or "")
    terminated = _last_termination(pods)
    summary = _summary(terminated.get("message")) if terminated else {}
    detail = str(summary.get("message") or job_message or job_reason)
    if job_reason == "DeadlineExceeded":
        return "DeadlineExceeded", job_message or "the run exceeded activeDeadlineSeconds"
    code = terminated.get("exitCode") if terminated else _exit_code(job_message)
    # A SIGKILL (137) that the runtime calls "Error" is an OOM kill too: on cgroup v1 the pod-level
    # cgroup's limit can take the kill, and the runtime then attributes the event to the sandbox.
    killed = code == _SIGKILL_EXIT and terminated.get("reason") == "Error"
    if terminated.get("reason") == "OOMKilled" or summary.get("error") == "OutOfMemory" or killed:
        return "OutOfMemory", ("the trainer ran out of memory (OOMKilled): "
                               "raise spec.job.resources.limits.memory")
    if code == _job.EXIT_BAD_PARAMETERS:
        return "BadParameters", detail
    if code == _job.EXIT_BAD_DATA:
        return "BadData", detail
    if job_reason in ("BackoffLimitExceeded", "PodFailurePolicy"):
        return "BackoffLimitExceeded", f"{job_message}: {detail}" if detail != job_message else detail
    return job_reason, detail


_SIGKILL_EXIT = 137


def _exit_code(message: str) -> int | None:
    """The exit code a podFailurePolicy verdict names, for when the pods are already gone."""
    match = _EXIT_CODE.search(message)
    return int(match.group(1)) if match else None


def _last_termination(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The ``terminated`` state of the trainer container in the most recently finished pod."""
    found: list[Mapping[str, Any]] = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            if cs.get("name") != _job.CONTAINER:
                continue
            state = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if state:
                found.append(state)
    return max(found, key=lambda t: str(t.get("finishedAt") or ""), default={})


def _summary(message: object) -> dict[str, Any]:
    """The JSON summary a Job left as termination message (its last line), or nothing."""
    if not isinstance(message, str) or not message.strip():
        return {}
    try:
        value = json.loads(message.strip().splitlines()[-1])
    except ValueError:
        return {"message": message.strip()[-_MESSAGE_LIMIT:]}
    return value if isinstance(value, dict) else {}


def termination_summary(pods: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary of the most recently finished pod (used for verification Jobs too)."""
    terminated = _last_termination(pods)
    return _summary(terminated.get("message")) if terminated else {}


def apply_outcome(run: Run, outcome: Outcome) -> Run:
    """The run after its Job reported ``outcome`` (unchanged fields are kept)."""
    update: dict[str, Any] = {"phase": outcome.phase, "reason": outcome.reason,
                              "message": outcome.message if outcome.message is not None else run.message}
    if outcome.completion_time:
        update["completion_time"] = datetime.fromisoformat(outcome.completion_time.replace("Z", "+00:00"))
    return run.model_copy(update=update)


def prune(runs: Sequence[Run], *, history_limit: int) -> tuple[list[Run], list[Run]]:
    """(kept, dropped): the newest ``history_limit`` runs stay; an active run is never dropped."""
    ordered = sorted(runs, key=lambda r: r.id, reverse=True)
    kept = [r for i, r in enumerate(ordered) if i < history_limit or r.phase in ACTIVE_PHASES]
    dropped = [r for r in ordered if r not in kept]
    return kept, dropped
