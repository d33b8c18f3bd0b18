"""Verdicts on a canary from the counters its predictor pods export, compared with stable's.

A check looks at one window: everything the pods of each version counted since the
current step began. Per pod the window keeps the counter values at its start
(``base``) and at the last scrape (``last``), so that

* a pod created after the window started counts from zero;
* a pod that restarted (a counter went down) keeps what it had counted and counts
  on from zero;
* a pod that went away keeps what it contributed;

and because the window lives in the object's status, an operator restart neither
resets nor double-counts it.

A metric without enough data is Inconclusive, never a silent Pass: a step only
advances on a Pass, and only Fail counts towards the failure limit.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from loopwright.api.analysis import Analysis
from loopwright.api.common import parse_duration
from loopwright.api.deployment import (
    AnalysisResult,
    Counters,
    PodWindow,
    Verdict,
)
from loopwright.core.drift.stats import psi
from loopwright.core.exposition import PodMetrics, PodTarget, histogram_quantile
from loopwright.core.profile import FeatureKind, FeatureProfile

REQUESTS = "loopwright_predictor_requests_total"
LATENCY = "loopwright_predictor_request_duration_seconds"
PREDICTION_BINS = "loopwright_predictor_prediction_bin_total"

ERROR_RATE = "errorRate"
LATENCY_P95 = "latencyP95"
LATENCY_RELATIVE = "latencyP95RelativeToStable"
PREDICTION_DRIFT = "predictionDrift"
WINDOW_PODS = 200


@dataclass(frozen=True, kw_only=True)
class Totals:
    """One version's counts over the window, summed over its pods."""

    requests: float
    errors: float
    latency: list[tuple[float, float]]  # cumulative (le, count), +Inf last
    predictions: list[float]


def latency_bounds(pod: PodMetrics) -> list[float]:
    """The finite ``le`` bounds of a pod's latency histogram, ascending."""
    bounds = {float(s.labels["le"]) for s in pod.select(LATENCY + "_bucket") if "le" in s.labels}
    return sorted(b for b in bounds if math.isfinite(b))


def counters(pod: PodMetrics, *, bounds: Sequence[float]) -> Counters:
    """The counters the analysis needs from one scrape, latency aligned on ``bounds``."""
    requests = 0.0
    errors = 0.0
    for s in pod.select(REQUESTS):
        requests += s.value
        if s.labels.get("code", "").startswith("5"):
            errors += s.value
    by_le = {float(s.labels["le"]): s.value for s in pod.select(LATENCY + "_bucket") if "le" in s.labels}
    latency = [by_le.get(b, 0.0) for b in bounds] + [by_le.get(math.inf, 0.0)]
    bins: dict[int, float] = {}
    for s in pod.select(PREDICTION_BINS):
        if s.labels.get("bin", "").isdigit():
            bins[int(s.labels["bin"])] = bins.get(int(s.labels["bin"]), 0.0) + s.value
    predictions = [bins.get(i, 0.0) for i in range(max(bins, default=-1) + 1)]
    return Counters(requests=requests, errors=errors, latency=latency, predictions=predictions)


def _minus(a: Sequence[float], b: Sequence[float]) -> list[float]:
    width = max(len(a), len(b))
    return [(a[i] if i < len(a) else 0.0) - (b[i] if i < len(b) else 0.0) for i in range(width)]


def _restarted(current: Counters, last: Counters) -> bool:
    return current.requests < last.requests or sum(current.predictions) < sum(last.predictions)


def update_window(
    pods: Sequence[PodWindow],
    *,
    scraped: Iterable[tuple[PodTarget, int, Counters]],
    window_start: datetime,
    created: Mapping[str, datetime | None],
) -> list[PodWindow]:
    """The window after one scrape; ``scraped`` holds (pod, version, counters) of pods that answered.

    ``created`` maps pod UIDs to their creation time: a pod first seen now that was
    created after the window started has counted only window traffic (base zero);
    an older one is baselined at its current values.
    """
    by_uid = {p.uid: p for p in pods}
    for target, version, current in scraped:
        known = by_uid.get(target.uid)
        if known is None:
            born = created.get(target.uid)
            fresh = born is not None and born >= window_start
            by_uid[target.uid] = PodWindow(
                uid=target.uid,
                name=target.name,
                version=version,
                base=Counters() if fresh else current,
                last=current,
            )
            continue
        base = known.base
        if _restarted(current, known.last):
            # Keep the pre-restart contribution (last - base) by moving the base below zero.
            base = Counters(
                requests=base.requests - known.last.requests,
                errors=base.errors - known.last.errors,
                latency=_minus(base.latency, known.last.latency),
                predictions=_minus(base.predictions, known.last.predictions),
            )
        by_uid[target.uid] = known.model_copy(update={"base": base, "last": current})
    # The status holds at most WINDOW_PODS pods; beyond that (pods replaced again and again
    # within one step) the oldest members are dropped rather than making the status unwritable.
    return list(by_uid.values())[-WINDOW_PODS:]


