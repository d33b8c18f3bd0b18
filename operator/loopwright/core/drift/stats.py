"""Drift statistics on binned counts against a frozen reference profile.

The reference is the :class:`~loopwright.core.profile.Profile` written at training
time; the current window is the per-bin counts the predictors export for the
same bins. No raw data is needed on either side, and every statistic below
runs on all features at once: counts are stacked into a (features x bins)
matrix, zero-padded, and each formula is chosen so that a bin empty on both
sides contributes exactly nothing (padding is neutral).

Missing values are not in the bins (the profile and the predictor count them
separately), so they never move a statistic.

Methods (thresholds and verdicts as in :mod:`loopwright.api.driftpolicy`):

* ``psi``, population stability index: ``sum((q - p) * ln(q / p))`` over the
  bin proportions ``p`` (reference) and ``q`` (current). A proportion of zero
  is replaced by ``PSI_EPSILON`` (1e-4, as Evidently does) so that a bin empty
  on one side gives a large but finite contribution. Drift when above the
  threshold (default 0.2).
* ``jensenShannon``: the Jensen-Shannon *distance* with base-2 logarithms,
  ``sqrt(JSD)``, in [0, 1]; identical to
  ``scipy.spatial.distance.jensenshannon(p, q, base=2)``. No smoothing is
  needed. Drift when above the threshold (default 0.1).
* ``chiSquared``: the p-value of Pearson's chi-squared test of homogeneity of
  the 2 x k table (reference counts, current counts) without continuity
  correction, i.e. ``scipy.stats.chi2_contingency(table, correction=False)``
  over the bins that are non-empty on at least one side. Unlike a
  goodness-of-fit test against reference proportions, it stays finite when a
  value appears only in the current window (an unseen category). Drift when
  the p-value is below the threshold (default 0.05). Computed with numpy only
  (closed forms of the chi-squared survival function for integer degrees of
  freedom), so the operator needs no scipy. With very large windows the test
  flags even tiny shifts: that is its nature, prefer psi for large counts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from loopwright.api.driftpolicy import (
    DriftMethod,
    FeatureDrift,
    FeatureResult,
    PredictionDrift,
    StatisticResult,
    default_threshold,
)
from loopwright.core.profile import FeatureProfile, Profile

PSI_EPSILON = 1e-4

FloatArray = NDArray[np.float64]


def stack(rows: Sequence[ArrayLike]) -> FloatArray:
    """Counts of several features as one zero-padded (features x bins) matrix."""
    arrays = [np.asarray(r, dtype=np.float64).ravel() for r in rows]
    width = max((a.size for a in arrays), default=0)
    out = np.zeros((len(arrays), max(width, 1)), dtype=np.float64)
    for i, a in enumerate(arrays):
        out[i, : a.size] = a
    return out


def psi(reference: ArrayLike, current: ArrayLike, *, epsilon: float = PSI_EPSILON) -> FloatArray:
    """Population stability index per row (see the module docstring)."""
    p = _proportions(reference)
    q = _proportions(current)
    p = np.where(p == 0.0, epsilon, p)
    q = np.where(q == 0.0, epsilon, q)
    return np.asarray(np.sum((q - p) * np.log(q / p), axis=-1), dtype=np.float64)


def jensen_shannon(reference: ArrayLike, current: ArrayLike, *, base: float = 2.0) -> FloatArray:
    """Jensen-Shannon distance per row, logarithms in ``base`` (scipy's definition)."""
    p = _proportions(reference)
    q = _proportions(current)
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0.0, p * np.log(p / m), 0.0)
        kl_q = np.where(q > 0.0, q * np.log(q / m), 0.0)
    divergence = np.maximum(np.sum(kl_p + kl_q, axis=-1) / 2.0, 0.0) / math.log(base)
    return np.asarray(np.sqrt(divergence), dtype=np.float64)


def chi_squared(reference: ArrayLike, current: ArrayLike) -> tuple[FloatArray, FloatArray, NDArray[np.int64]]:
    """Statistic, p-value and degrees of freedom of the homogeneity test, per row."""
    ref = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    cur = np.atleast_2d(np.asarray(current, dtype=np.float64))
    ref_total = ref.sum(axis=-1, keepdims=True)
    cur_total = cur.sum(axis=-1, keepdims=True)
    bins = ref + cur
    total = ref_total + cur_total
    used = bins > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        exp_ref = ref_total * bins / total
        exp_cur = cur_total * bins / total
        cells = np.where(used, (ref - exp_ref) ** 2 / exp_ref + (cur - exp_cur) ** 2 / exp_cur, 0.0)
    statistic = np.nan_to_num(cells.sum(axis=-1), nan=0.0)
    dof = used.sum(axis=-1).astype(np.int64) - 1
    # An empty side leaves nothing to compare: no evidence of a difference.
    empty = (ref_total[:, 0] == 0.0) | (cur_total[:, 0] == 0.0)
    statistic = np.where(empty, 0.0, statistic)
    pvalue = np.array([chi2_sf(float(x), int(k)) for x, k in zip(statistic, dof, strict=True)])
    return statistic, pvalue, dof


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for X ~ chi-squared(dof), integer ``dof``; exact closed forms.

    Even dof: ``exp(-x/2) * sum_{i<dof/2} (x/2)^i / i!``. Odd dof:
    ``erfc(sqrt(x/2)) + sum_{i=1}^{(dof-1)/2} exp(-x/2) (x/2)^(i-1/2) / Gamma(i+1/2)``.
    Terms are summed in log space so large ``x`` underflows to 0 instead of
    overflowing. ``dof <= 0`` (a single occupied bin) means no test: 1.0.
    """
    if dof <= 0 or x <= 0.0:
        return 1.0
    h = x / 2.0
    log_h = math.log(h)
    if dof % 2 == 0:
        i = np.arange(dof // 2, dtype=np.float64)
        logs = -h + i * log_h - np.array([math.lgamma(k + 1.0) for k in i])
        return float(min(1.0, np.exp(logs).sum()))
    i = np.arange(1, (dof - 1) // 2 + 1, dtype=np.float64)
    logs = -h + (i - 0.5) * log_h - np.array([math.lgamma(k + 0.5) for k in i])
    return float(min(1.0, math.erfc(math.sqrt(h)) + np.exp(logs).sum()))


def statistic(method: DriftMethod | str, reference: ArrayLike, current: ArrayLike) -> FloatArray:
    """The value a method's threshold applies to, per row (psi, distance or p-value)."""
    match DriftMethod(method):
        case DriftMethod.PSI:
            return psi(reference, current)
        case DriftMethod.JENSEN_SHANNON:
            return jensen_shannon(reference, current)
        case DriftMethod.CHI_SQUARED:
            return chi_squared(reference, current)[1]


