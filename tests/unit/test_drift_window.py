"""The per-pod counter window: increments, restarts, scaling, vanished pods, ageing out."""

from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from loopwright.core.drift.window import BUCKETS, FEEDBACK, PREDICTIONS, Counts, PodReading, Window, counters
from loopwright.core.exposition import parse_prometheus
from loopwright.core.profile import FeatureProfile, Profile
from loopwright.serving.app import PredictorApp
from loopwright.serving.settings import Settings
from unit.test_predictor import NAMES, _served

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPAN = timedelta(minutes=10)


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _reading(
    uid: str, predictions: float, *, started: datetime | None = None, bin0: float = 0.0
) -> PodReading:
    return PodReading(uid=uid, started=started,
                      counters={PREDICTIONS: predictions, ("bin", "x", "0"): bin0})


def _window() -> Window:
    return Window(reference="m-v1", span=SPAN, start=T0)


def test_counters_from_the_predictor_exposition():
    text = """# HELP loopwright_predictor_feature_bin_total x
# TYPE loopwright_predictor_feature_bin_total counter
loopwright_predictor_feature_bin_total{model="m",version="1",feature="x",bin="0"} 3
loopwright_predictor_feature_bin_total{model="m",version="1",feature="x",bin="1"} 4
loopwright_predictor_feature_bin_total{model="m",version="2",feature="x",bin="1"} 100
loopwright_predictor_feature_missing_total{model="m",version="1",feature="x"} 2
loopwright_predictor_prediction_bin_total{model="m",version="1",bin="1"} 7
loopwright_predictor_predictions_total{model="m",version="1"} 9
loopwright_predictor_feedback_total{model="m",version="1"} 5
loopwright_predictor_feedback_correct_total{model="m",version="1"} 4
loopwright_predictor_requests_total{model="m",version="1",code="200"} 9
"""
    got = counters(parse_prometheus(text), version="1")
    assert got == {
        ("bin", "x", "0"): 3, ("bin", "x", "1"): 4, ("missing", "x"): 2, ("prediction", "1"): 7,
        PREDICTIONS: 9, FEEDBACK: 5, ("feedback_correct",): 4,
    }
    # Without a version filter, samples of both versions add up.
    assert counters(parse_prometheus(text))[("bin", "x", "1")] == 104


def test_old_pod_is_baselined_then_counted_by_increment():
    w = _window()
    w.observe([_reading("a", 1000, started=T0 - timedelta(hours=1))], now=_at(0))
    assert w.counts(now=_at(0)).predictions == 0  # traffic of unknown age is not counted
    w.observe([_reading("a", 1040, started=T0 - timedelta(hours=1))], now=_at(30))
    assert w.counts(now=_at(30)).predictions == 40


def test_pod_started_after_the_window_counts_in_full():
    w = _window()
    w.observe([_reading("new", 25, started=_at(5))], now=_at(10))
    assert w.counts(now=_at(10)).predictions == 25
    # A pod with an unknown start time is treated as old.
    w.observe([_reading("unknown", 50)], now=_at(20))
    assert w.counts(now=_at(20)).predictions == 25


def test_restart_counts_from_zero():
    w = _window()
    w.observe([_reading("a", 100, started=_at(1))], now=_at(10))
    w.observe([_reading("a", 130, started=_at(1))], now=_at(20))
    # The container restarted (same pod UID): its counter fell to 12; those 12 are new traffic.
    w.observe([_reading("a", 12, started=_at(1))], now=_at(30))
    assert w.counts(now=_at(30)).predictions == 100 + 30 + 12
    w.observe([_reading("a", 20, started=_at(1))], now=_at(40))
    assert w.counts(now=_at(40)).predictions == 150


def test_restart_detected_by_any_counter_going_down():
    w = _window()
    w.observe([_reading("a", 100, started=_at(1), bin0=60)], now=_at(10))
    # predictions grew, but a bin counter fell: a restart that already served more rows than before.
    w.observe([_reading("a", 110, started=_at(1), bin0=5)], now=_at(20))
    counts = w.counts(now=_at(20))
    assert counts.predictions == 210
    assert counts.get(("bin", "x", "0")) == 65


