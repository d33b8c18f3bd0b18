"""One reconcile pass of a TrainingPipeline and the life of its runs: start, follow, register, prune.

A :class:`Pass` holds the object as read, the status being built, the verdicts and the Events; the
functions below advance it through the API (the Job first, carrying the run's record; the
ModelVersion registered, or adopted when this run registered it already).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from loopwright import storage
from loopwright.api import reasons
from loopwright.api.kinds import MODEL_VERSION
from loopwright.api.kinds import TRAINING_PIPELINE as KIND
from loopwright.api.labels import MODEL_LABEL, RUN_LABEL, child_labels
from loopwright.api.modelversion import model_version_name
from loopwright.api.pipeline import Run, RunPhase, TrainingPipelineSpec, TrainingPipelineStatus
from loopwright.api.schema import DatasetSchema
from loopwright.api.search import SearchResult
from loopwright.core.conditions import READY, Event, Verdict
from loopwright.core.training import inputs, registry, runs, search
from loopwright.operator.builders.common import Owner
from loopwright.operator.builders.jobs import JobSettings, RunInputs, search_job, training_job
from loopwright.operator.controllers._common import condition_changed, job_pods, now, stamp
from loopwright.operator.runtime.cache import BoundedCache
from loopwright.operator.runtime.client import JOBS, ApiError, Obj, resource
from loopwright.operator.runtime.controller import Context
from loopwright.operator.runtime.status import Decision

MODEL_VERSIONS = resource(MODEL_VERSION)
PIPELINES = resource(KIND)
REGISTER_ATTEMPTS = 8
UNREADABLE = (storage.ObjectNotFoundError, storage.AccessDeniedError, storage.IntegrityError)
"""Storage errors that fail a finished run's registration; any other (S3 down) is retried."""
RETRY_SECONDS = 10.0

job_phases: BoundedCache[tuple[str, str], str] = BoundedCache(100_000)
"""Last phase seen per Job, so repeated events of an unchanged Job cost no reconcile (forgotten: one
more read)."""
champions: dict[tuple[str, str, str], dict[str, Any]] = {}
"""(namespace, model, alias) -> the version carrying the alias: the champion a run's report is compared
with (the ModelVersion controller makes the registry's own comparison when the version registers)."""


class Pass:
    """One reconcile pass: the object as read, the status being built, the events to post."""

    def __init__(self, ctx: Context, obj: Obj) -> None:
        self.ctx = ctx
        self.obj = obj
        self.current: dict[str, Any] = obj.get("status") or {}
        try:
            self.status = TrainingPipelineStatus.model_validate(self.current)
        except ValidationError:
            self.status = TrainingPipelineStatus()
        self.verdicts: list[Verdict] = []
        self.events: list[Event] = []
        self.retry_in: float | None = None

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type=type_, reason=reason, message=message))

    def decision(self) -> Decision:
        status = self.status
        return Decision(verdicts=self.verdicts, fields={
            "runCount": status.run_count,
            "lastVersion": status.last_version,
            "runs": [r.to_wire() for r in status.runs],
            "phase": status.runs[0].phase if status.runs else None,
            "lastRun": status.runs[0].name if status.runs else None,
            "lastTriggerTime": stamp(status.last_trigger_time) if status.last_trigger_time else None,
            "trainedDatasetVersion": status.trained_dataset_version,
            "handledTrainRequest": status.handled_train_request,
            "nextScheduledTime": stamp(status.next_scheduled_time) if status.next_scheduled_time else None,
        })

    async def write(self) -> None:
        """Publish the status (raises Conflict when the object moved on: the pass is taken again)."""
        written = await self.ctx.status.write(PIPELINES, self.obj, self.decision(), merge_on_conflict=False)
        if written is not None:
            self.obj = written

    async def post_events(self) -> None:
        """The events of this pass, in order, after its writes and its Job."""
        for event in self.events:
            await self.ctx.events.record(self.obj, type_=event.type, reason=event.reason,
                                         message=event.message)
        self.events.clear()


