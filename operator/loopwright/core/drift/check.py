"""One DriftPolicy check as a pure function: window counts in, verdicts, status and actions out.

The controller gathers the inputs (the served version's profile and test
metrics, the window's counts, what the last check left in the status) and
applies the outcome; every decision is made here, so it is unit-tested
without a cluster:

* fewer than ``minSamples`` predictions in the window is InsufficientData: the
  statistics are still computed and shown (raw values always), but the check
  neither counts towards ``consecutive`` nor resets it, because a check
  without data is inconclusive, never a pass;
* data drift (``driftShare`` reached) or prediction drift makes a failing
  check; ``consecutive`` failing checks in a row confirm it (DriftDetected);
* live performance from the feedback counters is compared with the served
  version's hold-out metric; a worsening beyond ``maxDrop`` with at least
  ``minLabels`` labels is a degraded check, confirmed after the same number
  of checks in a row (PerformanceDegraded);
* a confirmed problem retrains (trigger Performance before Drift: lost quality
  is the direct evidence of harm) unless :func:`loopwright.core.drift.retrain.hold`
  holds it back: the retrain requested before is still in flight, it found no new
  data and the Dataset has not changed since, or the cooldown after it runs; an
  Event and the webhook tell when a problem is first confirmed, when a retrain
  is requested, and when it clears.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from loopwright.api.common import ConditionStatus
from loopwright.api.driftpolicy import (
    MAX_CHECK_RECORDS,
    MAX_DRIFTED_NAMES,
    CheckRecord,
    DriftPolicySpec,
    PerformanceMetric,
    PerformanceResult,
    RetrainStatus,
)
from loopwright.api.pipeline import RunTrigger
from loopwright.core.conditions import READY, Verdict, find
from loopwright.core.drift import retrain as retrains
from loopwright.core.drift import stats
from loopwright.core.drift.window import ABS_ERROR, CORRECT, SQUARED_ERROR, Counts
from loopwright.core.profile import Profile

DRIFT_DETECTED = "DriftDetected"
PERFORMANCE_DEGRADED = "PerformanceDegraded"
INSUFFICIENT_DATA = "InsufficientData"

_LOWER_IS_BETTER = frozenset({PerformanceMetric.MAE, PerformanceMetric.RMSE})


class Change(StrEnum):
    """A transition worth telling people about (an Event, the webhook)."""

    DRIFT_CONFIRMED = "DriftConfirmed"
    DRIFT_CLEARED = "DriftCleared"
    PERFORMANCE_CONFIRMED = "PerformanceDegraded"
    PERFORMANCE_CLEARED = "PerformanceRecovered"


@dataclass(frozen=True, kw_only=True)
class Previous:
    """What the last check of the same reference left behind (from the status)."""

    consecutive: int = 0
    performance_consecutive: int = 0
    last_retrain: datetime | None = None
    """Request time of a retrain recorded before ``status.retrain`` existed."""
    retrain: RetrainStatus | None = None
    """The last retrain requested (``status.retrain``)."""
    dataset_version: str | None = None
    """Validated version of the retrain pipeline's Dataset now (read only after a NoNewData retrain)."""


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """Everything one check decided."""

    samples: int
    labels: int
    insufficient: list[str]
    """Why the check is inconclusive (empty when it is not)."""
    report: stats.DriftReport
    drifted: bool | None
    """This check's drift verdict; None without enough samples."""
    consecutive: int
    confirmed: bool
    performance: PerformanceResult | None
    performance_confirmed: bool
    changes: list[Change]
    retrain: RunTrigger | None
    """Trigger of the retrain to request now, if any."""
    wanted: RunTrigger | None
    """Trigger of the retrain this check would request if nothing held it back."""
    held: retrains.Hold | None
    """Set when a confirmed problem would retrain but something holds it back."""


