"""Handlers of TrainingPipeline objects (loopwright.dev/v1alpha1).

One level-based reconcile per pipeline (:func:`sync`) runs the state machine:

1. follow the active run's Job; on success read the trainer's ``result.json`` and register the
   ModelVersion (adopting one this run already registered), on failure record the reason;
2. with no run active, ask :func:`loopwright.core.training.triggers.decide` whether to start one;
   refuse a forbidden estimator or parameters before any Job exists;
3. create run N's Job ``<pipeline>-<N>`` (N = runCount+1; adopting it on 409), carrying the
   run's record, then record the run in the status (guarded by resourceVersion). The Job comes
   first because it is what a new pipeline waits for; a restart between the two writes finds
   the Job (409 on the create, or its watch event) and records the run it carries, so it
   never makes a second Job;
4. keep ``historyLimit`` runs, deleting the Jobs of older ones.

It is entered from every event of the pipeline (an ``on.event`` handler: the initial listing
after a restart included), from events of its Jobs, from new validated versions of its Dataset
(found with the ``pipelines_by_dataset`` index, not by listing), and from a clock for schedules,
cooldowns and retries.

Run phases: Pending (Job created; also while the Job is suspended),
Running (the Job has pods), Succeeded (trained and registered as a ModelVersion), Failed (with
a reason: BadParameters, BadData, OutOfMemory, DeadlineExceeded, BackoffLimitExceeded,
JobDeleted, ResultUnreadable). The Job controller does the retrying within ``backoffLimit``;
exit codes 2 and 3 end the Job at once; the operator itself never restarts a failed run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Any, cast

import kopf
import kubernetes
from pydantic import ValidationError

from loopwright import storage
from loopwright.api.common import parse_duration
from loopwright.api.kinds import DATASET, MODEL_VERSION
from loopwright.api.kinds import TRAINING_PIPELINE as KIND
from loopwright.api.labels import MANAGED_BY, MODEL_LABEL, RUN_LABEL, child_labels
from loopwright.api.modelversion import model_version_name
from loopwright.api.pipeline import Run, RunPhase, TrainingPipelineSpec, TrainingPipelineStatus
from loopwright.api.schema import DatasetSchema
from loopwright.api.search import SearchResult
from loopwright.core.conditions import READY, Verdict, merge
from loopwright.core.training import inputs, registry, runs, search, triggers
from loopwright.operator import kube, metrics
from loopwright.operator.builders.common import Owner
from loopwright.operator.builders.jobs import search_job, search_job_name, training_job
from loopwright.operator.controllers import _runtime
from loopwright.operator.controllers._common import INVALID_SPEC, parse_spec

PIPELINE_LABEL = f"{KIND.group}/{KIND.singular}"
TRAINING = "Training"
CLOCK_PERIOD = 2.0
RETRY_SECONDS = 10.0
SAFETY_POLL_SECONDS = 60
_REGISTER_ATTEMPTS = 8
_REFUSALS = frozenset({HTTPStatus.BAD_REQUEST, HTTPStatus.FORBIDDEN, HTTPStatus.UNPROCESSABLE_ENTITY})
"""Answers to a Job create that retrying at once will not change (quota, admission, validation)."""
_UNREADABLE = (storage.ObjectNotFoundError, storage.AccessDeniedError, storage.IntegrityError)
"""Storage errors that fail a finished run's registration; any other (S3 down) is retried."""

