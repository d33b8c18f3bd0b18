"""The DriftPolicy controller (loopwright.dev/v1alpha1): watch live traffic, retrain on drift.

A policy's reconcile is one check, and its result asks the queue to come back after the spec's
``interval`` (no timer, no daemon, no task per policy: nothing adds a finalizer, so deleting a
policy or its namespace never waits for the operator). A check:

1. finds the version the target Deployment serves as stable (its status) and that ModelVersion's
   training profile, the reference (a new stable version, i.e. a promotion, starts a new window
   and a new consecutive count);
2. scrapes the reference-bin counters of the ready predictor pods of that version
   (:mod:`loopwright.operator.probes.scrape`) into the window (:mod:`loopwright.core.drift.window`);
3. follows the retrain it requested before, if one is in flight (the run, the version's gate, its
   rollout: :mod:`loopwright.core.drift.retrain`, pure; the reads in :mod:`.retrain`);
4. judges the window (:mod:`loopwright.core.drift.check`, pure), writes the status with the raw
   values, and acts: an Event on every confirmed change, a retrain of the referenced
   TrainingPipeline (its train-request and train-trigger annotations) unless one is in flight,
   found no new data, or its cooldown runs, and the optional webhook.

The window lives in the operator's memory, one per policy (forgotten when the policy goes).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from loopwright import storage
from loopwright.api import reasons
from loopwright.api.common import parse_duration
from loopwright.api.driftpolicy import DriftPolicySpec, RetrainOutcome, RetrainPhase, RetrainStatus
from loopwright.api.kinds import DRIFT_POLICY as KIND
from loopwright.core.conditions import READY, Verdict
from loopwright.core.drift import check
from loopwright.core.drift import retrain as retrains
from loopwright.core.drift.window import Window
from loopwright.operator.controllers._common import parse_spec
from loopwright.operator.controllers.driftpolicy import reads, retrain
from loopwright.operator.runtime.client import ApiError, Obj, resource
from loopwright.operator.runtime.controller import MANAGER, Context, Key
from loopwright.operator.runtime.queue import Result
from loopwright.operator.runtime.status import Decision
from loopwright.reports import drift as drift_report

RES = resource(KIND)
RETRY_SECONDS = 30.0
"""Pause after a check that could not run (nothing served yet), bounded by the interval."""
RECHECK_SECONDS = 1.0
"""Pause after a check whose spec changed while it ran: the new spec is judged almost at once."""
PENDING = Verdict(type=READY, status=False, reason=reasons.PENDING, message="waiting for the first check")


class DriftPolicies:
    kind = KIND.kind
    workers = 4

    def __init__(self) -> None:
        self.states: dict[Key, reads.State] = {}

    async def reconcile(self, ctx: Context, key: Key) -> Result:
        obj = await ctx.api.get(RES, *key)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            self.states.pop(key, None)
            return Result()
        parsed = parse_spec(KIND, obj.get("spec") or {})
        if not isinstance(parsed, DriftPolicySpec):
            await ctx.status.write(RES, obj, Decision(verdicts=[
                Verdict(type=READY, status=False, reason=reasons.INVALID_SPEC, message=str(parsed))]))
            return Result()
        state = self.states.setdefault(key, reads.State())
        return Result(requeue_after=await _check(ctx, obj, parsed, state))


async def _publish(ctx: Context, obj: Obj, *, fields: Mapping[str, Any], verdicts: list[Verdict]) -> bool:
    """Publish on the policy the check read; False when dropped (the spec changed meanwhile)."""
    decision = Decision(fields=fields, verdicts=verdicts, initial_ready=PENDING)
    written = await ctx.status.write(RES, obj, decision)
    return written is not None


async def _check(ctx: Context, obj: Obj, spec: DriftPolicySpec, state: reads.State) -> float:
    """One check; returns the seconds to wait before the next."""
    meta = obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    status: Mapping[str, Any] = obj.get("status") or {}
    interval = parse_duration(spec.interval).total_seconds()
    now = datetime.now(UTC)

    async def not_ready(reason: str, message: str) -> float:
        await _publish(ctx, obj, fields={}, verdicts=[Verdict(type=READY, status=False, reason=reason,
                                                              message=message)])
        return min(interval, RETRY_SECONDS)

    served = await reads.served(ctx, namespace=namespace, deployment=spec.deployment_ref.name)
    if isinstance(served, str):
        return await not_ready(reasons.NOT_SERVING, served)
    try:
        profile = await reads.profile(state, served)
    except (storage.StorageError, ValueError) as exc:
        return await not_ready(reasons.PROFILE_UNAVAILABLE, f"{served.model_version}: {exc}")

    span = parse_duration(spec.window)
    window = state.window
    if window is None or window.reference != served.model_version or window.span != span:
        window = state.window = Window(reference=served.model_version, span=span, start=now)
    same_reference = status.get("modelVersion") == served.model_version
    existing = list(status.get("conditions") or ())
    if not same_reference:
        # Verdicts against the previous version no longer apply: they start again as Unknown.
        stale = (check.DRIFT_DETECTED, check.PERFORMANCE_DEGRADED)
        existing = [c for c in existing if c.get("type") not in stale]
        if status.get("modelVersion"):
            await ctx.events.record(obj, type_="Normal", reason=reasons.REFERENCE_CHANGED, message=(
                f"{served.deployment} now serves {served.model_version} (was {status['modelVersion']}): "
                "new reference profile, the window starts empty"))
    performance = status.get("performance") or {}
    asked = spec.actions.retrain
    before = _retrain_status(status)
    advanced, pipeline = before, None
    if before is not None and before.phase != RetrainPhase.SETTLED:
        progress, pipeline = await retrain.observe(ctx, namespace=namespace, retrain=before,
                                                   rollout=served.rollout)
        advanced = retrains.advance(before, progress, now=now)
    current = advanced
    dataset_version = None
    if current is not None and current.outcome == RetrainOutcome.NO_NEW_DATA and asked is not None:
        dataset_version = await retrain.dataset_version(ctx, namespace=namespace,
                                                        pipeline=asked.pipeline_ref.name)
    previous = check.Previous(
        consecutive=int(status.get("consecutive") or 0) if same_reference else 0,
        performance_consecutive=int(performance.get("consecutive") or 0) if same_reference else 0,
        last_retrain=_parse_time(status.get("lastRetrainTime")), retrain=current,
        dataset_version=dataset_version,
    )

    readings, unreachable = await reads.read_pods(ctx, namespace=namespace, served=served)
    window.observe(readings, now=now)
    counts = window.counts(now=now)
    outcome = check.evaluate(spec, profile=profile, counts=counts,
                             reference_metrics=served.reference_metrics, previous=previous, now=now)

    # The retrain is recorded in the status first, then requested: a crash in between leaves an
    # intent that the next check completes (same token, so still one run), never a second request.
    token = f"{name}-{int(now.timestamp())}" if outcome.retrain is not None and asked is not None else None
    if token is not None and asked is not None and outcome.retrain is not None:
        current = retrains.requested(token=token, pipeline=asked.pipeline_ref.name, trigger=outcome.retrain,
                                     now=now)
    report_uri = None
    if outcome.drifted is not None:  # a verdict: its report, written before the status points at it
        request = ({"pipeline": asked.pipeline_ref.name, "token": token, "trigger": str(outcome.retrain)}
                   if token and asked is not None else None)
        data = drift_report.build(spec=spec, outcome=outcome, profile=profile, counts=counts, policy=name,
                                  namespace=namespace, deployment=served.deployment,
                                  model_version=served.model_version, time=now, retrain=request)
        report_uri = await reads.write_report(ctx, obj, data=data, uri=drift_report.report_uri(
            bucket=ctx.config.artifact_bucket, namespace=namespace, model=served.model, policy=name,
            time=now))
    fields = check.status(outcome, reference=served.model_version, now=now, retrain_token=token,
                          retrain_trigger=outcome.retrain, report_uri=report_uri,
                          previous_checks=status.get("checks") or (), retrain=current)
    verdicts = [*check.conditions(spec, outcome, existing=existing),
                retrains.verdict(current, wanted=outcome.wanted is not None, held=outcome.held)]
    if unreachable:
        # Not a failure of the check (reachable pods were counted), but worth seeing.
        verdicts[0] = Verdict(type=READY, status=True, reason="Checked",
                              message=f"{verdicts[0].message}; unreachable: {'; '.join(unreachable)}"[:1000])
    if not await _publish(ctx, obj, fields=fields, verdicts=verdicts):
        # The spec changed under this check: nothing it decided was recorded, so it does not act
        # (a retrain requested without its token in the status could be requested twice).
        return RECHECK_SECONDS

    await _settled_event(ctx, obj, before, advanced)
    retrain_note = await _request(ctx, obj, state=state, retrain=current, new=token is not None,
                                  pipeline=None if token else pipeline)
    if not retrain_note and outcome.held is not None:
        retrain_note = f"retrain held back: {outcome.held.message}"

    line = check.summary(spec, outcome)
    for change in outcome.changes:
        bad = change in (check.Change.DRIFT_CONFIRMED, check.Change.PERFORMANCE_CONFIRMED)
        message = f"{served.model_version}: {line}" + (f"; {retrain_note}" if retrain_note else "")
        await ctx.events.record(obj, type_="Warning" if bad else "Normal", reason=change.value,
                                message=message[:1000])
    if spec.actions.webhook is not None and (outcome.changes or token):
        event = outcome.changes[0].value if outcome.changes else reasons.RETRAIN_REQUESTED
        await reads.notify(ctx, obj, spec=spec, served=served, event=event,
                           message=f"{line}; {retrain_note}".rstrip("; "), fields=fields)
    return interval


def _retrain_status(status: Mapping[str, Any]) -> RetrainStatus | None:
    try:
        return RetrainStatus.model_validate(status["retrain"]) if status.get("retrain") else None
    except ValueError:
        return None


async def _settled_event(ctx: Context, obj: Obj, before: RetrainStatus | None,
                         after: RetrainStatus | None) -> None:
    """An Event when the retrain in flight settles (how, and what it means for the next one)."""
    if before is None or after is None or before.phase == RetrainPhase.SETTLED:
        return
    if after.phase != RetrainPhase.SETTLED:
        return
    good = after.outcome in (RetrainOutcome.PROMOTED, RetrainOutcome.SUPERSEDED)
    message = f"{after.trigger} retrain {after.token}: {after.outcome}: {after.message}"[:1000]
    await ctx.events.record(obj, type_="Normal" if good else "Warning", reason="RetrainSettled",
                            message=message)


async def _request(ctx: Context, obj: Obj, *, state: reads.State, retrain: RetrainStatus | None, new: bool,
                   pipeline: Mapping[str, Any] | None) -> str:
    """Put the retrain's request on its pipeline while no run answers it yet; a note for the Events."""
    if (retrain is None or retrain.phase != RetrainPhase.AWAITING_RUN or retrain.run is not None
            or retrain.token == state.requested):
        return ""
    meta = obj["metadata"]
    try:
        await reads.ensure_requested(ctx, namespace=meta["namespace"], pipeline=retrain.pipeline,
                                     policy=meta["name"], token=retrain.token, trigger=retrain.trigger,
                                     obj=pipeline)
    except ApiError as exc:
        if new:
            await ctx.events.record(obj, type_="Warning", reason=reasons.RETRAIN_FAILED, message=(
                f"could not request a run of TrainingPipeline {retrain.pipeline}: {exc.status} {exc.reason}; "
                "retrying at the next check"))
        return ""
    state.requested = retrain.token
    if not new:
        return ""
    note = f"requested run {retrain.token} of TrainingPipeline {retrain.pipeline} (trigger {retrain.trigger})"
    await ctx.events.record(obj, type_="Normal", reason=reasons.RETRAIN_REQUESTED, message=note)
    return note


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


CONTROLLER = DriftPolicies()
MANAGER.register(CONTROLLER)
watch = kopf.on.event(group=KIND.group, version=KIND.version, plural=KIND.plural,
                      id="driftpolicy.watch")(MANAGER.watcher(KIND.kind))
