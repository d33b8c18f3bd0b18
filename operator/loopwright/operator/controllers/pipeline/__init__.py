"""The TrainingPipeline controller (loopwright.dev/v1alpha1).

One level-based reconcile per pipeline runs the state machine:

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

It is enqueued by the pipeline's own changes (the operator's initial listing included), by
changes of its Jobs, by new validated versions of its Dataset (found with the
``pipelines_by_dataset`` index, not by listing), and by itself: each reconcile says when a
schedule slot, a cooldown's end or a retry is due (``requeue_after``).

Run phases: Pending (Job created; also while the Job is suspended), Running (the Job has pods),
Succeeded (trained and registered as a ModelVersion), Failed (with a reason: BadParameters,
BadData, OutOfMemory, DeadlineExceeded, BackoffLimitExceeded, JobDeleted, ResultUnreadable). The
Job controller does the retrying within ``backoffLimit``; exit codes 2 and 3 end the Job at once;
the operator itself never restarts a failed run.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from datetime import datetime
from typing import Any

import kopf

from loopwright.api import reasons
from loopwright.api.kinds import DATASET, MODEL_VERSION
from loopwright.api.kinds import TRAINING_PIPELINE as KIND
from loopwright.api.labels import MANAGED_BY, PIPELINE_LABEL
from loopwright.api.pipeline import Run, RunPhase, TrainingPipelineSpec
from loopwright.api.search import SearchResult
from loopwright.core.conditions import READY, Verdict
from loopwright.core.training import inputs, runs, search, triggers
from loopwright.operator.builders.jobs import search_job_name
from loopwright.operator.controllers._common import condition_changed, now, parse_spec
from loopwright.operator.controllers.pipeline.lifecycle import (
    Pass,
    adopt,
    champions,
    follow,
    job_phases,
    prune,
    record_skipped,
    start_run,
    twin,
)
from loopwright.operator.runtime.cache import BoundedCache
from loopwright.operator.runtime.client import Obj, resource
from loopwright.operator.runtime.controller import MANAGER, Context, Key
from loopwright.operator.runtime.queue import Result
from loopwright.operator.runtime.status import Conflict
from loopwright.operator.runtime.watch import Changes

RES = resource(KIND)
DATASETS = resource(DATASET)
TRAINING = "Training"
ATTEMPTS = 5
SAFETY_POLL_SECONDS = 60.0
"""With a run active, look once in a while even without a Job event (a missed event)."""


class Pipelines:
    kind = KIND.kind
    workers = 24

    def __init__(self) -> None:
        self.datasets: Mapping[Hashable, Any] = {}
        """kopf's ``dataset_info`` index (set at start-up): what a run needs from its Dataset."""
        self.bodies: dict[Key, Obj] = {}
        """The pipeline as its last watch event showed it: saves a GET (a stale one costs a 409)."""
        self.jobs: dict[Key, Obj] = {}
        """A Job just seen, whose run is recorded if the status lacks it (a lost status write)."""

    async def reconcile(self, ctx: Context, key: Key) -> Result:
        body, job = self.bodies.pop(key, None), self.jobs.pop(key, None)
        for _attempt in range(ATTEMPTS):
            obj = body or await ctx.api.get(RES, *key)
            body = None
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return Result()
            try:
                return await self._pass(ctx, obj, job)
            except Conflict:
                continue  # the object moved on while this pass decided: decide again on a fresh read
        raise Conflict(f"TrainingPipeline {key[0]}/{key[1]} kept changing")

    async def _pass(self, ctx: Context, obj: Obj, job: Obj | None) -> Result:
        state = Pass(ctx, obj)
        if job is not None:
            adopt(state, job)
        parsed = parse_spec(KIND, obj.get("spec") or {})
        if not isinstance(parsed, TrainingPipelineSpec):
            state.verdicts.append(Verdict(type=READY, status=False, reason=reasons.INVALID_SPEC,
                                          message=str(parsed)))
            await state.write()
            await state.post_events()
            return Result()
        decision = await self._decide(state, parsed)
        await state.write()
        await state.post_events()
        return Result(requeue_after=_due(state, decision))

    async def _decide(self, state: Pass, spec: TrainingPipelineSpec) -> triggers.Decision:
        namespace, name = state.namespace, state.obj["metadata"]["name"]
        dataset = await self.dataset(state.ctx, namespace=namespace, name=spec.dataset_ref.name)
        version = dataset.get("validatedVersion")
        task = ((dataset.get("schema") or {}).get("label") or {}).get("task")
        active = runs.active_run(state.status.runs)
        if active is not None:
            await follow(state, spec=spec, run=active, dataset=dataset)
        moment = now()
        decision = triggers.decide(triggers=spec.triggers, status=state.status,
                                   annotations=state.obj["metadata"].get("annotations") or {},
                                   validated_version=version, now=moment)
        state.status.next_scheduled_time = decision.next_scheduled_time
        refused = runs.refusal(spec, task=task)
        state.verdicts.append(_ready(state, spec, refused=refused, dataset=dataset, version=version))
        if decision.trigger is not None and not refused and version is not None:
            run_id = state.status.run_count + 1
            run_name = runs.run_name(name, run_id)
            searching = (SearchResult(job=search_job_name(run_name), metric=search.primary_metric(
                [str(m) for m in spec.metrics], task=task)) if spec.search is not None else None)
            handled = decision.handled_request
            digest = inputs.digest(dataset_version=version, spec=spec, schema=dataset.get("schema"))
            run = Run(id=run_id, name=run_name, trigger=decision.trigger, dataset_version=version,
                      phase=RunPhase.PENDING, start_time=moment, message=decision.why, search=searching,
                      reason="Searching" if searching else "JobCreated", inputs_digest=digest,
                      request=handled if handled != state.status.handled_train_request else None)
            same = await twin(state, spec=spec, run=run) if inputs.needs_learning(run.trigger) else None
            if same is not None:
                skipped = inputs.skipped(run, same_as=same, now=moment)
                record_skipped(state, runs.Record(run=skipped, handled_request=handled))
            else:
                await start_run(state, spec=spec, record=runs.Record(run=run, handled_request=handled),
                                dataset=dataset)
        await prune(state, history_limit=spec.history_limit)
        active = runs.active_run(state.status.runs)
        state.verdicts.append(
            Verdict(type=TRAINING, status=True, reason=reasons.RUN_ACTIVE,
                    message=f"run {active.name} is {active.phase}")
            if active else Verdict(type=TRAINING, status=False, reason=reasons.IDLE, message=decision.why))
        return decision

    async def dataset(self, ctx: Context, *, namespace: str, name: str) -> dict[str, Any]:
        """What a run needs from its Dataset: from kopf's index, else read (a Dataset not indexed yet)."""
        store = self.datasets.get((namespace, name))
        info = next(iter(store), None) if store is not None else None
        if info is not None:
            return dict(info)
        obj = await ctx.api.get(DATASETS, namespace, name)
        if obj is None:
            return {}
        source = obj["spec"].get("source") or {}
        return {"validatedVersion": (obj.get("status") or {}).get("validatedVersion"),
                "uri": source.get("uri"), "format": source.get("format", "csv"),
                "schema": obj["spec"].get("schema"),
                "credentialsSecret": (source.get("credentialsSecretRef") or {}).get("name")}