async def start_run(state: Pass, *, spec: TrainingPipelineSpec, record: runs.Record,
                    dataset: Mapping[str, Any]) -> None:
    """Create the run's Job (or adopt it), then add the run to the status the caller writes.

    An existing Job of this name and owner was created by an earlier pass whose status write
    was lost: the run it carries is the one recorded (its dataset version, its request token).
    A Job the API server refuses (a ResourceQuota, an admission policy) is a condition and one
    Event; nothing was created, so the trigger still stands and the run starts once allowed.
    """
    try:
        job = await _create_job(state, spec=spec, record=record, dataset=dataset)
    except ApiError as exc:
        if exc.status not in (HTTPStatus.BAD_REQUEST, HTTPStatus.FORBIDDEN, HTTPStatus.UNPROCESSABLE_ENTITY):
            raise
        verdict = Verdict(type=READY, status=False, reason=reasons.JOB_REFUSED,
                          message=f"cannot create Job {record.run.name}: {exc.message}"[:4096])
        if condition_changed(state.current.get("conditions"), verdict):
            state.event("Warning", verdict.reason, verdict.message)
        state.verdicts = [*(v for v in state.verdicts if v.type != READY), verdict]
        state.retry_in = RETRY_SECONDS
        return
    if not runs.owned_by(job, uid=state.obj["metadata"]["uid"]):
        raise RuntimeError(f"Job {record.run.name} belongs to another owner (a deleted pipeline of the "
                           "same name?): the run starts once it is gone")
    carried = runs.job_record(job)
    _record(state, carried if carried is not None and carried.run.id == record.run.id else record)


def adopt(state: Pass, job: Mapping[str, Any]) -> None:
    """Record the run of a Job the status does not know: the next run's, created by this pipeline."""
    carried = runs.job_record(job)
    if (carried is not None and carried.run.id == state.status.run_count + 1
            and runs.owned_by(job, uid=state.obj["metadata"]["uid"])):
        _record(state, carried)


def _record(state: Pass, record: runs.Record) -> None:
    """Add the run to the status: runCount, the runs, and what the triggers count from."""
    status, run = state.status, record.run
    status.run_count = max(status.run_count, run.id)
    status.runs = [run, *(r for r in status.runs if r.id != run.id)]
    status.last_trigger_time = run.start_time
    status.trained_dataset_version = run.dataset_version
    status.handled_train_request = record.handled_request
    if run.phase == RunPhase.SKIPPED:
        state.event("Warning", str(run.reason), f"run {run.name} ({run.trigger}): {run.message}")
    else:
        state.event("Normal", reasons.RUN_STARTED, f"run {run.name} ({run.trigger}): {run.message}")


def record_skipped(state: Pass, skipped: runs.Record) -> None:
    """Record a run that ends before it starts (skipped: nothing new to learn)."""
    _record(state, skipped)


async def twin(state: Pass, *, spec: TrainingPipelineSpec, run: Run) -> Mapping[str, Any] | None:
    """An existing version of the model trained on exactly the run's inputs (nothing new to learn)."""
    selector = f"{MODEL_LABEL}={spec.model.name}"
    existing = await state.ctx.api.list(MODEL_VERSIONS, state.namespace, selector=selector)
    return inputs.twin(existing, run.inputs_digest or "")


def _output_prefix(state: Pass, *, model: str, run: str) -> str:
    return f"s3://{state.ctx.config.artifact_bucket}/models/{state.namespace}/{model}/runs/{run}"


async def _create_job(state: Pass, *, spec: TrainingPipelineSpec, record: runs.Record,
                      dataset: Mapping[str, Any]) -> Obj:
    """Create the run's Job, or read the one that exists already; returns the Job.

    While the run's search has no result yet, that is the search Job (the trials); after it, the
    training Job of the best trial's parameters."""
    meta = state.obj["metadata"]
    namespace, model, run = state.namespace, spec.model.name, record.run
    labels = {**child_labels(KIND, meta["name"]), MODEL_LABEL: model, RUN_LABEL: run.name}
    inputs = RunInputs(
        namespace=namespace,
        owner=Owner(kind=KIND.kind, name=meta["name"], uid=meta["uid"], namespace=namespace),
        spec=spec, dataset_uri=dataset["uri"], dataset_format=dataset.get("format") or "csv",
        dataset_digest=run.dataset_version or "", schema=DatasetSchema.model_validate(dataset["schema"]),
        credentials_secret=dataset.get("credentialsSecret"),
        output_prefix=_output_prefix(state, model=model, run=run.name),
        labels=labels, settings=JobSettings.of(state.ctx.config, training=True))
    if run.search is not None and not run.search.trials:
        manifest = search_job(inputs, name=run.search.job)
    else:
        manifest = training_job(
            inputs, name=run.name, search=run.search,
            gates={"model": model, "validation": spec.validation.to_wire(),
                   "champion": champions.get((namespace, model, spec.validation.champion.alias))})
    manifest["metadata"]["annotations"] = {runs.RECORD_ANNOTATION: record.annotation()}
    # Known before the Job's first event arrives, so that event costs no reconcile.
    key = (namespace, manifest["metadata"]["name"])
    if key not in job_phases:
        job_phases.put(key, str(RunPhase.PENDING))
    try:
        job, created = await state.ctx.api.create_or_adopt(JOBS, manifest)
    except Exception:
        job_phases.pop(key)
        raise
    if not created:
        # An adopted Job may have moved on: let the next pass read it.
        job_phases.put(key, str(runs.job_outcome(job).phase))
    return job