_job_phases: dict[tuple[str, str], str] = {}
"""Last phase seen per Job, so repeated events of an unchanged Job cost no reconcile."""
_dataset_versions: dict[tuple[str, str], str | None] = {}
"""Last validated version seen per Dataset, so only a new one fans out to its pipelines."""
_champions: dict[tuple[str, str, str], dict[str, Any]] = {}
"""(namespace, model, alias) -> the version carrying the alias: the champion a run's report is compared
with (the ModelVersion controller makes the registry's own comparison when the version registers)."""
CLOCK = _runtime.Clock(period=CLOCK_PERIOD)
_log = logging.getLogger(__name__)
RECONCILE_THREADS = 48
_POOL = ThreadPoolExecutor(max_workers=RECONCILE_THREADS, thread_name_prefix="pipeline")
"""Pipeline reconciles wait on the API server far more than they compute: a pool of their own,
larger than kopf's executor, keeps a burst of new pipelines from queueing behind a few slow
calls (CR-to-Job latency), while the number of concurrent API calls stays bounded."""
EVENT_THREADS = 8
_EVENTS = ThreadPoolExecutor(max_workers=EVENT_THREADS, thread_name_prefix="pipeline-events")
"""Events are posted by threads of their own, so a reconcile thread is free for the next pipeline
once the Job and the status are written: with the Event in the same thread, a burst of new
pipelines (90 a second) used up the reconcile pool and queued for up to a second before any Job
was created. Both pools together stay below kube.POOL_SIZE connections with kopf's executor."""


async def _in_pool(fn: Callable[..., None], /, **kwargs: Any) -> None:
    await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(fn, **kwargs))


# The indexes are async (pure and quick) so kopf calls them on its loop: a sync index would cost
# two hops through kopf's thread pool on every pipeline event.
@kopf.index(group=KIND.group, version=KIND.version, plural=KIND.plural, id="pipelines_by_dataset")
async def pipelines_by_dataset(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> Any:
    return {(namespace, (spec.get("datasetRef") or {}).get("name")): name}


@kopf.index(group=KIND.group, version=KIND.version, plural=KIND.plural, id="pipeline_wake")
async def pipeline_wake(
    namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, **_: Any
) -> Any:
    """When a pipeline may need a reconcile without any event: a schedule slot, a cooldown's end."""
    times = [status.get("nextScheduledTime")]
    last = status.get("lastTriggerTime")
    cooldown = (spec.get("triggers") or {}).get("cooldown", "10m")
    moments = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in times if t]
    if last:
        with contextlib.suppress(ValueError):
            moments.append(datetime.fromisoformat(last.replace("Z", "+00:00")) + parse_duration(cooldown))
    if any(r.get("phase") in runs.ACTIVE_PHASES for r in status.get("runs") or ()):
        # A safety net for a missed Job event: look once a while after the last change.
        moments.append(_runtime.now() + timedelta(seconds=SAFETY_POLL_SECONDS))
    return {(namespace, name): tuple(moments)}


@kopf.on.event(group=KIND.group, version=KIND.version, plural=KIND.plural, id="pipeline.reconcile")
async def reconcile(
    type: str | None, namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
) -> None:
    """Every event of a pipeline, the operator's initial listing included (so no resume handler).

    An event handler rather than create/update handlers: the reconcile is level-based and
    idempotent, so kopf's per-change progress annotations would only add a PATCH per object
    (a fifth of the API writes of a new pipeline). Events of the operator's own status writes
    find nothing to do and cost no API call. A failed reconcile is retried by the clock.
    """
    if type == "DELETED":
        _runtime.forget((KIND.plural, str(namespace), name))
        CLOCK.forget((str(namespace), name))
        return
    with metrics.reconcile(kind=KIND.kind, handler="reconcile"):
        try:
            await _in_pool(sync, namespace=str(namespace), name=name, datasets=kwargs["dataset_info"],
                           body=dict(body))
        except Exception:
            CLOCK.later((str(namespace), name), delay=RETRY_SECONDS)
            raise


@kopf.on.event(group="batch", version="v1", plural="jobs", id="pipeline.job-event",
               labels={**MANAGED_BY, PIPELINE_LABEL: kopf.PRESENT})
