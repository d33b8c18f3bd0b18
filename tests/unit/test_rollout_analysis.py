"""Analysis windows and verdicts, on counters rendered by the real predictor metrics code."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from loopwright.api.analysis import Analysis
from loopwright.api.deployment import AnalysisStatus, Counters, PodWindow, Verdict
from loopwright.core.exposition import PodMetrics, PodTarget, parse_prometheus
from loopwright.core.profile import FeatureProfile, profile_categorical, profile_numeric
from loopwright.core.rollout import analysis
from loopwright.core.rollout import prometheus as prom
from loopwright.core.rollout.analysis import Totals
from loopwright.serving.metrics import Metrics

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BOUNDS = [0.01, 0.1, 1.0]


def _pod(uid: str, version: str = "2") -> PodTarget:
    return PodTarget(name=f"pod-{uid}", uid=uid, ip="10.244.0.9", version=version)


def test_counters_from_a_real_predictor_exposition() -> None:
    metrics = Metrics(
        model="m",
        version="2",
        features=[("x", profile_numeric(np.arange(100.0)))],
        prediction=profile_categorical(["a", "b"], categories=["a", "b"]),
    )
    for code, seconds in ((200, 0.004), (200, 0.02), (500, 0.003), (422, 0.001), (503, 0.5)):
        metrics.observe_request(code=code, seconds=seconds)
    scraped = PodMetrics(pod=_pod("u"), samples=parse_prometheus(metrics.render().decode()))
    bounds = analysis.latency_bounds(scraped)
    assert bounds[0] == 0.0005
    assert bounds[-1] == 10.0
    c = analysis.counters(scraped, bounds=bounds)
    assert (c.requests, c.errors) == (5, 2)  # 422 is the client's fault, not an error of the model
    assert c.latency[-1] == 5  # +Inf bucket
    assert c.latency[bounds.index(0.005)] == 3
    assert c.predictions == [0.0, 0.0, 0.0]


def _counters(
    requests: float, errors: float = 0, fast: float | None = None, bins: list[float] | None = None
) -> Counters:
    fast = requests if fast is None else fast
    return Counters(
        requests=requests,
        errors=errors,
        latency=[fast, requests, requests, requests],
        predictions=bins or [requests / 2, requests / 2],
    )


def test_window_baselines_new_old_restarted_and_vanished_pods() -> None:
    start = T0
    old, new = _pod("old"), _pod("new")
    window = analysis.update_window(
        [],
        scraped=[(old, 2, _counters(100)), (new, 2, _counters(7))],
        window_start=start,
        created={"old": start - timedelta(minutes=5), "new": start + timedelta(seconds=1)},
    )
    by_uid = {p.uid: p for p in window}
    assert by_uid["old"].base.requests == 100  # traffic before the window does not count
    assert by_uid["new"].base.requests == 0  # born inside the window: everything counts
    assert analysis.totals(window, version=2, bounds=BOUNDS).requests == 7

    window = analysis.update_window(
        window, scraped=[(old, 2, _counters(130)), (new, 2, _counters(20))], window_start=start, created={}
    )
    assert analysis.totals(window, version=2, bounds=BOUNDS).requests == 30 + 20
    # "old" restarted: its counters start again from zero; the 30 it had counted are kept.
    window = analysis.update_window(window, scraped=[(old, 2, _counters(4))], window_start=start, created={})
    totals = analysis.totals(window, version=2, bounds=BOUNDS)
    assert totals.requests == 30 + 4 + 20  # "new" vanished from the scrape but keeps its 20
    assert totals.latency[-1] == (math.inf, 54)
    assert totals.predictions == [27, 27]
    assert analysis.totals(window, version=1, bounds=BOUNDS).requests == 0


def _totals(
    requests: float, errors: float = 0, *, fast: float | None = None, predictions: list[float] | None = None
) -> Totals:
    c = _counters(requests, errors, fast=fast, bins=predictions)
    return Totals(
        requests=c.requests,
        errors=c.errors,
        latency=list(zip([*BOUNDS, math.inf], c.latency, strict=True)),
        predictions=c.predictions,
    )


def _analysis(**metrics: object) -> Analysis:
    return Analysis.model_validate({"minRequests": 20, "metrics": metrics})


def _evaluate(
    spec: Analysis,
    canary: Totals,
    stable: Totals,
    *,
    canary_prediction: FeatureProfile | None = None,
    stable_prediction: FeatureProfile | None = None,
    prometheus: prom.Value | None = None,
) -> dict[str, tuple[Verdict, float | None]]:
    checks, _ = prom.resolve(spec, {})
    judged = [prom.judge(c, prometheus) for c in checks] if prometheus is not None else []
    results, _ = analysis.evaluate(
        spec=spec,
        canary=canary,
        stable=stable,
        canary_prediction=canary_prediction,
        stable_prediction=stable_prediction,
        prometheus=judged,
    )
    return {r.metric: (r.verdict, r.value) for r in results}


def test_error_rate_pass_fail_and_too_few_requests() -> None:
    spec = _analysis(errorRate={"max": 0.05})
    assert _evaluate(spec, _totals(100, 5), _totals(100))["errorRate"] == (Verdict.PASS, 0.05)
    assert _evaluate(spec, _totals(100, 6), _totals(100))["errorRate"] == (Verdict.FAIL, 0.06)
    # 19 requests, all failed: still not enough to judge (and never a pass).
    assert _evaluate(spec, _totals(19, 19), _totals(100))["errorRate"] == (Verdict.INCONCLUSIVE, None)


def test_latency_absolute_and_relative() -> None:
    spec = _analysis(latencyP95={"max": "50ms", "maxRelativeToStable": 2})
    fast, slow = _totals(100, fast=100), _totals(100, fast=0)  # all under 10 ms / all in (10, 100] ms
    verdicts = _evaluate(spec, slow, fast)
    assert verdicts["latencyP95"][0] == Verdict.FAIL
    assert verdicts["latencyP95"][1] == pytest.approx(0.0955)
    assert verdicts["latencyP95RelativeToStable"][0] == Verdict.FAIL
    verdicts = _evaluate(spec, fast, fast)
    assert verdicts["latencyP95"] == (Verdict.PASS, pytest.approx(0.0095))
    assert verdicts["latencyP95RelativeToStable"] == (Verdict.PASS, 1.0)
    # Without stable traffic the relative bound cannot be judged.
    assert _evaluate(spec, fast, _totals(0))["latencyP95RelativeToStable"][0] == Verdict.INCONCLUSIVE


def test_prediction_drift_matches_classes_by_name() -> None:
    stable = profile_categorical(["no", "yes"], categories=["no", "yes"])
    canary = profile_categorical(["maybe", "no", "yes"], categories=["maybe", "no", "yes"])
    # canary bins: maybe, no, yes, unseen -> stable bins: no, yes, unseen
    assert analysis.align_predictions([1, 2, 3, 4], source=canary, target=stable) == [2, 3, 5]
    spec = _analysis(predictionDrift={"max": 0.2})
    same = _evaluate(
        spec,
        _totals(100, predictions=[0, 50, 50, 0]),
        _totals(100, predictions=[50, 50, 0]),
        canary_prediction=canary,
        stable_prediction=stable,
    )
    assert same["predictionDrift"] == (Verdict.PASS, 0.0)
    shifted = _evaluate(
        spec,
        _totals(100, predictions=[0, 90, 10, 0]),
        _totals(100, predictions=[50, 50, 0]),
        canary_prediction=canary,
        stable_prediction=stable,
    )
    assert shifted["predictionDrift"][0] == Verdict.FAIL
    assert shifted["predictionDrift"][1] == pytest.approx(
        (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5), rel=1e-3
    )
    few = _evaluate(
        spec,
        _totals(10, predictions=[0, 5, 5, 0]),
        _totals(100, predictions=[50, 50, 0]),
        canary_prediction=canary,
        stable_prediction=stable,
    )
    assert few["predictionDrift"][0] == Verdict.INCONCLUSIVE


def test_numeric_predictions_rebinned_onto_stable_edges() -> None:
    target = FeatureProfile(kind="numeric", edges=[0.0, 10.0], counts=[1, 1, 1], min=-10.0, max=20.0)
    same = FeatureProfile(kind="numeric", edges=[0.0, 10.0], counts=[1, 1, 1], min=-5.0, max=30.0)
    assert analysis.align_predictions([3, 4, 5], source=same, target=target) == [3, 4, 5]
    other = FeatureProfile(kind="numeric", edges=[5.0], counts=[1, 1], min=0.0, max=15.0)
    # [0, 5) lies in target bin 1; [5, 15] splits evenly between bins 1 and 2.
    assert analysis.align_predictions([10, 20], source=other, target=target) == [0.0, 20.0, 10.0]
    cat = profile_categorical(["a"])
    assert analysis.align_predictions([1, 1], source=cat, target=target) is None


def test_prometheus_check_and_overall_verdict() -> None:
    spec = _analysis(
        prometheus=[{"name": "up", "address": "http://127.0.0.1:9090", "query": "up", "max": 1.0}]
    )
    ok = _evaluate(spec, _totals(100), _totals(100), prometheus=prom.Value(value=0.5))
    assert ok["prometheus/up"] == (Verdict.PASS, 0.5)
    bad = _evaluate(spec, _totals(100), _totals(100), prometheus=prom.Value(value=3.0))
    assert bad["prometheus/up"] == (Verdict.FAIL, 3.0)
    missing = _evaluate(spec, _totals(100), _totals(100), prometheus=prom.Value(value=None, error="down"))
    assert missing["prometheus/up"] == (Verdict.INCONCLUSIVE, None)
    results, verdict = analysis.evaluate(
        spec=spec,
        canary=_totals(100),
        stable=_totals(100),
        canary_prediction=None,
        stable_prediction=None,
        prometheus=[prom.judge(spec.metrics.prometheus[0], prom.Value(value=None))],
    )
    assert verdict == Verdict.INCONCLUSIVE
    assert analysis.overall(results[:1]) == Verdict.PASS


def test_window_survives_the_status_round_trip() -> None:
    window = [PodWindow(uid="u", name="p", version=2, base=_counters(-3), last=_counters(10))]
    wire = AnalysisStatus(pods=window, latency_bounds=BOUNDS, window_start=T0).to_wire()
    back = AnalysisStatus.model_validate(wire)
    assert analysis.totals(back.pods, version=2, bounds=back.latency_bounds).requests == 13