async def follow(state: Pass, *, spec: TrainingPipelineSpec, run: Run, dataset: Mapping[str, Any]) -> None:
    """Advance the active run from its Job (its search Job first, when it searches)."""
    if run.search is not None and not run.search.trials:
        await _follow_search(state, spec=spec, run=run, searching=run.search, dataset=dataset)
        return
    if job_phases.get((state.namespace, run.name)) == run.phase:
        return  # the Job's watch events say nothing changed: no need to read it
    job = await state.ctx.api.get(JOBS, state.namespace, run.name)
    if job is None:
        if run.phase == RunPhase.PENDING and run.reason == "Starting":
            # Recorded by an operator version that wrote the status before the Job, which
            # then stopped in between: create the Job now.
            if dataset:
                record = runs.Record(run=run, handled_request=state.status.handled_train_request)
                await _create_job(state, spec=spec, record=record, dataset=dataset)
                _replace(state, run.model_copy(update={"reason": "JobCreated"}))
            return
        _fail(state, run, reason="JobDeleted", message=f"Job {run.name} disappeared before the run finished")
        return
    outcome = runs.job_outcome(job)
    if outcome.phase == RunPhase.FAILED:
        outcome = runs.job_outcome(job, await job_pods(state.ctx, job))
    updated = runs.apply_outcome(run, outcome)
    if outcome.phase == RunPhase.SUCCEEDED:
        try:
            mv_name, report = await _register(state, spec=spec, run=updated, image=runs.job_image(job))
        except (storage.StorageError, KeyError, ValueError, ValidationError) as exc:
            if isinstance(exc, storage.StorageError) and not isinstance(exc, UNREADABLE):
                raise  # S3 unreachable: the run stays active and the queue retries the reconcile
            updated = updated.model_copy(update={"phase": RunPhase.FAILED, "reason": "ResultUnreadable",
                                                 "message": f"cannot register the model: {exc}"[:4096]})
            state.event("Warning", reasons.RUN_FAILED, f"run {run.name}: {updated.message}")
        else:
            updated = updated.model_copy(update={"model_version": mv_name, "reason": "Registered",
                                                 "message": f"registered ModelVersion {mv_name}",
                                                 "report_uri": report})
            state.event("Normal", reasons.RUN_SUCCEEDED, f"run {run.name} registered ModelVersion {mv_name}")
    elif outcome.phase == RunPhase.FAILED:
        state.event("Warning", reasons.RUN_FAILED,
                    f"run {run.name} failed ({outcome.reason}): {outcome.message}")
    elif outcome.phase == run.phase and outcome.reason == run.reason:
        return
    _replace(state, updated)


async def _follow_search(state: Pass, *, spec: TrainingPipelineSpec, run: Run, searching: SearchResult,
                         dataset: Mapping[str, Any]) -> None:
    """Advance a searching run from its search Job; once it ended, rank the trials and start
    training the best (or fail the run when every trial failed)."""
    if job_phases.get((state.namespace, searching.job)) == run.phase:
        return
    job = await state.ctx.api.get(JOBS, state.namespace, searching.job)
    searched = search.spec_of(job) if job is not None else None
    if job is None or searched is None:
        _fail(state, run, reason="JobDeleted", message=f"search Job {searching.job} disappeared")
        return
    outcome = runs.job_outcome(job)
    if outcome.phase in runs.ACTIVE_PHASES:
        message = search.progress(job, trials=search.trial_count(searched))
        if (outcome.phase, message) != (run.phase, run.message):
            _replace(state, run.model_copy(update={"phase": outcome.phase, "reason": "Searching",
                                                   "message": message}))
        return
    prefix = _output_prefix(state, model=spec.model.name, run=run.name)
    trials = await asyncio.to_thread(_trial_results, prefix, search.trial_count(searched))
    result = search.outcome(searched, job=searching.job, metric=searching.metric, results=trials)
    if result.best is None:
        _fail(state, run.model_copy(update={"search": result}), reason="AllTrialsFailed",
              message=search.describe(result))
        return
    training = run.model_copy(update={"phase": RunPhase.RUNNING, "reason": "Training", "search": result,
                                      "message": search.describe(result)[:4096]})
    if not dataset:
        raise RuntimeError(f"Dataset {spec.dataset_ref.name} is gone: the run cannot train its best trial")
    record = runs.Record(run=training, handled_request=state.status.handled_train_request)
    await _create_job(state, spec=spec, record=record, dataset=dataset)
    _replace(state, training)
    state.event("Normal", "SearchFinished", f"run {run.name}: {training.message}")