async def job_event(
    type: str,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    labels: kopf.Labels,
    **kwargs: Any,
) -> None:
    """A Job's phase changed (or the operator just started): reconcile its pipeline with it.

    Async so that the many events of unchanged Jobs are dropped on kopf's loop; the Job is
    handed over so that a run whose status write was lost (a restart right after the Job was
    created) is recorded from it.
    """
    phase = "Deleted" if type == "DELETED" else str(runs.job_outcome(body).phase)
    key = (str(namespace), name)
    if _job_phases.get(key) == phase:
        return
    _job_phases[key] = phase
    if phase == "Deleted":
        _job_phases.pop(key, None)
    pipeline = labels[PIPELINE_LABEL]
    with metrics.reconcile(kind=KIND.kind, handler="job-event"):
        try:
            await _in_pool(sync, namespace=str(namespace), name=pipeline, datasets=kwargs["dataset_info"],
                           job=None if type == "DELETED" else dict(body))
        except Exception:
            CLOCK.later((str(namespace), pipeline), delay=RETRY_SECONDS)
            raise


@kopf.on.event(group=DATASET.group, version=DATASET.version, plural=DATASET.plural,
               id="pipeline.dataset-event")
def dataset_event(type: str, namespace: str | None, name: str, status: kopf.Status,
                  **kwargs: Any) -> None:
    """A new validated Dataset version: reconcile the pipelines that use it (onNewData)."""
    key = (str(namespace), name)
    version = None if type == "DELETED" else status.get("validatedVersion")
    if key in _dataset_versions and _dataset_versions[key] == version:
        return
    _dataset_versions[key] = version
    if version is None:
        return
    for pipeline in list(kwargs["pipelines_by_dataset"].get(key, ())):
        with metrics.reconcile(kind=KIND.kind, handler="dataset-event"):
            try:
                sync(namespace=key[0], name=pipeline, datasets=kwargs["dataset_info"],
                     validated_version=version)
            except Exception:
                _log.exception("reconcile of pipeline %s/%s after a new Dataset version", key[0], pipeline)
                CLOCK.later((key[0], pipeline), delay=RETRY_SECONDS)


@kopf.on.event(group=MODEL_VERSION.group, version=MODEL_VERSION.version, plural=MODEL_VERSION.plural,
               id="pipeline.champions")
async def champion_event(type: str | None, namespace: str | None, name: str, spec: kopf.Spec,
                         status: kopf.Status, **_: Any) -> None:
    model = (str(namespace), str(spec.get("model")))
    for key in [k for k, v in _champions.items() if k[:2] == model and v["name"] == name]:
        del _champions[key]
    if type != "DELETED":
        metrics = {k: float(v) for k, v in (spec.get("metrics") or {}).items()}
        for alias in status.get("aliases") or ():
            _champions[(*model, str(alias))] = {"name": name, "version": int(spec.get("version") or 0),
                                                "metrics": metrics}


@kopf.on.startup(id="pipeline.clock")
async def start_clock(memo: kopf.Memo, **kwargs: Any) -> None:
    datasets = kwargs["dataset_info"]

    async def fire(key: Hashable) -> None:
        namespace, name = cast(tuple[str, str], key)
        await _in_pool(sync, namespace=namespace, name=name, datasets=datasets)

    memo.pipeline_clock = asyncio.create_task(CLOCK.run(kwargs["pipeline_wake"], fire))


@kopf.on.cleanup(id="pipeline.clock-stop")
async def stop_clock(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "pipeline_clock", None)
    if task is not None:
        task.cancel()


def sync(
    *,
    namespace: str,
    name: str,
    datasets: Mapping[Hashable, Any],
    validated_version: str | None = None,
    body: Mapping[str, Any] | None = None,
    job: Mapping[str, Any] | None = None,
) -> None:
    """Reconcile one pipeline (safe to call from any thread, any number of times).

    ``body`` (what kopf just delivered) saves a GET on the first attempt; a stale body only
    costs a 409 on the status write, after which the object is read afresh. ``job`` is one of
    the pipeline's Jobs as just seen, whose run is recorded if the status lacks it.
    """
    first = [dict(body)] if body is not None else []
    with _runtime.hold((KIND.plural, namespace, name)):
        _runtime.retry_on_conflict(lambda: _sync_once(
            namespace=namespace, name=name, datasets=datasets, validated_version=validated_version,
            obj=first.pop() if first else None, job=job))