def _ready(state: Pass, spec: TrainingPipelineSpec, *, refused: list[str], dataset: Mapping[str, Any],
           version: str | None) -> Verdict:
    if refused:
        message = "; ".join(refused)
        verdict = Verdict(type=READY, status=False, reason=reasons.REFUSED, message=message)
        if condition_changed(state.current.get("conditions"), verdict):
            state.event("Warning", reasons.REFUSED, f"no run will start: {message}")
        return verdict
    if not dataset:
        return Verdict(type=READY, status=False, reason=reasons.DATASET_NOT_FOUND,
                       message=f"Dataset {spec.dataset_ref.name} does not exist (yet)")
    if version is None:
        return Verdict(type=READY, status=False, reason=reasons.WAITING_FOR_DATA,
                       message=f"Dataset {spec.dataset_ref.name} has no validated version")
    return Verdict(type=READY, status=True, reason=reasons.READY,
                   message=f"trains on {spec.dataset_ref.name} {version[:19]}")


def _due(state: Pass, decision: triggers.Decision) -> float | None:
    """Seconds until the pipeline needs a look without any event: a schedule slot, a cooldown's end,
    a refused Job's retry, a run to check on."""
    moment = now()
    delays = [(at - moment).total_seconds() for at in (decision.wake_at, decision.next_scheduled_time)
              if isinstance(at, datetime)]
    if state.retry_in is not None:
        delays.append(state.retry_in)
    if runs.active_run(state.status.runs) is not None:
        delays.append(SAFETY_POLL_SECONDS)
    return max(min(delays), 1.0) if delays else None