def totals(pods: Iterable[PodWindow], *, version: int, bounds: Sequence[float]) -> Totals:
    """Window counts of one version (last - base, summed over its pods)."""
    requests = errors = 0.0
    latency = [0.0] * (len(bounds) + 1)
    predictions: list[float] = []
    for p in pods:
        if p.version != version:
            continue
        requests += p.last.requests - p.base.requests
        errors += p.last.errors - p.base.errors
        latency = [
            a + b
            for a, b in zip(
                latency, _padded(_minus(p.last.latency, p.base.latency), len(latency)), strict=True
            )
        ]
        delta = _minus(p.last.predictions, p.base.predictions)
        predictions = [
            a + b
            for a, b in zip(_padded(predictions, len(delta)), _padded(delta, len(predictions)), strict=True)
        ]
    return Totals(
        requests=requests,
        errors=errors,
        latency=list(zip([*bounds, math.inf], latency, strict=True)),
        predictions=predictions,
    )


def _padded(values: Sequence[float], width: int) -> list[float]:
    return [*values, *([0.0] * (width - len(values)))]


def evaluate(
    *,
    spec: Analysis,
    canary: Totals,
    stable: Totals,
    canary_prediction: FeatureProfile | None,
    stable_prediction: FeatureProfile | None,
    prometheus: Sequence[AnalysisResult] = (),
) -> tuple[list[AnalysisResult], Verdict]:
    """Every configured metric's result with its numbers, and the overall verdict.

    ``prometheus`` are the results of the rollout's Prometheus checks
    (:mod:`loopwright.core.rollout.prometheus`), judged already.

    Overall: Fail if any metric fails, else Inconclusive if any lacks data, else Pass.
    """
    metrics = spec.metrics
    enough = canary.requests >= max(spec.min_requests, 1)
    short = f"{canary.requests:.0f} canary requests in the window, fewer than minRequests {spec.min_requests}"
    results = [_error_rate(canary, bound=metrics.error_rate.max, enough=enough, short=short)]
    if metrics.latency_p95 is not None:
        results += _latency(canary, stable, spec=spec, enough=enough, short=short)
    if metrics.prediction_drift is not None:
        results.append(
            _prediction_drift(
                canary,
                stable,
                bound=metrics.prediction_drift.max,
                min_requests=spec.min_requests,
                canary_profile=canary_prediction,
                stable_profile=stable_prediction,
            )
        )
    results += prometheus
    return results, overall(results)


def overall(results: Iterable[AnalysisResult]) -> Verdict:
    verdicts = {r.verdict for r in results}
    if Verdict.FAIL in verdicts:
        return Verdict.FAIL
    if Verdict.INCONCLUSIVE in verdicts or not verdicts:
        return Verdict.INCONCLUSIVE
    return Verdict.PASS


def _error_rate(canary: Totals, *, bound: float, enough: bool, short: str) -> AnalysisResult:
    if not enough:
        return AnalysisResult(metric=ERROR_RATE, threshold=bound, verdict=Verdict.INCONCLUSIVE, message=short)
    rate = canary.errors / canary.requests
    verdict = Verdict.PASS if rate <= bound else Verdict.FAIL
    return AnalysisResult(
        metric=ERROR_RATE,
        value=round(rate, 6),
        threshold=bound,
        verdict=verdict,
        message=f"{canary.errors:.0f} of {canary.requests:.0f} canary requests answered 5xx "
        f"({rate:.2%}, at most {bound:.2%} allowed)",
    )


def _p95(totals: Totals) -> float | None:
    return histogram_quantile(0.95, totals.latency)