class _Pass:
    """One reconcile pass: the object as read, the status being built, the events to post."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.current: dict[str, Any] = obj.get("status") or {}
        try:
            self.status = TrainingPipelineStatus.model_validate(self.current)
        except ValidationError:
            self.status = TrainingPipelineStatus()
        self.generation: int | None = obj["metadata"].get("generation")
        self.verdicts: list[Verdict] = []
        self.events: list[tuple[str, str, str]] = []

    def event(self, type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def write(self) -> None:
        """Patch the status if anything changed (409 if the object moved on)."""
        status = self.status
        patch: dict[str, Any] = {
            "observedGeneration": self.generation,
            "runCount": status.run_count,
            "lastVersion": status.last_version,
            "runs": [r.to_wire() for r in status.runs],
            "phase": status.runs[0].phase if status.runs else None,
            "lastRun": status.runs[0].name if status.runs else None,
            "lastTriggerTime": _runtime.stamp(status.last_trigger_time) if status.last_trigger_time else None,
            "trainedDatasetVersion": status.trained_dataset_version,
            "handledTrainRequest": status.handled_train_request,
            "nextScheduledTime": (_runtime.stamp(status.next_scheduled_time)
                                  if status.next_scheduled_time else None),
            "conditions": merge(self.current.get("conditions"), self.verdicts, generation=self.generation),
        }
        changed = {k: v for k, v in patch.items() if self.current.get(k) != v}
        if changed:
            self.obj = _runtime.patch_status(KIND, self.obj, patch)
            self.current = self.obj.get("status") or {}

    def post_events(self) -> None:
        """Hand the events of this pass to the event threads, in order, after its writes and its Job."""
        if self.events:
            meta = self.obj["metadata"]
            about = {"apiVersion": self.obj.get("apiVersion"), "kind": self.obj.get("kind"),
                     "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid")}}
            _EVENTS.submit(_post_events, about, list(self.events))
        self.events.clear()


def _post_events(about: Mapping[str, Any], events: list[tuple[str, str, str]]) -> None:
    try:
        for type_, reason, message in events:
            _runtime.post_event(about, type_=type_, reason=reason, message=message)
    except Exception:
        # post_event logs the API's refusals; anything else would vanish in the executor.
        meta = about["metadata"]
        _log.exception("cannot post events on %s/%s", meta["namespace"], meta["name"])


def _sync_once(
    *,
    namespace: str,
    name: str,
    datasets: Mapping[Hashable, Any],
    validated_version: str | None,
    obj: dict[str, Any] | None,
    job: Mapping[str, Any] | None,
) -> None:
    obj = obj or _runtime.get(KIND, namespace=namespace, name=name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return
    state = _Pass(obj)
    if job is not None:
        _adopt(state, job)
    parsed = parse_spec(KIND, obj.get("spec") or {})
    if not isinstance(parsed, TrainingPipelineSpec):
        state.verdicts.append(Verdict(type=READY, status=False, reason=INVALID_SPEC, message=str(parsed)))
        state.write()
        state.post_events()
        return
    spec = parsed
    dataset = _dataset(datasets, namespace=namespace, name=spec.dataset_ref.name)
    version = validated_version or dataset.get("validatedVersion")
    task = ((dataset.get("schema") or {}).get("label") or {}).get("task")

    active = runs.active_run(state.status.runs)
    if active is not None:
        _follow(state, spec=spec, run=active, dataset=dataset)
    now = _runtime.now()
    decision = triggers.decide(triggers=spec.triggers, status=state.status,
                               annotations=obj["metadata"].get("annotations") or {},
                               validated_version=version, now=now)
    state.status.next_scheduled_time = decision.next_scheduled_time
    refused = runs.refusal(spec, task=task)
    if refused:
        message = "; ".join(refused)
        if _runtime.condition_changed(state.current.get("conditions"),
                                      Verdict(type=READY, status=False, reason="Refused")):
            state.event("Warning", "Refused", f"no run will start: {message}")
        state.verdicts.append(Verdict(type=READY, status=False, reason="Refused", message=message))
    elif not dataset:
        state.verdicts.append(Verdict(type=READY, status=False, reason="DatasetNotFound",
                                      message=f"Dataset {spec.dataset_ref.name} does not exist (yet)"))
    elif version is None:
        state.verdicts.append(Verdict(type=READY, status=False, reason="WaitingForData",
                                      message=f"Dataset {spec.dataset_ref.name} has no validated version"))
    else:
        state.verdicts.append(Verdict(type=READY, status=True, reason="Ready",
                                      message=f"trains on {spec.dataset_ref.name} {version[:19]}"))

    if decision.trigger is not None and not refused and version is not None:
        run_id = state.status.run_count + 1
        handled = decision.handled_request
        run_name = runs.run_name(name, run_id)
        searching = (SearchResult(job=search_job_name(run_name), metric=search.primary_metric(
            [str(m) for m in spec.metrics], task=task)) if spec.search is not None else None)
        digest = inputs.digest(dataset_version=version, spec=spec, schema=dataset.get("schema"))
        run = Run(id=run_id, name=run_name, trigger=decision.trigger, dataset_version=version,
                  phase=RunPhase.PENDING, start_time=now, reason="Searching" if searching else "JobCreated",
                  message=decision.why, search=searching, inputs_digest=digest,
                  request=handled if handled != state.status.handled_train_request else None)
        same = _twin(namespace=namespace, spec=spec, run=run) if inputs.needs_learning(run.trigger) else None
        if same is not None:
            ended = inputs.skipped(run, same_as=same, now=now)
            _record(state, runs.Record(run=ended, handled_request=handled))
        else:
            record = runs.Record(run=run, handled_request=handled)
            try:
                _start_run(state, spec=spec, record=record, dataset=dataset, namespace=namespace)
            except kubernetes.client.ApiException as exc:
                if exc.status not in _REFUSALS:
                    raise
                _refused_job(state, run=run, exc=exc)
    _prune(state, history_limit=spec.history_limit)
    active = runs.active_run(state.status.runs)
    state.verdicts.append(
        Verdict(type=TRAINING, status=True, reason="RunActive",
                message=f"run {active.name} is {active.phase}")
        if active else Verdict(type=TRAINING, status=False, reason="Idle", message=decision.why))
    state.write()
    state.post_events()


def _twin(*, namespace: str, spec: TrainingPipelineSpec, run: Run) -> Mapping[str, Any] | None:
    """An existing version of the model trained on exactly the run's inputs (nothing new to learn)."""
    selector = f"{MODEL_LABEL}={spec.model.name}"
    existing = kube.list_objects(MODEL_VERSION, namespace=namespace, label_selector=selector)
    return inputs.twin(existing, run.inputs_digest or "")