def evaluate(
    spec: DriftPolicySpec,
    *,
    profile: Profile,
    counts: Counts,
    reference_metrics: Mapping[str, float],
    previous: Previous,
    now: datetime,
) -> Outcome:
    """Judge one window against the reference (see the module docstring for the rules)."""
    samples = counts.predictions
    report = stats.check(
        profile, counts.features(profile),
        features=spec.features, drift_share=spec.drift_share,
        prediction=spec.prediction_drift, current_prediction=counts.prediction(profile),
    )
    insufficient: list[str] = []
    if samples < spec.min_samples:
        insufficient.append(f"{samples} predictions in the window, minSamples is {spec.min_samples}")
        drifted: bool | None = None
        consecutive = previous.consecutive
    else:
        drifted = report.drifted
        consecutive = previous.consecutive + 1 if drifted else 0

    performance = None
    performance_consecutive = 0
    if spec.performance is not None:
        performance = _performance(spec, counts=counts, reference_metrics=reference_metrics,
                                   previous=previous.performance_consecutive)
        performance_consecutive = performance.consecutive
        if performance.value is None:
            insufficient.append(
                f"{performance.labels} labels in the window, minLabels is {spec.performance.min_labels}")

    confirmed = consecutive >= spec.consecutive
    performance_confirmed = performance_consecutive >= spec.consecutive
    changes: list[Change] = []
    if confirmed and previous.consecutive < spec.consecutive:
        changes.append(Change.DRIFT_CONFIRMED)
    elif not confirmed and previous.consecutive >= spec.consecutive:
        changes.append(Change.DRIFT_CLEARED)
    if performance_confirmed and previous.performance_consecutive < spec.consecutive:
        changes.append(Change.PERFORMANCE_CONFIRMED)
    elif not performance_confirmed and previous.performance_consecutive >= spec.consecutive:
        changes.append(Change.PERFORMANCE_CLEARED)

    # Only a check that itself failed acts: a confirmed state carried over an inconclusive check does not.
    degraded_now = performance is not None and performance.degraded
    trigger = (RunTrigger.PERFORMANCE if performance_confirmed and degraded_now
               else RunTrigger.DRIFT if confirmed and drifted else None)
    wanted = trigger if spec.actions.retrain is not None else None
    held = (retrains.hold(spec, retrain=previous.retrain, last_retrain=previous.last_retrain,
                          dataset_version=previous.dataset_version, now=now) if wanted is not None else None)
    return Outcome(
        samples=samples, labels=counts.feedback, insufficient=insufficient, report=report,
        drifted=drifted, consecutive=consecutive, confirmed=confirmed,
        performance=performance, performance_confirmed=performance_confirmed,
        changes=changes, retrain=wanted if held is None else None, wanted=wanted, held=held,
    )


def live_metric(metric: PerformanceMetric | str, counts: Counts) -> float | None:
    """The metric over the labelled predictions of the window (None without labels)."""
    n = counts.feedback
    if n <= 0:
        return None
    match PerformanceMetric(metric):
        case PerformanceMetric.ACCURACY:
            return counts.get(CORRECT) / n
        case PerformanceMetric.MAE:
            return counts.get(ABS_ERROR) / n
        case PerformanceMetric.RMSE:
            return math.sqrt(counts.get(SQUARED_ERROR) / n)


def _performance(
    spec: DriftPolicySpec, *, counts: Counts, reference_metrics: Mapping[str, float], previous: int,
) -> PerformanceResult:
    assert spec.performance is not None
    metric = PerformanceMetric(spec.performance.metric)
    labels = counts.feedback
    reference = reference_metrics.get(metric.value)
    if labels < spec.performance.min_labels:
        return PerformanceResult(metric=metric, reference=reference, labels=labels, consecutive=previous)
    value = live_metric(metric, counts)
    if value is None or reference is None:
        # No hold-out value to compare with: shown, never judged.
        return PerformanceResult(metric=metric, value=value, reference=reference, labels=labels)
    drop = value - reference if metric in _LOWER_IS_BETTER else reference - value
    degraded = drop > spec.performance.max_drop
    return PerformanceResult(metric=metric, value=value, reference=reference, labels=labels,
                             degraded=degraded, consecutive=previous + 1 if degraded else 0)


def conditions(
    spec: DriftPolicySpec, outcome: Outcome, *, existing: Sequence[Mapping[str, Any]] | None,
) -> list[Verdict]:
    """The conditions this check publishes; a verdict it could not reach keeps the previous one."""
    r = outcome.report
    out = [Verdict(type=READY, status=True, reason="Checked",
                   message=f"checked {outcome.samples} predictions against the reference")]
    if outcome.insufficient:
        out.append(Verdict(type=INSUFFICIENT_DATA, status=True,
                           reason="TooFewSamples" if outcome.drifted is None else "TooFewLabels",
                           message="; ".join(outcome.insufficient)))
    else:
        out.append(Verdict(type=INSUFFICIENT_DATA, status=False, reason="EnoughData",
                           message=f"{outcome.samples} predictions, {outcome.labels} labels"))

    if outcome.drifted is None:
        if find(existing, DRIFT_DETECTED) is None:
            out.append(Verdict(type=DRIFT_DETECTED, status=ConditionStatus.UNKNOWN, reason="InsufficientData",
                               message="no check with enough samples yet"))
    else:
        what = _drift_summary(spec, r)
        if outcome.confirmed:
            out.append(Verdict(type=DRIFT_DETECTED, status=True, reason="DriftConfirmed",
                               message=f"{what}; {outcome.consecutive} failing checks in a row"))
        elif outcome.drifted:
            out.append(Verdict(type=DRIFT_DETECTED, status=False, reason="DriftSuspected",
                               message=f"{what}; {outcome.consecutive} of {spec.consecutive} checks"))
        else:
            out.append(Verdict(type=DRIFT_DETECTED, status=False, reason="NoDrift", message=what))

    p = outcome.performance
    if p is None:
        out.append(Verdict(type=PERFORMANCE_DEGRADED, status=False, reason="NotConfigured",
                           message="spec.performance is not set"))
    elif p.value is None or p.reference is None:
        if p.reference is None and p.value is not None:
            out.append(Verdict(type=PERFORMANCE_DEGRADED, status=ConditionStatus.UNKNOWN,
                               reason="NoReference",
                               message=f"the served ModelVersion has no {p.metric} in spec.metrics"))
        elif find(existing, PERFORMANCE_DEGRADED) is None:
            out.append(Verdict(type=PERFORMANCE_DEGRADED, status=ConditionStatus.UNKNOWN,
                               reason="InsufficientData", message="no check with enough labels yet"))
    else:
        what = f"live {p.metric} {p.value:.4g} vs {p.reference:.4g} at training over {p.labels} labels"
        if outcome.performance_confirmed:
            out.append(Verdict(type=PERFORMANCE_DEGRADED, status=True, reason="PerformanceDropped",
                               message=f"{what}; {p.consecutive} degraded checks in a row"))
        else:
            out.append(Verdict(type=PERFORMANCE_DEGRADED, status=False,
                               reason="DropSuspected" if p.degraded else "WithinMaxDrop", message=what))
    return out