def _latency(
    canary: Totals, stable: Totals, *, spec: Analysis, enough: bool, short: str
) -> list[AnalysisResult]:
    bound = spec.metrics.latency_p95
    assert bound is not None
    p95 = _p95(canary) if enough else None
    results: list[AnalysisResult] = []
    if bound.max is not None:
        limit = parse_duration(bound.max).total_seconds()
        if p95 is None:
            results.append(
                AnalysisResult(
                    metric=LATENCY_P95,
                    threshold=limit,
                    verdict=Verdict.INCONCLUSIVE,
                    message=short if not enough else "no latency observations",
                )
            )
        else:
            verdict = Verdict.PASS if p95 <= limit else Verdict.FAIL
            results.append(
                AnalysisResult(
                    metric=LATENCY_P95,
                    value=round(p95, 6),
                    threshold=limit,
                    verdict=verdict,
                    message=f"canary p95 {p95 * 1000:.1f} ms, at most {limit * 1000:.1f} ms allowed",
                )
            )
    if bound.max_relative_to_stable is not None:
        ratio = bound.max_relative_to_stable
        stable_p95 = _p95(stable) if stable.requests >= max(spec.min_requests, 1) else None
        if p95 is None or stable_p95 is None:
            why = (
                short
                if not enough
                else (
                    f"{stable.requests:.0f} stable requests in the window, fewer than minRequests "
                    f"{spec.min_requests}"
                )
            )
            results.append(
                AnalysisResult(
                    metric=LATENCY_RELATIVE, threshold=ratio, verdict=Verdict.INCONCLUSIVE, message=why
                )
            )
        else:
            # A p95 inside the first bucket interpolates towards zero; compare against at
            # least a tenth of a millisecond so a very fast stable does not make noise fatal.
            relative = p95 / max(stable_p95, 1e-4)
            verdict = Verdict.PASS if relative <= ratio else Verdict.FAIL
            results.append(
                AnalysisResult(
                    metric=LATENCY_RELATIVE,
                    value=round(relative, 4),
                    stable_value=round(stable_p95, 6),
                    threshold=ratio,
                    verdict=verdict,
                    message=f"canary p95 {p95 * 1000:.1f} ms is {relative:.2f}x stable's "
                    f"{stable_p95 * 1000:.1f} ms, at most {ratio:g}x allowed",
                )
            )
    return results


def align_predictions(
    counts: Sequence[float], *, source: FeatureProfile, target: FeatureProfile
) -> list[float] | None:
    """Counts binned by ``source``'s reference bins, re-expressed in ``target``'s bins.

    Two versions of a model have their own reference profiles. Classes are matched by
    name (a class unknown to ``target`` goes to its "unseen" bin). Numeric predictions
    are re-binned assuming values spread evenly within each source bin, the outer bins
    bounded by the source's min and max; with identical edges this is exact. None when
    the two profiles are of different kinds.
    """
    if source.kind != target.kind:
        return None
    out = [0.0] * target.n_bins
    if source.kind == FeatureKind.CATEGORICAL:
        position = {c: i for i, c in enumerate(target.categories or ())}
        unseen = target.n_bins - 1
        for i, n in enumerate(counts):
            category = (source.categories or ())[i] if i < len(source.categories or ()) else None
            out[position.get(category, unseen) if category is not None else unseen] += n
        return out
    src = list(source.edges or ())
    dst = np.asarray(target.edges or (), dtype=np.float64)
    if src == dst.tolist():
        return [float(c) for c in _padded(counts, len(out))[: len(out)]]
    lows = [source.min if source.min is not None else (src[0] if src else 0.0), *src]
    highs = [*src, source.max if source.max is not None else (src[-1] if src else 0.0)]
    for i, n in enumerate(counts[: len(lows)]):
        if n == 0:
            continue
        low, high = lows[i], max(highs[i], lows[i])
        if high <= low:
            out[int(np.searchsorted(dst, low, side="right"))] += n
            continue
        # Cut points of the target inside (low, high) split the source bin proportionally.
        cuts = [low, *[float(e) for e in dst if low < e < high], high]
        for a, b in itertools.pairwise(cuts):
            out[int(np.searchsorted(dst, a, side="right"))] += n * (b - a) / (high - low)
    return out


def _prediction_drift(
    canary: Totals,
    stable: Totals,
    *,
    bound: float,
    min_requests: int,
    canary_profile: FeatureProfile | None,
    stable_profile: FeatureProfile | None,
) -> AnalysisResult:
    def inconclusive(message: str) -> AnalysisResult:
        return AnalysisResult(
            metric=PREDICTION_DRIFT, threshold=bound, verdict=Verdict.INCONCLUSIVE, message=message
        )

    if canary_profile is None or stable_profile is None:
        return inconclusive("no reference prediction bins in the profiles of both versions")
    need = max(min_requests, 1)
    n_canary, n_stable = sum(canary.predictions), sum(stable.predictions)
    if n_canary < need or n_stable < need:
        return inconclusive(
            f"{n_canary:.0f} canary and {n_stable:.0f} stable predictions in the window, "
            f"each needs minRequests {min_requests}"
        )
    aligned = align_predictions(canary.predictions, source=canary_profile, target=stable_profile)
    if aligned is None:
        return inconclusive("canary and stable predict different kinds of values (classes vs numbers)")
    reference = _padded(stable.predictions, stable_profile.n_bins)[: stable_profile.n_bins]
    value = float(psi([reference], [aligned])[0])
    verdict = Verdict.PASS if value <= bound else Verdict.FAIL
    return AnalysisResult(
        metric=PREDICTION_DRIFT,
        value=round(value, 6),
        threshold=bound,
        verdict=verdict,
        message=f"PSI of canary predictions against stable's: {value:.4f}, at most {bound:g} allowed "
        f"({n_canary:.0f} canary, {n_stable:.0f} stable predictions)",
    )