CONTROLLER = Pipelines()
MANAGER.register(CONTROLLER)
_changes = Changes()
_dataset_versions: BoundedCache[tuple[str, str], str | None] = BoundedCache(100_000)
"""Last validated version seen per Dataset, so only a new one fans out to its pipelines."""


# The indexes are async (pure and quick) so kopf calls them on its loop.
@kopf.index(group=KIND.group, version=KIND.version, plural=KIND.plural, id="pipelines_by_dataset")
async def pipelines_by_dataset(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> Any:
    return {(namespace, (spec.get("datasetRef") or {}).get("name")): name}


@kopf.on.startup(id="pipeline.indexes")
async def indexes(**kwargs: Any) -> None:
    CONTROLLER.datasets = kwargs["dataset_info"]


@kopf.on.event(group=KIND.group, version=KIND.version, plural=KIND.plural, id="pipeline.watch")
async def watch(type: str | None, body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    """Changes of a pipeline (its own status writes are not: they need no reconcile)."""
    key = (str(namespace), name)
    if _changes.worth(type, body):
        CONTROLLER.bodies[key] = dict(body)
        MANAGER.enqueue(KIND.kind, key)
    elif type == "DELETED":
        CONTROLLER.bodies.pop(key, None)
        MANAGER.forget(KIND.kind, key)


@kopf.on.event(group="batch", version="v1", plural="jobs", id="pipeline.job-event",
               labels={**MANAGED_BY, PIPELINE_LABEL: kopf.PRESENT})
async def job_event(type: str, body: kopf.Body, namespace: str | None, name: str, labels: kopf.Labels,
                    **_: Any) -> None:
    """A Job's phase changed (or the operator just started): reconcile its pipeline with it.

    Events of unchanged Jobs are dropped here; the Job is handed over so that a run whose status
    write was lost (a restart right after the Job was created) is recorded from it.
    """
    phase = "Deleted" if type == "DELETED" else str(runs.job_outcome(body).phase)
    key = (str(namespace), name)
    if job_phases.get(key) == phase:
        return
    job_phases.put(key, phase)
    if phase == "Deleted":
        job_phases.pop(key)
    pipeline = (str(namespace), labels[PIPELINE_LABEL])
    if type != "DELETED":
        CONTROLLER.jobs[pipeline] = dict(body)
    MANAGER.enqueue(KIND.kind, pipeline)


@kopf.on.event(group=DATASET.group, version=DATASET.version, plural=DATASET.plural,
               id="pipeline.dataset-event")
async def dataset_event(type: str, namespace: str | None, name: str, status: kopf.Status,
                        **kwargs: Any) -> None:
    """A new validated Dataset version: reconcile the pipelines that use it (onNewData)."""
    key = (str(namespace), name)
    version = None if type == "DELETED" else status.get("validatedVersion")
    if key in _dataset_versions and _dataset_versions.get(key) == version:
        return
    _dataset_versions.put(key, version)
    if version is not None:
        for pipeline in list(kwargs["pipelines_by_dataset"].get(key, ())):
            MANAGER.enqueue(KIND.kind, (key[0], pipeline))


@kopf.on.event(group=MODEL_VERSION.group, version=MODEL_VERSION.version, plural=MODEL_VERSION.plural,
               id="pipeline.champions")
async def champion_event(type: str | None, namespace: str | None, name: str, spec: kopf.Spec,
                         status: kopf.Status, **_: Any) -> None:
    model = (str(namespace), str(spec.get("model")))
    for key in [k for k, v in champions.items() if k[:2] == model and v["name"] == name]:
        del champions[key]
    if type != "DELETED":
        metrics = {k: float(v) for k, v in (spec.get("metrics") or {}).items()}
        for alias in status.get("aliases") or ():
            champions[(*model, str(alias))] = {"name": name, "version": int(spec.get("version") or 0),
                                               "metrics": metrics}
