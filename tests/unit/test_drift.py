import math

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from loopwright.api.driftpolicy import FeatureDrift, FeatureOverride, PredictionDrift
from loopwright.core.drift import stats
from loopwright.core.profile import Profile, profile_categorical, profile_numeric

RNG = np.random.default_rng(42)


def _pairs(n=30):
    """Random count vectors of varied lengths, some with empty bins."""
    for _ in range(n):
        k = int(RNG.integers(2, 15))
        ref = RNG.integers(0, 200, size=k)
        cur = RNG.integers(0, 200, size=k)
        ref[RNG.random(k) < 0.15] = 0
        cur[RNG.random(k) < 0.15] = 0
        ref[0] += 1
        cur[-1] += 1
        yield ref, cur


def test_psi_hand_worked():
    # p = (0.5, 0.5), q = (0.25, 0.75): (0.25-0.5)ln(0.5) + (0.75-0.5)ln(1.5)
    expected = -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    assert stats.psi([50, 50], [25, 75])[0] == pytest.approx(expected)
    assert stats.psi([10, 20, 30], [1, 2, 3])[0] == pytest.approx(0.0)


def test_psi_empty_bin_uses_epsilon():
    # Current has a bin the reference never saw: p = (1, 0) -> (1, 1e-4), q = (0.5, 0.5).
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert stats.psi([100, 0], [50, 50])[0] == pytest.approx(expected)
    assert math.isfinite(stats.psi([100, 0], [0, 100])[0])


@pytest.mark.parametrize("base", [2.0, math.e])
def test_jensen_shannon_matches_scipy(base):
    for ref, cur in _pairs():
        assert stats.jensen_shannon(ref, cur, base=base)[0] == pytest.approx(
            jensenshannon(ref, cur, base=base), abs=1e-12)


def test_jensen_shannon_bounds():
    assert stats.jensen_shannon([1, 0], [0, 1])[0] == pytest.approx(1.0)
    assert stats.jensen_shannon([3, 4], [30, 40])[0] == pytest.approx(0.0, abs=1e-7)


def test_chi_squared_matches_scipy_contingency():
    for ref, cur in _pairs():
        table = np.array([ref, cur])
        table = table[:, table.sum(axis=0) > 0]
        chi2, p, dof, _ = sps.chi2_contingency(table, correction=False)
        ours_stat, ours_p, ours_dof = stats.chi_squared(ref, cur)
        assert ours_stat[0] == pytest.approx(chi2, rel=1e-10)
        assert ours_p[0] == pytest.approx(p, rel=1e-9, abs=1e-300)
        assert ours_dof[0] == dof


@pytest.mark.parametrize("dof", [1, 2, 3, 4, 7, 10, 49, 50])
@pytest.mark.parametrize("x", [0.001, 0.5, 1.0, 3.84, 10.0, 60.0, 300.0, 5000.0])
def test_chi2_sf_matches_scipy(x, dof):
    assert stats.chi2_sf(x, dof) == pytest.approx(sps.chi2.sf(x, dof), rel=1e-9, abs=1e-300)


def test_chi2_sf_edge_cases():
    assert stats.chi2_sf(0.0, 3) == 1.0
    assert stats.chi2_sf(5.0, 0) == 1.0
    assert stats.chi2_sf(1e9, 51) == 0.0


def test_chi_squared_unseen_category_stays_finite():
    _, p, dof = stats.chi_squared([100, 100, 0], [100, 100, 40])
    assert 0.0 <= p[0] < 1e-6
    assert dof[0] == 2


def test_batched_rows_equal_single_rows_and_padding_is_neutral():
    pairs = list(_pairs(10))
    ref = stats.stack([r for r, _ in pairs])
    cur = stats.stack([c for _, c in pairs])
    for method in ("psi", "jensenShannon", "chiSquared"):
        batched = stats.statistic(method, ref, cur)
        for i, (r, c) in enumerate(pairs):
            assert batched[i] == pytest.approx(stats.statistic(method, r, c)[0], rel=1e-12)


def _profile():
    rng = np.random.default_rng(0)
    return Profile(
        rows=5000,
        features={
            "a": profile_numeric(rng.normal(size=5000)),
            "b": profile_numeric(rng.uniform(size=5000)),
            "c": profile_categorical(rng.choice(["x", "y", "z"], size=5000)),
            "d": profile_numeric(rng.normal(size=5000)),
        },
        prediction=profile_categorical(rng.choice(["0", "1"], size=1000), categories=["0", "1"]),
    )


def _current(profile, *, shift_a=0.0, new_category=0):
    rng = np.random.default_rng(1)
    return {
        "a": profile.features["a"].count(rng.normal(loc=shift_a, size=3000))[0],
        "b": profile.features["b"].count(rng.uniform(size=3000))[0],
        "c": profile.features["c"].count(
            np.concatenate([rng.choice(["x", "y", "z"], size=3000), np.full(new_category, "new")]))[0],
    }


def test_check_no_drift_in_distribution():
    profile = _profile()
    report = stats.check(profile, _current(profile), prediction=PredictionDrift(),
                         current_prediction=[480, 520, 0])
    assert [f.drifted for f in report.features] == [False, False, False, False]
    assert report.drift_share == 0.0
    assert not report.drifted
    assert report.prediction.statistic < 0.01
    # d has no data: inconclusive, shown without a statistic and left out of the share.
    d = next(f for f in report.features if f.name == "d")
    assert d.statistic is None
    assert report.samples == {"a": 3000, "b": 3000, "c": 3000}


def test_check_detects_shift_and_unseen_category():
    profile = _profile()
    report = stats.check(profile, _current(profile, shift_a=1.0, new_category=2000), drift_share=0.5)
    by_name = {f.name: f for f in report.features}
    assert by_name["a"].drifted
    assert by_name["a"].statistic > 0.25
    assert by_name["c"].drifted
    assert not by_name["b"].drifted
    assert report.drift_share == pytest.approx(2 / 3)
    assert report.dataset_drift


def test_overrides_method_threshold_and_ignore():
    profile = _profile()
    policy = FeatureDrift(
        method="psi",
        threshold=0.3,
        overrides=[
            FeatureOverride(feature="a", method="jensenShannon"),
            FeatureOverride(feature="b", threshold=0.0001),
            FeatureOverride(feature="c", ignore=True),
            FeatureOverride(feature="d", method="chiSquared", threshold=0.01),
        ],
    )
    report = stats.check(profile, _current(profile, shift_a=1.0), features=policy)
    by_name = {f.name: f for f in report.features}
    assert set(by_name) == {"a", "b", "d"}
    assert by_name["a"].method == "jensenShannon"
    assert by_name["a"].threshold == 0.1
    assert by_name["b"].threshold == 0.0001
    assert by_name["b"].drifted
    assert by_name["d"].threshold == 0.01


def test_chi_squared_verdict_is_below_threshold():
    assert stats.is_drift("chiSquared", 0.01, 0.05)
    assert not stats.is_drift("chiSquared", 0.5, 0.05)
    assert stats.is_drift("psi", 0.3, 0.2)


def test_prediction_drift():
    profile = _profile()
    report = stats.check(profile, {}, prediction=PredictionDrift(method="psi", threshold=0.1),
                         current_prediction=[900, 100, 0])
    assert report.prediction.drifted
    assert report.drifted
    assert report.drift_share is None


def test_bin_count_mismatch_is_an_error():
    profile = _profile()
    with pytest.raises(ValueError, match="bins"):
        stats.check(profile, {"a": [1, 2, 3]})
