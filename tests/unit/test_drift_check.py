"""One DriftPolicy check: InsufficientData, consecutive counting, performance, cooldown, status."""

from datetime import UTC, datetime, timedelta

import pytest

from loopwright.api.driftpolicy import DriftPolicySpec
from loopwright.api.pipeline import RunTrigger
from loopwright.core.conditions import merge
from loopwright.core.drift import check, retrain
from loopwright.core.drift.window import ABS_ERROR, CORRECT, FEEDBACK, PREDICTIONS, SQUARED_ERROR, Counts, Key
from loopwright.core.profile import FeatureProfile, Profile

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
PROFILE = Profile(
    rows=1000,
    features={
        "x": FeatureProfile(kind="numeric", edges=[-1.0, 0.0, 1.0], counts=[250, 250, 250, 250]),
        "y": FeatureProfile(kind="numeric", edges=[-1.0, 0.0, 1.0], counts=[250, 250, 250, 250]),
        "c": FeatureProfile(kind="categorical", categories=["a", "b"], counts=[500, 500, 0]),
    },
    prediction=FeatureProfile(kind="categorical", categories=["0", "1"], counts=[500, 500, 0]),
)
SAME = [100, 100, 100, 100]
SHIFTED = [0, 0, 40, 360]


def _spec(**extra: object) -> DriftPolicySpec:
    return DriftPolicySpec.model_validate({
        "deploymentRef": {"name": "iris"}, "interval": "10s", "window": "1m", "minSamples": 200,
        "consecutive": 2, "actions": {"retrain": {"pipelineRef": {"name": "iris"}, "cooldown": "6h"}},
        **extra,
    })


def _counts(*, x: list[int], y: list[int] = SAME, c: list[int] | None = None,
            prediction: list[int] | None = None, extra: dict[Key, float] | None = None) -> Counts:
    values: dict[Key, float] = {}
    for name, bins in (("x", x), ("y", y), ("c", c or [200, 200, 0]), ("", [])):
        for i, n in enumerate(bins):
            values[("bin", name, str(i))] = n
    for i, n in enumerate(prediction or [200, 200, 0]):
        values[("prediction", str(i))] = n
    values[PREDICTIONS] = sum(x)
    values.update(extra or {})
    return Counts(values=values)


def _evaluate(spec: DriftPolicySpec, counts: Counts, previous: check.Previous | None = None,
              metrics: dict[str, float] | None = None) -> check.Outcome:
    return check.evaluate(spec, profile=PROFILE, counts=counts, reference_metrics=metrics or {},
                          previous=previous or check.Previous(), now=NOW)


def _conditions(spec: DriftPolicySpec, outcome: check.Outcome, existing=None) -> dict[str, tuple[str, str]]:
    verdicts = check.conditions(spec, outcome, existing=existing)
    return {c["type"]: (c["status"], c["reason"]) for c in merge(existing, verdicts, generation=1, now=NOW)}


def test_too_few_samples_is_inconclusive_but_shows_raw_values():
    spec = _spec()
    outcome = _evaluate(spec, _counts(x=[0, 0, 10, 90]), check.Previous(consecutive=1))
    assert outcome.samples == 100
    assert outcome.drifted is None
    assert outcome.consecutive == 1  # neither counted nor reset
    assert outcome.retrain is None
    x = next(f for f in outcome.report.features if f.name == "x")
    assert x.statistic is not None
    assert x.statistic > 1.0
    conditions = _conditions(spec, outcome)
    assert conditions["InsufficientData"] == ("True", "TooFewSamples")
    assert conditions["DriftDetected"] == ("Unknown", "InsufficientData")
    assert conditions["Ready"] == ("True", "Checked")


def test_insufficient_data_keeps_a_previous_drift_verdict():
    spec = _spec()
    confirmed = _evaluate(spec, _counts(x=SHIFTED, y=SHIFTED), check.Previous(consecutive=1))
    existing = merge(None, check.conditions(spec, confirmed, existing=None), generation=1, now=NOW)
    later = _evaluate(spec, _counts(x=[0, 0, 1, 9], y=[0, 0, 1, 9]), check.Previous(consecutive=2))
    assert later.confirmed
    assert later.retrain is None
    assert _conditions(spec, later, existing)["DriftDetected"] == ("True", "DriftConfirmed")


def test_in_distribution_is_no_drift():
    spec = _spec()
    outcome = _evaluate(spec, _counts(x=[98, 103, 97, 102]), check.Previous(consecutive=1))
    assert outcome.drifted is False
    assert outcome.consecutive == 0
    assert outcome.report.drift_share == 0.0
    assert all(f.statistic is not None and f.statistic < 0.01 for f in outcome.report.features)
    assert _conditions(spec, outcome)["DriftDetected"] == ("False", "NoDrift")
    assert _conditions(spec, outcome)["InsufficientData"] == ("False", "EnoughData")