def _dataset(datasets: Mapping[Hashable, Any], *, namespace: str, name: str) -> dict[str, Any]:
    store = datasets.get((namespace, name))
    info = next(iter(store), None) if store is not None else None
    if info is not None:
        return dict(info)
    obj = _runtime.get(DATASET, namespace=namespace, name=name)
    if obj is None:
        return {}
    source = obj["spec"].get("source") or {}
    return {"validatedVersion": (obj.get("status") or {}).get("validatedVersion"), "uri": source.get("uri"),
            "format": source.get("format", "csv"), "schema": obj["spec"].get("schema"),
            "credentialsSecret": (source.get("credentialsSecretRef") or {}).get("name")}


def _start_run(state: _Pass, *, spec: TrainingPipelineSpec, record: runs.Record, dataset: Mapping[str, Any],
               namespace: str) -> None:
    """Create the run's Job (or adopt it), then add the run to the status the caller writes.

    An existing Job of this name and owner was created by an earlier pass whose status write
    was lost: the run it carries is the one recorded (its dataset version, its request token).
    """
    job = _create_job(state, spec=spec, record=record, dataset=dataset, namespace=namespace)
    if not runs.owned_by(job, uid=state.obj["metadata"]["uid"]):
        raise RuntimeError(f"Job {record.run.name} belongs to another owner (a deleted pipeline of the "
                           "same name?): the run starts once it is gone")
    carried = runs.job_record(job)
    _record(state, carried if carried is not None and carried.run.id == record.run.id else record)