def record(outcome: Outcome, *, reference: str, now: datetime, report_uri: str | None) -> CheckRecord:
    """This check in brief, for the status' list of recent checks."""
    r = outcome.report
    return CheckRecord(
        time=now.replace(microsecond=0), model_version=reference, samples=outcome.samples,
        drifted=outcome.drifted, drift_share=r.drift_share,
        drifted_features=[f.name for f in r.features if f.drifted][:MAX_DRIFTED_NAMES],
        prediction_drifted=r.prediction.drifted if r.prediction is not None else None, report_uri=report_uri)


def status(
    outcome: Outcome, *, reference: str, now: datetime, retrain_token: str | None,
    retrain_trigger: RunTrigger | None = None, report_uri: str | None = None,
    previous_checks: Sequence[Mapping[str, Any]] = (), retrain: RetrainStatus | None = None,
) -> dict[str, Any]:
    """The status fields of this check, as a merge patch (None clears a field).

    ``report_uri`` is this check's report, if it wrote one; ``previous_checks`` the status'
    list of recent checks, to which this one is prepended.
    """
    r = outcome.report
    brief = record(outcome, reference=reference, now=now, report_uri=report_uri).to_wire()
    patch: dict[str, Any] = {
        "lastCheckTime": _time(now),
        "modelVersion": reference,
        "samples": outcome.samples,
        "features": [f.to_wire() for f in r.features],
        "prediction": r.prediction.to_wire() if r.prediction is not None else None,
        "driftShare": r.drift_share,
        "drifted": outcome.drifted,
        "consecutive": outcome.consecutive,
        "performance": outcome.performance.to_wire() if outcome.performance is not None else None,
        "checks": [brief, *previous_checks][:MAX_CHECK_RECORDS],
    }
    if retrain is not None:
        # Every field, None as null: a merge patch keeps what it does not name (the last outcome).
        patch["retrain"] = retrain.model_dump(mode="json", by_alias=True)
    if report_uri is not None:
        patch["reportUri"] = report_uri
        patch["reportTime"] = _time(now)
    if retrain_token is not None:
        patch["lastRetrainTime"] = _time(now)
        patch["lastRetrainRun"] = retrain_token
        patch["lastRetrainTrigger"] = retrain_trigger.value if retrain_trigger is not None else None
        patch["lastRetrainReportUri"] = report_uri
    return patch


def summary(spec: DriftPolicySpec, outcome: Outcome) -> str:
    """One line for Events and logs."""
    parts = [_drift_summary(spec, outcome.report)]
    p = outcome.performance
    if p is not None and p.value is not None and p.reference is not None:
        parts.append(f"live {p.metric} {p.value:.4g} (training {p.reference:.4g}, {p.labels} labels)")
    return "; ".join(parts)


def _drift_summary(spec: DriftPolicySpec, report: stats.DriftReport) -> str:
    drifted = [f.name for f in report.features if f.drifted]
    share = "n/a" if report.drift_share is None else f"{report.drift_share:.2f}"
    text = f"drift share {share} (threshold {spec.drift_share:g})"
    if drifted:
        text += ", drifted: " + ", ".join(drifted[:10]) + (" ..." if len(drifted) > 10 else "")
    pred = report.prediction
    if pred is not None and pred.statistic is not None:
        text += f"; prediction {pred.method} {pred.statistic:.4g}{' drifted' if pred.drifted else ''}"
    return text


def _time(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")