def test_drift_confirmed_after_consecutive_checks_then_retrains():
    spec = _spec()
    counts = _counts(x=SHIFTED, y=SHIFTED)  # 2 of 3 features drift: share 0.67 >= 0.5
    first = _evaluate(spec, counts)
    assert first.drifted is True
    assert first.consecutive == 1
    assert not first.confirmed
    assert first.retrain is None
    assert first.changes == []
    assert _conditions(spec, first)["DriftDetected"] == ("False", "DriftSuspected")
    second = _evaluate(spec, counts, check.Previous(consecutive=1))
    assert second.confirmed
    assert second.consecutive == 2
    assert second.changes == [check.Change.DRIFT_CONFIRMED]
    assert second.retrain == RunTrigger.DRIFT
    assert second.report.drift_share == pytest.approx(2 / 3)
    assert _conditions(spec, second)["DriftDetected"] == ("True", "DriftConfirmed")
    # Still drifting on the next check: no new confirmation, but a retrain is due again without cooldown.
    third = _evaluate(spec, counts, check.Previous(consecutive=2, last_retrain=NOW - timedelta(hours=7)))
    assert third.changes == []
    assert third.retrain == RunTrigger.DRIFT


def test_share_below_drift_share_is_not_drift():
    spec = _spec(driftShare=0.9)
    outcome = _evaluate(spec, _counts(x=SHIFTED, y=SHIFTED), check.Previous(consecutive=5))
    assert outcome.drifted is False
    assert outcome.consecutive == 0
    assert outcome.changes == [check.Change.DRIFT_CLEARED]
    assert [f.name for f in outcome.report.features if f.drifted] == ["x", "y"]


def test_prediction_drift_alone_fails_the_check():
    spec = _spec()
    outcome = _evaluate(spec, _counts(x=SAME, prediction=[20, 380, 0]))
    assert outcome.report.drift_share == 0.0
    assert outcome.report.prediction is not None
    assert outcome.report.prediction.drifted
    assert outcome.drifted is True
    disabled = _spec(predictionDrift={"enabled": False})
    assert _evaluate(disabled, _counts(x=SAME, prediction=[20, 380, 0])).drifted is False


def test_cooldown_holds_the_retrain_back():
    spec = _spec()
    last = NOW - timedelta(hours=1)
    outcome = _evaluate(spec, _counts(x=SHIFTED, y=SHIFTED), check.Previous(consecutive=1, last_retrain=last))
    assert outcome.confirmed
    assert outcome.retrain is None
    assert outcome.wanted == RunTrigger.DRIFT
    assert outcome.held is not None
    assert outcome.held.reason == "Cooldown"
    assert outcome.held.until == last + timedelta(hours=6)
    no_action = _spec(actions={})
    quiet = _evaluate(no_action, _counts(x=SHIFTED, y=SHIFTED), check.Previous(consecutive=1))
    assert quiet.confirmed
    assert quiet.retrain is None
    assert quiet.wanted is None
    assert quiet.held is None


def test_a_retrain_in_flight_holds_every_other_back_however_long_the_drift_lasts():
    spec = _spec(actions={"retrain": {"pipelineRef": {"name": "iris"}, "cooldown": "1s"}})
    in_flight = retrain.requested(token="w-1", pipeline="iris", trigger=RunTrigger.DRIFT,
                                  now=NOW - timedelta(days=3))
    for phase in ("AwaitingRun", "AwaitingGate", "AwaitingRollout"):
        pending = in_flight.model_copy(update={"phase": phase})
        previous = check.Previous(consecutive=9, retrain=pending)
        outcome = _evaluate(spec, _counts(x=SHIFTED, y=SHIFTED), previous)
        assert outcome.confirmed
        assert outcome.retrain is None
        assert outcome.held is not None
        assert outcome.held.reason == phase
    settled = in_flight.model_copy(update={"phase": "Settled", "outcome": "Promoted", "settled_time": NOW})
    held = _evaluate(spec, _counts(x=SHIFTED, y=SHIFTED), check.Previous(consecutive=9, retrain=settled))
    assert held.held is not None
    assert held.held.reason == "Cooldown"
    later = check.evaluate(spec, profile=PROFILE, counts=_counts(x=SHIFTED, y=SHIFTED), reference_metrics={},
                           previous=check.Previous(consecutive=9, retrain=settled),
                           now=NOW + timedelta(seconds=1))
    assert later.retrain == RunTrigger.DRIFT


def _accuracy(correct: int, labels: int) -> dict[Key, float]:
    return {FEEDBACK: labels, CORRECT: correct}


