"""Hyperparameter search: trial parameters from the index, refusals, the best trial."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from loopwright.api.search import Dimension, Search, Trial
from loopwright.core.training import search

GRID = Search.model_validate({"strategy": "grid", "space": {"C": {"values": [0.1, 1.0, 10.0]},
                                                           "class_weight": {"values": ["balanced", None]}}})
RANDOM = Search.model_validate({"trials": 32, "seed": 7, "space": {
    "C": {"min": 0.001, "max": 1000.0, "log": True},
    "max_iter": {"min": 50, "max": 500, "integer": True},
    "fit_intercept": {"values": [True, False]}}})


def test_grid_enumerates_every_combination_in_a_fixed_order() -> None:
    assert search.trial_count(GRID) == 6
    trials = search.all_trials(GRID)
    assert trials[0] == {"C": 0.1, "class_weight": "balanced"}
    assert trials[1] == {"C": 0.1, "class_weight": None}
    assert trials[5] == {"C": 10.0, "class_weight": None}
    assert len({repr(sorted(t.items())) for t in trials}) == 6
    with pytest.raises(ValueError, match="outside"):
        search.trial_params(GRID, 6)


def test_random_trials_are_reproducible_per_index_and_within_the_space() -> None:
    first = search.all_trials(RANDOM)
    again = [search.trial_params(RANDOM, i) for i in reversed(range(32))][::-1]
    assert first == again
    assert len(first) == 32
    for params in first:
        assert 0.001 <= params["C"] <= 1000.0
        assert isinstance(params["max_iter"], int)
        assert 50 <= params["max_iter"] <= 500
        assert params["fit_intercept"] in (True, False)
    # log sampling spreads over the decades, not only near the top
    assert min(p["C"] for p in first) < 0.1 < 10.0 < max(p["C"] for p in first)
    other = search.all_trials(RANDOM.model_copy(update={"seed": 8}))
    assert other != first


def test_random_search_defaults_to_16_trials() -> None:
    assert search.trial_count(Search.model_validate({"space": {"C": {"values": [1]}}})) == 16


def test_refusal_bounds_the_grid_and_checks_every_trial_against_the_allow_list() -> None:
    big = Search.model_validate({"strategy": "grid", "space": {
        "a": {"values": list(range(8))}, "b": {"values": list(range(9))}}})
    assert "72 points" in search.refusal(big, estimator="LogisticRegression", params={}, task=None)[0]
    assert search.refusal(GRID, estimator="LogisticRegression", params={"max_iter": 200},
                          task="classification") == []
    bad = Search.model_validate({"space": {"C": {"min": -1.0, "max": 1.0}}, "trials": 4})
    errors = search.refusal(bad, estimator="LogisticRegression", params={}, task="classification")
    assert errors
    assert all(e.startswith("search trial") for e in errors)
    # a factory's parameters are its own: not judged by the operator
    assert search.refusal(bad, estimator=None, params={}, task=None) == []


def _trial(index: int, score: float | None, phase: str = "Succeeded") -> Trial:
    return Trial(index=index, params={}, phase=phase, score=score)  # type: ignore[arg-type]


def test_select_picks_the_best_by_the_metric_direction_ties_to_the_lowest_index() -> None:
    trials = [_trial(0, 0.8), _trial(1, 0.9), _trial(2, 0.9), _trial(3, None, "Failed"), _trial(4, 0.5)]
    best = search.select(trials, metric="accuracy")
    assert best is not None
    assert best.index == 1
    lowest = search.select(trials, metric="rmse")
    assert lowest is not None
    assert lowest.index == 4
    assert search.select([_trial(0, None, "Failed")], metric="accuracy") is None
    assert search.select([_trial(0, float("nan"))], metric="accuracy") is None


@pytest.mark.parametrize(("result", "phase", "score"), [
    ({"phase": "Succeeded", "score": 0.75}, "Succeeded", 0.75),
    ({"phase": "Failed", "error": "BadParameters", "message": "C must be > 0"}, "Failed", None),
    (None, "Failed", None),
])
def test_trial_from_result(result: dict[str, Any] | None, phase: str, score: float | None) -> None:
    trial = search.trial_from_result(2, {"C": 1.0}, result)
    assert (trial.index, trial.phase, trial.score) == (2, phase, score)
    if phase == "Failed":
        assert trial.message


def test_a_dimension_with_values_and_a_range_is_refused_by_the_model() -> None:
    """The schema cannot state it (CEL does not see a list of untyped values): the model does, and
    the operator reports InvalidSpec naming the field."""
    with pytest.raises(ValidationError, match="either values or a min/max range"):
        Dimension.model_validate({"values": [1.0], "min": 0.1, "max": 1.0})
    with pytest.raises(ValidationError, match="either values or a min/max range"):
        Dimension.model_validate({})
