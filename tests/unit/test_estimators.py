import ast
import importlib
import math
import pathlib

import pytest
from sklearn.base import is_classifier

from loopwright.api.schema import TaskType
from loopwright.core import estimators
from loopwright.core.estimators import ESTIMATORS, ParamSpec, Range


def _samples(spec: ParamSpec):
    """Values the spec admits, at its boundaries."""
    out: list[object] = list(spec.choices)
    for rng, cast in ((spec.ints, int), (spec.floats, float)):
        if rng is None:
            continue
        lo = rng.low if rng.low is not None else -10.0
        hi = rng.high if rng.high is not None else lo + 10.0
        if cast is int:
            out += [int(lo), int(hi), int((lo + hi) // 2)]
        else:
            out += [lo + 1e-9 if rng.low_open else lo, hi - 1e-9 if rng.high_open else hi, (lo + hi) / 2]
    if spec.boolean:
        out += [True, False]
    if spec.nullable:
        out.append(None)
    return [v for v in out if spec.admits(v)]


def test_module_does_not_import_sklearn():
    tree = ast.parse(pathlib.Path(estimators.__file__).read_text())
    imported = [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in imported if m.startswith("sklearn")]


def test_required_estimators_are_allowed():
    required = {
        "LogisticRegression": TaskType.CLASSIFICATION,
        "RandomForestClassifier": TaskType.CLASSIFICATION,
        "RandomForestRegressor": TaskType.REGRESSION,
        "GradientBoostingClassifier": TaskType.CLASSIFICATION,
        "GradientBoostingRegressor": TaskType.REGRESSION,
        "HistGradientBoostingClassifier": TaskType.CLASSIFICATION,
        "HistGradientBoostingRegressor": TaskType.REGRESSION,
        "LinearRegression": TaskType.REGRESSION,
        "Ridge": TaskType.REGRESSION,
    }
    for name, task in required.items():
        assert estimators.task_of(name) == task


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_allow_list_agrees_with_installed_sklearn(name):
    """Every admitted value passes scikit-learn's own parameter validation."""
    spec = ESTIMATORS[name]
    module_name, _, cls_name = spec.import_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    assert spec.task == ("classification" if is_classifier(cls()) else "regression")
    known = cls().get_params()
    for param, pspec in spec.params.items():
        assert param in known, param
        samples = _samples(pspec)
        assert samples, param
        for value in samples:
            est = cls(**{param: value})
            est._validate_params()
            assert estimators.validate(name, {param: value}) == []


@pytest.mark.parametrize(
    ("estimator", "params", "fragment"),
    [
        ("SVC", {}, "not allowed"),
        ("RandomForestClassifier", {"n_estimators": 0}, "integer in [1, 2000]"),
        ("RandomForestClassifier", {"n_estimators": 10.5}, "'n_estimators' must be"),
        ("RandomForestClassifier", {"n_estimators": True}, "'n_estimators' must be"),
        ("RandomForestClassifier", {"n_estimators": "10"}, "'n_estimators' must be"),
        ("RandomForestClassifier", {"min_samples_split": 1}, "'min_samples_split'"),
        ("RandomForestClassifier", {"max_features": "all"}, "'sqrt', 'log2' or null"),
        ("RandomForestClassifier", {"random_state": 1}, "split.seed"),
        ("RandomForestClassifier", {"n_jobs": 4}, "cannot be set"),
        ("LogisticRegression", {"C": 0}, "number in (0, inf)"),
        ("LogisticRegression", {"C": math.inf}, "'C' must be"),
        ("LogisticRegression", {"C": math.nan}, "'C' must be"),
        ("LogisticRegression", {"solver": "magic"}, "'solver'"),
        ("LogisticRegression", {"fit_intercept": 1}, "true or false"),
        ("Ridge", {"bogus": 1}, "unknown or disallowed parameter 'bogus'"),
        ("LinearRegression", {"n_jobs": None}, "cannot be set"),
        ("HistGradientBoostingRegressor", {"max_bins": 256}, "[2, 255]"),
    ],
)
def test_validate_refuses_with_readable_reason(estimator, params, fragment):
    errors = estimators.validate(estimator, params)
    assert len(errors) == 1
    assert fragment in errors[0]


def test_validate_reports_every_error_and_task_mismatch():
    errors = estimators.validate(
        "RandomForestRegressor", {"n_estimators": -1, "max_depth": 0}, task="classification"
    )
    assert len(errors) == 3
    assert "regression estimator" in errors[0]


def test_validate_accepts_typical_spec():
    assert estimators.validate(
        "RandomForestClassifier",
        {"n_estimators": 200, "max_depth": None, "max_features": "sqrt", "min_samples_leaf": 0.01},
        task="classification",
    ) == []


def test_range_rendering_and_membership():
    r = Range(0.0, 1.0, low_open=True)
    assert str(r) == "(0, 1]"
    assert 1.0 in r
    assert 0.0 not in r
    assert str(Range(1)) == "[1, inf)"
