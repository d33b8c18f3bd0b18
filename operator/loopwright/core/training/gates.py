"""Validation gates of a ModelVersion: the artifact, absolute thresholds, the champion.

Every check is kept with its value and threshold, so a Rejected version says which number
failed and by how much. A metric the trainer did not compute fails its gate: a missing number
is inconclusive, never a silent pass.

Without a producing pipeline (a ModelVersion made by hand, or one whose pipeline is gone) there
are no thresholds to apply: the version is validated on its artifact checks alone, and the
verdict says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from loopwright.api.modelversion import Champion, Check, ModelPhase
from loopwright.api.pipeline import LOWER_IS_BETTER, NoChampion, PipelineValidation


@dataclass(frozen=True, kw_only=True)
class Incumbent:
    """The version carrying the champion alias."""

    name: str
    version: int
    metrics: Mapping[str, float]


@dataclass(frozen=True, kw_only=True)
class Verdict:
    phase: ModelPhase
    reason: str
    message: str
    checks: list[Check] = field(default_factory=list)
    champion: Champion | None = None


def thresholds(metrics: Mapping[str, float], validation: PipelineValidation) -> list[Check]:
    """One check per bound (``min:<metric>``, ``max:<metric>``)."""
    checks: list[Check] = []
    for gate in validation.thresholds:
        metric = str(gate.metric)
        value = metrics.get(metric)
        for bound, limit in (("min", gate.min), ("max", gate.max)):
            if limit is None:
                continue
            if value is None:
                checks.append(Check(name=f"{bound}:{metric}", metric=metric, threshold=limit, passed=False,
                                    message=f"{metric} was not computed for this version"))
                continue
            passed = value >= limit if bound == "min" else value <= limit
            sign = ">=" if bound == "min" else "<="
            checks.append(Check(name=f"{bound}:{metric}", metric=metric, value=value, threshold=limit,
                                passed=passed,
                                message=f"{metric} {value:.6g} {'' if passed else 'not '}{sign} {limit:.6g}"))
    return checks


def champion_check(
    metrics: Mapping[str, float],
    validation: PipelineValidation,
    *,
    primary_metric: str | None,
    incumbent: Incumbent | None,
    model: str,
) -> tuple[Check | None, Champion | None]:
    """Compare with the champion; ``(None, None)`` when the comparison is disabled."""
    rule = validation.champion
    if not rule.enabled:
        return None, None
    metric = str(rule.metric) if rule.metric else primary_metric
    if incumbent is None:
        passed = rule.when_no_champion == NoChampion.PASS
        message = (f"no version of {model} carries the {rule.alias!r} alias: "
                   + ("accepted on the other checks alone (whenNoChampion=Pass)" if passed
                      else "a champion is required (whenNoChampion=Reject)"))
        return Check(name="champion", metric=metric, passed=passed, message=message), None
    if metric is None:
        return Check(name="champion", passed=False,
                     message="no metric to compare: set validation.champion.metric"), None
    value = metrics.get(metric)
    theirs = incumbent.metrics.get(metric)
    if value is None or theirs is None:
        whose = "this version" if value is None else f"the champion {incumbent.name}"
        return Check(name="champion", metric=metric, value=value, passed=False,
                     message=f"{metric} is missing for {whose}: the comparison is inconclusive"), None
    lower = metric in LOWER_IS_BETTER
    limit = theirs + rule.margin if lower else theirs - rule.margin
    passed = value <= limit if lower else value >= limit
    relation = ("<=" if lower else ">=") if passed else (">" if lower else "<")
    message = (f"{metric} {value:.6g} {relation} {limit:.6g} (champion {incumbent.name} {theirs:.6g}, "
               f"margin {rule.margin:g}, {'lower' if lower else 'higher'} is better)")
    champion = Champion(name=incumbent.name, version=incumbent.version, metric=metric, value=theirs)
    return Check(name="champion", metric=metric, value=value, threshold=limit, passed=passed,
                 message=message), champion


def evaluate(
    *,
    model: str,
    metrics: Mapping[str, float],
    primary_metric: str | None,
    artifact: Check,
    validation: PipelineValidation | None,
    incumbent: Incumbent | None,
) -> Verdict:
    """The verdict on a verified (or refused) artifact with the pipeline's gates, if any."""
    checks = [artifact]
    champion = None
    if validation is not None and artifact.passed:
        checks += thresholds(metrics, validation)
        check, champion = champion_check(metrics, validation, primary_metric=primary_metric,
                                         incumbent=incumbent, model=model)
        if check is not None:
            checks.append(check)
    failed = [c for c in checks if not c.passed]
    if failed:
        reason = "ChecksFailed" if artifact.passed else "ArtifactRejected"
        return Verdict(phase=ModelPhase.REJECTED, reason=reason,
                       message="; ".join(f"{c.name}: {c.message}" for c in failed)[:1024],
                       checks=checks, champion=champion)
    if validation is None:
        return Verdict(phase=ModelPhase.VALIDATED, reason="ArtifactVerified", checks=checks,
                       message="no TrainingPipeline gates apply: validated on the artifact checks alone")
    return Verdict(phase=ModelPhase.VALIDATED, reason="ChecksPassed", checks=checks, champion=champion,
                   message=f"all {len(checks)} checks passed")
