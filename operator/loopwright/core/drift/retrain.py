"""One retrain per cause: where a DriftPolicy's retrain stands, and whether another may be requested.

A policy that confirms drift asks its TrainingPipeline for one run and records the request in
``status.retrain``. Until that retrain settles it asks for no other, however long the drift
lasts: drift keeps being measured against the version being served, which the retrain is about
to replace, so every check would otherwise ask again. The retrain goes through

* AwaitingRun: the pipeline has not finished the run that answers the request (the run carrying
  the request's token, or else the first run started after the request);
* AwaitingGate: the run registered a version, which is being validated;
* AwaitingRollout: the version is Validated; the Deployment has not promoted it (it may be the
  canary, or queued behind one);

and settles as Promoted, Rejected (by the gate), RolledBack (by the canary analysis or by hand),
RunFailed, NoNewData (the run had nothing new to learn), Superseded (a newer version took its
place), NotRolledOut (the Deployment pins another version) or Lost (the run left the pipeline's
history). The cooldown counts from the settlement. After NoNewData the policy waits, beyond the
cooldown, for a new validated version of the pipeline's Dataset: retraining on the same data
would only register the same model again.

Pure: the controller reads the pipeline, the version and the Deployment, and writes the result.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from loopwright.api.common import parse_duration
from loopwright.api.driftpolicy import DriftPolicySpec, RetrainOutcome, RetrainPhase, RetrainStatus
from loopwright.api.modelversion import ModelPhase
from loopwright.api.pipeline import Run, RunPhase, RunTrigger
from loopwright.core.conditions import Verdict
from loopwright.core.training.inputs import NEEDS_DATA

RETRAINING = "Retraining"
"""Condition: True while a requested retrain is in flight; its reason says what it waits for."""
_ROLLED_BACK = frozenset({"RolledBack", "Aborted"})


@dataclass(frozen=True, kw_only=True)
class Rollout:
    """What the watched Deployment says about versions (from its status and spec)."""

    stable: int | None = None
    canary: int | None = None
    queued: int | None = None
    rejected: Collection[int] = ()
    history: Mapping[int, str] = field(default_factory=dict)
    """Latest rollout event per version (Promoted, RolledBack, Aborted, Superseded, ...)."""
    follows_latest: bool = True


@dataclass(frozen=True, kw_only=True)
class Progress:
    """What the controller observed about a retrain in flight."""

    pipeline_found: bool
    runs: Sequence[Run] = ()
    version_phase: ModelPhase | None = None
    """Phase of the version the run registered (None: not read, or not registered)."""
    rollout: Rollout = field(default_factory=Rollout)


def requested(*, token: str, pipeline: str, trigger: RunTrigger, now: datetime) -> RetrainStatus:
    """A retrain just asked for."""
    return RetrainStatus(token=token, pipeline=pipeline, trigger=trigger, requested_time=now,
                         phase=RetrainPhase.AWAITING_RUN,
                         message=f"waiting for TrainingPipeline {pipeline} to run (request {token})")


def answering_run(retrain: RetrainStatus, runs: Sequence[Run]) -> Run | None:
    """The run that answers the request: the one that consumed its token, else the first started after it.

    The second case covers a request the policy did not write because another one was pending
    (someone else's): the run after it trains on data at least as new.
    """
    exact = next((r for r in runs if r.request == retrain.token), None)
    if exact is not None or retrain.run is not None:
        return exact if exact is not None else next((r for r in runs if r.name == retrain.run), None)
    later = [r for r in runs if r.start_time is not None and r.start_time > retrain.requested_time]
    return min(later, key=lambda r: r.id, default=None)


def advance(retrain: RetrainStatus, progress: Progress, *, now: datetime) -> RetrainStatus:
    """The retrain after what was observed; a settled one never changes."""
    if retrain.phase == RetrainPhase.SETTLED:
        return retrain
    pipeline = retrain.pipeline
    if not progress.pipeline_found:
        return _waiting(retrain, RetrainPhase.AWAITING_RUN, f"TrainingPipeline {pipeline} not found; the "
                                                            f"request {retrain.token} waits for it")
    run = answering_run(retrain, progress.runs)
    if run is None:
        if retrain.run is not None:
            return _settle(retrain, RetrainOutcome.LOST, f"run {retrain.run} is no longer in the history of "
                                                         f"TrainingPipeline {pipeline}", now=now)
        return _waiting(retrain, RetrainPhase.AWAITING_RUN,
                        f"waiting for TrainingPipeline {pipeline} to start a run (request {retrain.token})")
    retrain = retrain.model_copy(update={"run": run.name, "dataset_version": run.dataset_version})
    if run.phase in (RunPhase.PENDING, RunPhase.RUNNING):
        return _waiting(retrain, RetrainPhase.AWAITING_RUN, f"run {run.name} is {run.phase}")
    if run.phase == RunPhase.SKIPPED:
        return _settle(retrain, RetrainOutcome.NO_NEW_DATA, f"run {run.name}: {run.message or run.reason}",
                       now=now)
    if run.phase == RunPhase.FAILED or not run.model_version:
        return _settle(retrain, RetrainOutcome.RUN_FAILED,
                       f"run {run.name} failed ({run.reason}): {run.message or ''}".rstrip(": "), now=now)
    retrain = retrain.model_copy(update={"model_version": run.model_version,
                                         "version": _number(run.model_version)})
    match progress.version_phase:
        case ModelPhase.REJECTED | ModelPhase.FAILED:
            return _settle(retrain, RetrainOutcome.REJECTED,
                           f"{run.model_version} was {progress.version_phase} by validation", now=now)
        case ModelPhase.VALIDATED:
            return _rollout(retrain, progress.rollout, now=now)
        case _:
            return _waiting(retrain, RetrainPhase.AWAITING_GATE, f"{run.model_version} is being validated")


def _rollout(retrain: RetrainStatus, rollout: Rollout, *, now: datetime) -> RetrainStatus:
    version, name = retrain.version, retrain.model_version
    if version is None:
        return _settle(retrain, RetrainOutcome.LOST, f"cannot tell the version number of {name}", now=now)
    event = rollout.history.get(version)
    if rollout.stable == version:
        return _settle(retrain, RetrainOutcome.PROMOTED, f"{name} promoted", now=now)
    if version in rollout.rejected or event in _ROLLED_BACK:
        return _settle(retrain, RetrainOutcome.ROLLED_BACK, f"{name} rolled back ({event or 'rejected'})",
                       now=now)
    if rollout.canary == version:
        return _waiting(retrain, RetrainPhase.AWAITING_ROLLOUT, f"{name} is the canary")
    if rollout.queued == version:
        return _waiting(retrain, RetrainPhase.AWAITING_ROLLOUT,
                        f"{name} is queued behind the canary of version {rollout.canary}")
    newer = max((v for v in (rollout.stable, rollout.canary, rollout.queued) if v is not None), default=0)
    if event == "Superseded" or newer > version:
        return _settle(retrain, RetrainOutcome.SUPERSEDED, f"a newer version ({newer}) took the place of "
                                                           f"{name}", now=now)
    if not rollout.follows_latest:
        return _settle(retrain, RetrainOutcome.NOT_ROLLED_OUT,
                       f"{name} is Validated, but the Deployment pins another version", now=now)
    return _waiting(retrain, RetrainPhase.AWAITING_ROLLOUT,
                    f"{name} is Validated; waiting for the Deployment to roll it out")


def _waiting(retrain: RetrainStatus, phase: RetrainPhase, message: str) -> RetrainStatus:
    return retrain.model_copy(update={"phase": phase, "message": message[:1024]})


def _settle(retrain: RetrainStatus, outcome: RetrainOutcome, message: str, *, now: datetime) -> RetrainStatus:
    if outcome == RetrainOutcome.NO_NEW_DATA and NEEDS_DATA not in message:
        message = f"{message}; {NEEDS_DATA}"
    return retrain.model_copy(update={"phase": RetrainPhase.SETTLED, "outcome": outcome,
                                      "message": message[:1024], "settled_time": now.replace(microsecond=0)})


def _number(model_version: str) -> int | None:
    """The version number of ``<model>-v<N>``."""
    tail = model_version.rsplit("-v", 1)[-1]
    return int(tail) if tail.isdigit() and int(tail) >= 1 else None


@dataclass(frozen=True, kw_only=True)
class Hold:
    """Why no retrain may be requested now, and until when (None: until something changes)."""

    reason: str
    message: str
    until: datetime | None = None


def hold(
    spec: DriftPolicySpec, *, retrain: RetrainStatus | None, last_retrain: datetime | None,
    dataset_version: str | None, now: datetime,
) -> Hold | None:
    """What holds a new retrain back: one in flight, no new data since the last one, or the cooldown.

    ``last_retrain`` is the request time of a retrain recorded before ``status.retrain`` existed;
    ``dataset_version`` the validated version of the pipeline's Dataset now (None: unknown).
    """
    if spec.actions.retrain is None:
        return None
    cooldown = parse_duration(spec.actions.retrain.cooldown)
    if retrain is not None and retrain.phase != RetrainPhase.SETTLED:
        return Hold(reason=str(retrain.phase), message=f"a retrain is in flight: {retrain.message}")
    if (retrain is not None and retrain.outcome == RetrainOutcome.NO_NEW_DATA
            and (dataset_version is None or dataset_version == retrain.dataset_version)):
        return Hold(reason=RetrainOutcome.NO_NEW_DATA.value,
                    message=f"the last retrain found nothing new to learn; {NEEDS_DATA}")
    since = retrain.settled_time if retrain is not None else last_retrain
    if since is not None and now < since + cooldown:
        return Hold(reason="Cooldown", message=f"cooldown until {(since + cooldown).isoformat()}",
                    until=since + cooldown)
    return None


def verdict(retrain: RetrainStatus | None, *, wanted: bool, held: Hold | None) -> Verdict:
    """The Retraining condition: what the policy's retrain waits for, or why none is running."""
    if retrain is not None and retrain.phase != RetrainPhase.SETTLED:
        return Verdict(type=RETRAINING, status=True, reason=str(retrain.phase),
                       message=f"{retrain.trigger} retrain {retrain.token}: {retrain.message}")
    if held is not None and wanted:
        return Verdict(type=RETRAINING, status=False, reason=held.reason, message=held.message)
    if retrain is not None:
        return Verdict(type=RETRAINING, status=False, reason=str(retrain.outcome),
                       message=f"{retrain.trigger} retrain {retrain.token}: {retrain.message}")
    return Verdict(type=RETRAINING, status=False, reason="NoRetrain", message="no retrain requested yet")