def is_drift(method: DriftMethod | str, value: float, threshold: float) -> bool:
    """Distances drift above the threshold; a p-value drifts below it."""
    if DriftMethod(method) == DriftMethod.CHI_SQUARED:
        return value < threshold
    return value > threshold


@dataclass(frozen=True)
class DriftReport:
    """One check: per-feature results, the drift share and the verdicts."""

    features: list[FeatureResult]
    drift_share: float | None
    """Drifted fraction of the features that are not ignored and have data (None if none has)."""
    dataset_drift: bool
    """``drift_share`` reached the policy's ``driftShare``."""
    prediction: StatisticResult | None
    samples: dict[str, int]
    """Current (non-missing) values per feature, for InsufficientData decisions."""

    @property
    def drifted(self) -> bool:
        """Dataset drift or prediction drift."""
        return self.dataset_drift or bool(self.prediction is not None and self.prediction.drifted)


def check(
    profile: Profile,
    current: Mapping[str, ArrayLike],
    *,
    features: FeatureDrift | None = None,
    drift_share: float = 0.5,
    prediction: PredictionDrift | None = None,
    current_prediction: ArrayLike | None = None,
) -> DriftReport:
    """Compare the current bin counts of every feature (and of the predictions) with the profile.

    ``current`` maps a feature name to its counts in the profile's bins (the
    missing count excluded). A feature of the profile absent from ``current``
    has no data: its statistic is None, it does not drift and it is left out
    of the share, because a metric with no data is inconclusive, not a pass.
    """
    features = features or FeatureDrift()
    overrides = {o.feature: o for o in features.overrides}
    names = [n for n in profile.features if not (n in overrides and overrides[n].ignore)]
    methods: dict[str, DriftMethod] = {}
    thresholds: dict[str, float] = {}
    for name in names:
        override = overrides.get(name)
        method = DriftMethod(override.method if override and override.method else features.method)
        methods[name] = method
        # A feature-level threshold belongs to the override's method, else to the policy's.
        if override and override.threshold is not None:
            thresholds[name] = override.threshold
        elif method == features.method and features.threshold is not None:
            thresholds[name] = features.threshold
        else:
            thresholds[name] = default_threshold(method)

    with_data = [n for n in names if n in current]
    values = _batched(
        {n: (profile.features[n], current[n]) for n in with_data}, methods)
    results: list[FeatureResult] = []
    samples: dict[str, int] = {}
    drifted = 0
    for name in names:
        value = values.get(name)
        verdict = value is not None and is_drift(methods[name], value, thresholds[name])
        drifted += int(verdict)
        if name in current:
            samples[name] = int(np.asarray(current[name]).sum())
        results.append(FeatureResult(
            name=name, method=methods[name], statistic=value, threshold=thresholds[name], drifted=verdict))
    share = drifted / len(with_data) if with_data else None
    prediction_result = None
    if prediction is not None and prediction.enabled and profile.prediction is not None:
        method = DriftMethod(prediction.method)
        threshold = prediction.threshold if prediction.threshold is not None else default_threshold(method)
        value = None
        if current_prediction is not None:
            value = _batched({"": (profile.prediction, current_prediction)}, {"": method})[""]
        prediction_result = StatisticResult(
            method=method, statistic=value, threshold=threshold,
            drifted=value is not None and is_drift(method, value, threshold))
    return DriftReport(
        features=results,
        drift_share=share,
        dataset_drift=share is not None and share >= drift_share,
        prediction=prediction_result,
        samples=samples,
    )


def _batched(
    pairs: Mapping[str, tuple[FeatureProfile, ArrayLike]], methods: Mapping[str, DriftMethod]
) -> dict[str, float | None]:
    """Each feature's statistic, computing every method once over all its features."""
    out: dict[str, float | None] = {}
    for method in set(methods[n] for n in pairs):
        group = [n for n in pairs if methods[n] == method]
        refs: list[list[int]] = []
        curs: list[FloatArray] = []
        for name in group:
            ref, cur = pairs[name]
            cur_arr = np.asarray(cur, dtype=np.float64).ravel()
            if cur_arr.size != ref.n_bins:
                what = name or "prediction"
                raise ValueError(f"{what}: {cur_arr.size} current bins, the profile has {ref.n_bins}")
            refs.append(ref.counts)
            curs.append(cur_arr)
        values = statistic(method, stack(refs), stack(curs))
        for name, value, ref_counts, cur_arr in zip(group, values, refs, curs, strict=True):
            has_data = cur_arr.sum() > 0 and sum(ref_counts) > 0
            out[name] = float(value) if has_data else None
    return out


def _proportions(counts: ArrayLike) -> FloatArray:
    c = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    totals = c.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(totals > 0, c / totals, 0.0)