def _refused_job(state: _Pass, *, run: Run, exc: kubernetes.client.ApiException) -> None:
    """The API server refused the run's Job (a ResourceQuota, an admission policy): say so, retry.

    Nothing was created, so the run is not recorded and the trigger still stands; the clock
    asks again, and the run starts once the cause is gone.
    """
    meta = state.obj["metadata"]
    verdict = Verdict(type=READY, status=False, reason="JobRefused",
                      message=f"cannot create Job {run.name}: {kube.api_message(exc)}"[:4096])
    if _runtime.condition_changed(state.current.get("conditions"), verdict):
        state.event("Warning", verdict.reason, verdict.message)
    state.verdicts = [*(v for v in state.verdicts if v.type != READY), verdict]
    CLOCK.later((meta["namespace"], meta["name"]), delay=RETRY_SECONDS)


def _adopt(state: _Pass, job: Mapping[str, Any]) -> None:
    """Record the run of a Job the status does not know: the next run's, created by this pipeline."""
    carried = runs.job_record(job)
    if (carried is not None and carried.run.id == state.status.run_count + 1
            and runs.owned_by(job, uid=state.obj["metadata"]["uid"])):
        _record(state, carried)


def _record(state: _Pass, record: runs.Record) -> None:
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
        state.event("Normal", "RunStarted", f"run {run.name} ({run.trigger}): {run.message}")