def test_scaling_and_vanished_pods_keep_their_contribution():
    w = _window()
    w.observe([_reading("a", 10, started=_at(1))], now=_at(10))
    w.observe([_reading("a", 20, started=_at(1)), _reading("b", 5, started=_at(15))], now=_at(20))
    # Scaled down: b is gone; what it served stays in the window.
    w.observe([_reading("a", 30, started=_at(1))], now=_at(30))
    assert w.counts(now=_at(30)).predictions == 30 + 5


def test_unreachable_pod_is_caught_up_on_its_next_reading():
    w = _window()
    w.observe([_reading("a", 10, started=_at(1)), _reading("b", 10, started=_at(1))], now=_at(10))
    w.observe([_reading("a", 20, started=_at(1))], now=_at(20))  # b did not answer
    w.observe([_reading("a", 30, started=_at(1)), _reading("b", 50, started=_at(1))], now=_at(30))
    assert w.counts(now=_at(30)).predictions == 30 + 50


def test_increments_age_out_of_the_span():
    w = _window()
    w.observe([_reading("a", 100, started=_at(1))], now=_at(10))
    w.observe([_reading("a", 150, started=_at(1))], now=_at(300))
    assert w.counts(now=_at(300)).predictions == 150
    # 10 minutes after the first reading, its increment is out of the window; the second one is not.
    assert w.counts(now=_at(610)).predictions == 50
    assert w.counts(now=_at(901)).predictions == 0


def test_frequent_checks_share_buckets_so_memory_stays_bounded():
    w = Window(reference="m-v1", span=timedelta(seconds=120), start=T0)  # 1 s buckets
    for i in range(1000):  # a check every 0.25 s, 4 predictions each
        w.observe([_reading("a", 4 * (i + 1), started=T0)], now=_at(i / 4))
    assert w.buckets <= BUCKETS + 1
    now = _at(999 / 4)
    # Everything within the last 120 s, give or take one bucket at the edge.
    assert 4 * 4 * 119 <= w.counts(now=now).predictions <= 4 * 4 * 121


def test_stale_baseline_is_forgotten():
    w = _window()
    w.observe([_reading("a", 100, started=_at(1))], now=_at(10))
    assert w.pods == 1
    w.observe([], now=_at(10) + SPAN)
    assert w.pods == 0


def test_counts_per_feature_in_the_profile_bins():
    profile = Profile(rows=10, features={
        "x": FeatureProfile(kind="numeric", edges=[0.0, 1.0], counts=[3, 3, 4]),
        "c": FeatureProfile(kind="categorical", categories=["a", "b"], counts=[5, 5, 0]),
        "silent": FeatureProfile(kind="numeric", edges=[0.0], counts=[5, 5]),
    }, prediction=FeatureProfile(kind="categorical", categories=["0", "1"], counts=[5, 5, 0]))
    counts = Counts(values={("bin", "x", "0"): 1, ("bin", "x", "2"): 2, ("bin", "c", "2"): 4,
                            ("prediction", "1"): 3})
    assert counts.features(profile) == {"x": [1, 0, 2], "c": [0, 0, 4]}
    assert counts.prediction(profile) == [0, 3, 0]
    assert Counts().prediction(profile) is None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_predictors_metrics_give_the_profile_counts() -> None:
    """What the predictor exports is what the window reads: counts in the profile's own bins."""
    served = _served(LogisticRegression())
    settings = Settings(model_name="credit", model_uri="-", model_sha256="-", profile_uri="-",
                        model_version="3")
    app = PredictorApp(settings=settings)
    app.plane.install(served)
    rng = np.random.default_rng(1)
    rows = np.column_stack([rng.uniform(18, 90, 50), rng.normal(50_000, 15_000, 50), rng.normal(1, 1, 50)])
    instances = [dict(zip(NAMES, r.tolist(), strict=True)) for r in rows]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p") as c:
        predicted = (await c.post("/v1/models/credit:predict", json={"instances": instances})).json()
        text = (await c.get("/metrics")).text
    got = counters(parse_prometheus(text), version="3")
    counts = Counts(values=got)
    assert counts.predictions == 50
    profile = served.profile
    for j, name in enumerate(NAMES):
        expected, missing = profile.features[name].count(rows[:, j])
        assert counts.features(profile)[name] == expected.tolist()
        assert missing == 0
    assert profile.prediction is not None
    expected_pred, _ = profile.prediction.count([str(p) for p in predicted["predictions"]])
    assert counts.prediction(profile) == expected_pred.tolist()
    assert counters(parse_prometheus(text), version="4") == {}