def _trial_results(prefix: str, trials: int) -> dict[int, dict[str, Any] | None]:
    """Each trial's ``trials/<index>.json`` (None where the pod left none)."""
    out: dict[int, dict[str, Any] | None] = {}
    for index in range(trials):
        try:
            uri = storage.join_uri(prefix, f"{search.RESULTS_DIR}/{index}.json")
            out[index] = json.loads(storage.get_bytes(uri))
        except (storage.ObjectNotFoundError, ValueError):
            out[index] = None
    return out


def _fail(state: Pass, run: Run, *, reason: str, message: str) -> None:
    """End the run as Failed for ``reason`` (with an Event)."""
    failed = run.model_copy(update={"phase": RunPhase.FAILED, "reason": reason, "message": message[:4096],
                                    "completion_time": now()})
    _replace(state, failed)
    state.event("Warning", reasons.RUN_FAILED, f"run {run.name}: {failed.message}")


def _replace(state: Pass, run: Run) -> None:
    state.status.runs = [run if r.id == run.id else r for r in state.status.runs]


async def _register(state: Pass, *, spec: TrainingPipelineSpec, run: Run,
                    image: str) -> tuple[str, str | None]:
    """Register the run's ModelVersion, or adopt the one it already registered; returns its name and
    the run's report."""
    api, namespace, model = state.ctx.api, state.namespace, spec.model.name
    selector = f"{MODEL_LABEL}={model}"
    existing = await api.list(MODEL_VERSIONS, namespace, selector=selector)
    found = registry.find_by_run(existing, run.name)
    if found is not None:
        return _adopted(state, found)
    uri = storage.join_uri(_output_prefix(state, model=model, run=run.name), "result.json")
    result = json.loads(await asyncio.to_thread(storage.get_bytes, uri))
    labels = registry.labels(model=model, run=run.name, pipeline=state.obj["metadata"]["name"])
    for _attempt in range(REGISTER_ATTEMPTS):
        version = registry.next_version(existing, last=state.status.last_version)
        mv_spec = registry.spec_from_result(
            model=model, version=version, result=result, dataset=spec.dataset_ref.name,
            pipeline=state.obj["metadata"]["name"], run=run.name,
            image=image or state.ctx.config.trainer_image, inputs_digest=run.inputs_digest)
        try:
            await api.create(MODEL_VERSIONS, namespace, registry.manifest(namespace=namespace, spec=mv_spec,
                                                                          labels=labels))
        except ApiError as exc:
            if exc.status != HTTPStatus.CONFLICT:
                raise
            existing = await api.list(MODEL_VERSIONS, namespace, selector=selector)
            found = registry.find_by_run(existing, run.name)
            if found is not None:
                return _adopted(state, found)
            continue
        state.status.last_version = max(state.status.last_version, version)
        return model_version_name(model=model, version=version), mv_spec.report_uri
    raise ValueError(f"no free version number for {model} after {REGISTER_ATTEMPTS} attempts")


def _adopted(state: Pass, found: Mapping[str, Any]) -> tuple[str, str | None]:
    """The version a run already registered (an earlier pass whose status write was lost)."""
    spec = found.get("spec") or {}
    state.status.last_version = max(state.status.last_version, int(spec.get("version") or 0))
    return str(found["metadata"]["name"]), spec.get("reportUri")


async def prune(state: Pass, *, history_limit: int) -> None:
    kept, dropped = runs.prune(state.status.runs, history_limit=history_limit)
    for run in dropped:
        await state.ctx.api.delete(JOBS, state.namespace, run.name)
        if run.search is not None:
            await state.ctx.api.delete(JOBS, state.namespace, run.search.job)
    if dropped:
        state.status.runs = kept