def test_accuracy_drop_beyond_max_drop_degrades_and_retrains_with_trigger_performance():
    spec = _spec(performance={"metric": "accuracy", "maxDrop": 0.1, "minLabels": 50})
    counts = _counts(x=SAME, extra=_accuracy(70, 100))
    first = _evaluate(spec, counts, metrics={"accuracy": 0.95})
    assert first.performance is not None
    assert first.performance.value == pytest.approx(0.7)
    assert first.performance.degraded
    assert first.performance.consecutive == 1
    assert first.retrain is None
    assert _conditions(spec, first)["PerformanceDegraded"] == ("False", "DropSuspected")
    second = _evaluate(spec, counts, check.Previous(performance_consecutive=1), metrics={"accuracy": 0.95})
    assert second.performance_confirmed
    assert second.changes == [check.Change.PERFORMANCE_CONFIRMED]
    assert second.retrain == RunTrigger.PERFORMANCE
    assert _conditions(spec, second)["PerformanceDegraded"] == ("True", "PerformanceDropped")
    # A drop within maxDrop passes and clears.
    fine = _evaluate(spec, _counts(x=SAME, extra=_accuracy(90, 100)),
                     check.Previous(performance_consecutive=2), metrics={"accuracy": 0.95})
    assert fine.performance is not None
    assert not fine.performance.degraded
    assert fine.changes == [check.Change.PERFORMANCE_CLEARED]


def test_performance_needs_min_labels_and_a_reference():
    spec = _spec(performance={"metric": "accuracy", "maxDrop": 0.1, "minLabels": 50})
    few = _evaluate(spec, _counts(x=SAME, extra=_accuracy(0, 10)), check.Previous(performance_consecutive=1),
                    metrics={"accuracy": 0.95})
    assert few.performance is not None
    assert few.performance.value is None
    assert few.performance.consecutive == 1
    conditions = _conditions(spec, few)
    assert conditions["InsufficientData"] == ("True", "TooFewLabels")
    assert conditions["PerformanceDegraded"] == ("Unknown", "InsufficientData")
    unknown = _evaluate(spec, _counts(x=SAME, extra=_accuracy(10, 100)))
    assert unknown.performance is not None
    assert unknown.performance.value == pytest.approx(0.1)
    assert not unknown.performance.degraded
    assert _conditions(spec, unknown)["PerformanceDegraded"] == ("Unknown", "NoReference")


def test_error_metrics_are_lower_is_better():
    spec = _spec(performance={"metric": "mae", "maxDrop": 0.5, "minLabels": 10}, consecutive=1)
    worse = _evaluate(spec, _counts(x=SAME, extra={FEEDBACK: 100, ABS_ERROR: 200.0}), metrics={"mae": 1.0})
    assert worse.performance is not None
    assert worse.performance.value == pytest.approx(2.0)
    assert worse.performance.degraded
    assert worse.retrain == RunTrigger.PERFORMANCE
    rmse = check.live_metric("rmse", _counts(x=SAME, extra={FEEDBACK: 4, SQUARED_ERROR: 36.0}))
    assert rmse == pytest.approx(3.0)
    assert check.live_metric("accuracy", _counts(x=SAME)) is None  # no labels: no value, not 0
    better = _evaluate(spec, _counts(x=SAME, extra={FEEDBACK: 100, ABS_ERROR: 50.0}), metrics={"mae": 1.0})
    assert better.performance is not None
    assert not better.performance.degraded


def test_status_patch_carries_raw_values_and_the_retrain():
    spec = _spec()
    outcome = _evaluate(spec, _counts(x=SHIFTED, y=SHIFTED), check.Previous(consecutive=1))
    patch = check.status(outcome, reference="iris-v1", now=NOW, retrain_token="p-1767268800",
                         retrain_trigger=outcome.retrain)
    assert patch["modelVersion"] == "iris-v1"
    assert patch["samples"] == 400
    assert patch["consecutive"] == 2
    assert patch["drifted"] is True
    assert patch["lastRetrainTime"] == "2026-01-01T12:00:00Z"
    assert patch["lastRetrainRun"] == "p-1767268800"
    assert patch["lastRetrainTrigger"] == "Drift"
    x = next(f for f in patch["features"] if f["name"] == "x")
    assert x["method"] == "psi"
    assert x["threshold"] == 0.2
    assert x["drifted"] is True
    assert x["statistic"] > 1
    assert patch["performance"] is None  # merge patch: clears a stale value
    assert "lastRetrainTime" not in check.status(outcome, reference="iris-v1", now=NOW, retrain_token=None)
    assert "drift share 0.67" in check.summary(spec, outcome)