def _create_job(state: _Pass, *, spec: TrainingPipelineSpec, record: runs.Record,
                dataset: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """Create the run's Job, or read the one that exists already; returns the Job.

    While the run's search has no result yet, that is the search Job (the trials); after it, the
    training Job of the best trial's parameters."""
    meta = state.obj["metadata"]
    model = spec.model.name
    run = record.run
    labels = {**child_labels(KIND, meta["name"]), MODEL_LABEL: model, RUN_LABEL: run.name}
    cfg = _runtime.settings()
    common: dict[str, Any] = dict(
        namespace=namespace,
        owner=Owner(kind=KIND.kind, name=meta["name"], uid=meta["uid"], namespace=namespace),
        spec=spec, dataset_uri=dataset["uri"], dataset_format=dataset.get("format") or "csv",
        dataset_digest=run.dataset_version or "", schema=DatasetSchema.model_validate(dataset["schema"]),
        credentials_secret=dataset.get("credentialsSecret"),
        output_prefix=f"s3://{cfg.artifact_bucket}/models/{namespace}/{model}/runs/{run.name}",
        labels=labels, settings=_runtime.job_settings(training=True))
    if run.search is not None and not run.search.trials:
        manifest = search_job(name=run.search.job, **common)
    else:
        manifest = training_job(
            name=run.name, search=run.search, **common,
            gates={"model": model, "validation": spec.validation.to_wire(),
                   "champion": _champions.get((namespace, model, spec.validation.champion.alias))})
    manifest["metadata"]["annotations"] = {runs.RECORD_ANNOTATION: record.annotation()}
    # Known before the Job's first event arrives, so that event costs no reconcile.
    key = (namespace, manifest["metadata"]["name"])
    _job_phases.setdefault(key, str(RunPhase.PENDING))
    try:
        job, created = _runtime.create_job(manifest)
    except Exception:
        _job_phases.pop(key, None)
        raise
    if not created:
        # An adopted Job may have moved on: let the next pass read it.
        _job_phases[key] = str(runs.job_outcome(job).phase)
    return job


def _follow(state: _Pass, *, spec: TrainingPipelineSpec, run: Run, dataset: Mapping[str, Any]) -> None:
    """Advance the active run from its Job (its search Job first, when it searches)."""
    namespace = state.obj["metadata"]["namespace"]
    if run.search is not None and not run.search.trials:
        _follow_search(state, spec=spec, run=run, search_result=run.search, dataset=dataset)
        return
    if _job_phases.get((namespace, run.name)) == run.phase:
        return  # the Job's watch events say nothing changed: no need to read it
    job = _runtime.read_job(namespace=namespace, name=run.name)
    if job is None:
        if run.phase == RunPhase.PENDING and run.reason == "Starting":
            # Recorded by an operator version that wrote the status before the Job, which
            # then stopped in between: create the Job now.
            dataset = _dataset({}, namespace=namespace, name=spec.dataset_ref.name)
            if dataset:
                record = runs.Record(run=run, handled_request=state.status.handled_train_request)
                _create_job(state, spec=spec, record=record, dataset=dataset, namespace=namespace)
                _replace(state, run.model_copy(update={"reason": "JobCreated"}))
            return
        _fail(state, run, reason="JobDeleted", message=f"Job {run.name} disappeared before the run finished")
        return
    outcome = runs.job_outcome(job)
    if outcome.phase == RunPhase.FAILED:
        outcome = runs.job_outcome(job, _runtime.job_pods(job))
    updated = runs.apply_outcome(run, outcome)
    if outcome.phase == RunPhase.SUCCEEDED:
        try:
            mv_name, report = _register(state, spec=spec, run=updated, image=runs.job_image(job))
        except (storage.StorageError, KeyError, ValueError, ValidationError) as exc:
            if isinstance(exc, storage.StorageError) and not isinstance(exc, _UNREADABLE):
                raise  # S3 unreachable: the run stays active and the reconcile is retried (CLOCK)
            updated = updated.model_copy(update={"phase": RunPhase.FAILED, "reason": "ResultUnreadable",
                                                 "message": f"cannot register the model: {exc}"[:4096]})
            state.event("Warning", "RunFailed", f"run {run.name}: {updated.message}")
        else:
            updated = updated.model_copy(update={"model_version": mv_name, "reason": "Registered",
                                                 "message": f"registered ModelVersion {mv_name}",
                                                 "report_uri": report})
            state.event("Normal", "RunSucceeded", f"run {run.name} registered ModelVersion {mv_name}")
    elif outcome.phase == RunPhase.FAILED:
        state.event("Warning", "RunFailed", f"run {run.name} failed ({outcome.reason}): {outcome.message}")
    elif outcome.phase == run.phase and outcome.reason == run.reason:
        return
    _replace(state, updated)


def _follow_search(
    state: _Pass, *, spec: TrainingPipelineSpec, run: Run, search_result: SearchResult,
    dataset: Mapping[str, Any],
) -> None:
    """Advance a searching run from its search Job; once it ended, rank the trials and start
    training the best (or fail the run when every trial failed)."""
    namespace = state.obj["metadata"]["namespace"]
    if _job_phases.get((namespace, search_result.job)) == run.phase:
        return
    job = _runtime.read_job(namespace=namespace, name=search_result.job)
    searched = search.spec_of(job) if job is not None else None
    if job is None or searched is None:
        _fail(state, run, reason="JobDeleted", message=f"search Job {search_result.job} disappeared")
        return
    outcome = runs.job_outcome(job)
    if outcome.phase in runs.ACTIVE_PHASES:
        message = search.progress(job, trials=search.trial_count(searched))
        if (outcome.phase, message) != (run.phase, run.message):
            _replace(state, run.model_copy(update={"phase": outcome.phase, "reason": "Searching",
                                                   "message": message}))
        return
    cfg = _runtime.settings()
    prefix = f"s3://{cfg.artifact_bucket}/models/{namespace}/{spec.model.name}/runs/{run.name}"
    result = search.outcome(searched, job=search_result.job, metric=search_result.metric,
                            results=_trial_results(prefix, search.trial_count(searched)))
    if result.best is None:
        _fail(state, run.model_copy(update={"search": result}), reason="AllTrialsFailed",
              message=search.describe(result))
        return
    training = run.model_copy(update={"phase": RunPhase.RUNNING, "reason": "Training", "search": result,
                                      "message": search.describe(result)[:4096]})
    if not dataset:
        raise RuntimeError(f"Dataset {spec.dataset_ref.name} is gone: the run cannot train its best trial")
    record = runs.Record(run=training, handled_request=state.status.handled_train_request)
    _create_job(state, spec=spec, record=record, dataset=dataset, namespace=namespace)
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


def _fail(state: _Pass, run: Run, *, reason: str, message: str) -> None:
    """End the run as Failed for ``reason`` (with an Event)."""
    failed = run.model_copy(update={"phase": RunPhase.FAILED, "reason": reason, "message": message[:4096],
                                    "completion_time": _runtime.now()})
    _replace(state, failed)
    state.event("Warning", "RunFailed", f"run {run.name}: {failed.message}")


def _replace(state: _Pass, run: Run) -> None:
    state.status.runs = [run if r.id == run.id else r for r in state.status.runs]


def _register(state: _Pass, *, spec: TrainingPipelineSpec, run: Run, image: str) -> tuple[str, str | None]:
    """Register the run's ModelVersion, or adopt the one it already registered; returns its name and
    the run's report."""
    namespace = state.obj["metadata"]["namespace"]
    model = spec.model.name
    selector = f"{MODEL_LABEL}={model}"
    existing = kube.list_objects(MODEL_VERSION, namespace=namespace, label_selector=selector)
    found = registry.find_by_run(existing, run.name)
    if found is not None:
        return _adopted(state, found)
    cfg = _runtime.settings()
    prefix = f"s3://{cfg.artifact_bucket}/models/{namespace}/{model}/runs/{run.name}"
    result = json.loads(storage.get_bytes(storage.join_uri(prefix, "result.json")))
    labels = registry.labels(model=model, run=run.name, pipeline=state.obj["metadata"]["name"])
    for _attempt in range(_REGISTER_ATTEMPTS):
        version = registry.next_version(existing, last=state.status.last_version)
        mv_spec = registry.spec_from_result(
            model=model, version=version, result=result, dataset=spec.dataset_ref.name,
            pipeline=state.obj["metadata"]["name"], run=run.name, image=image or cfg.trainer_image,
            inputs_digest=run.inputs_digest)
        try:
            kube.create_object(MODEL_VERSION, namespace=namespace,
                               body=registry.manifest(namespace=namespace, spec=mv_spec, labels=labels))
        except kubernetes.client.ApiException as exc:
            if exc.status != HTTPStatus.CONFLICT:
                raise
            existing = kube.list_objects(MODEL_VERSION, namespace=namespace, label_selector=selector)
            found = registry.find_by_run(existing, run.name)
            if found is not None:
                return _adopted(state, found)
            continue
        state.status.last_version = max(state.status.last_version, version)
        return model_version_name(model=model, version=version), mv_spec.report_uri
    raise ValueError(f"no free version number for {model} after {_REGISTER_ATTEMPTS} attempts")


def _adopted(state: _Pass, found: Mapping[str, Any]) -> tuple[str, str | None]:
    """The version a run already registered (an earlier pass whose status write was lost)."""
    spec = found.get("spec") or {}
    state.status.last_version = max(state.status.last_version, int(spec.get("version") or 0))
    return str(found["metadata"]["name"]), spec.get("reportUri")


def _prune(state: _Pass, *, history_limit: int) -> None:
    kept, dropped = runs.prune(state.status.runs, history_limit=history_limit)
    if not dropped:
        return
    namespace = state.obj["metadata"]["namespace"]
    for run in dropped:
        _runtime.delete_job(namespace=namespace, name=run.name)
        if run.search is not None:
            _runtime.delete_job(namespace=namespace, name=run.search.job)
    state.status.runs = kept

