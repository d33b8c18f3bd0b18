"""Compiled models answer exactly as their scikit-learn models, and their files are safe to read.

Every allow-listed estimator is trained by the trainer's own preprocessing on data with missing
values, then compared with its compiled form on rows with missing values and unseen categories:
labels identical, probabilities and regression values within 1e-12.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import ensemble, linear_model
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler

from loopwright import storage
from loopwright.api.schema import DatasetSchema
from loopwright.compiled import compiler, container, rows
from loopwright.compiled.agreement import TOLERANCE, compare
from loopwright.compiled.program import InputError, MissingValueError, Program, ProgramError
from loopwright.core import estimators
from loopwright.jobs.trainer.model import allow_listed as _pipeline

SCHEMA = DatasetSchema.model_validate({
    "label": {"name": "y", "task": "classification"},
    "columns": [
        {"name": "a", "type": "numeric", "nullable": True},
        {"name": "b", "type": "numeric"},
        {"name": "region", "type": "categorical", "nullable": True},
        {"name": "plan", "type": "categorical"},
    ],
})
SMALL = {"n_estimators": 15, "max_iter": 15}


def _frame(n: int, seed: int, *, unseen: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    regions = ["north", "south", "east", "west", *(["mars"] if unseen else [])]
    frame = pd.DataFrame({
        "a": rng.normal(size=n),
        "b": rng.uniform(0, 10, size=n),
        "region": rng.choice(regions, size=n).astype(object),
        "plan": rng.choice(["basic", "pro", "team", *(["gold"] if unseen else [])], size=n).astype(object),
    })
    frame.loc[frame.index[::7], "a"] = np.nan
    frame.loc[frame.index[::5], "region"] = np.nan
    return frame


def _target(frame: pd.DataFrame, task: str, classes: int) -> Any:
    score = frame["a"].fillna(0) + 0.3 * frame["b"] + (frame["region"] == "east") - (frame["plan"] == "pro")
    if task == "regression":
        return (score + 5).to_numpy()  # positive, so Poisson and gamma losses fit too
    edges = np.quantile(score, np.linspace(0, 1, classes + 1)[1:-1])
    return np.array(["low", "mid", "high"])[np.digitize(score, edges)] if classes == 3 else (
        np.digitize(score, edges).astype(np.int64))


def _params(name: str) -> dict[str, Any]:
    """Small ensembles, so the whole matrix runs in seconds."""
    allowed = estimators.ESTIMATORS[name].params
    return {k: v for k, v in SMALL.items() if k in allowed and "Logistic" not in name}


def _check(model: Any, frame: pd.DataFrame) -> None:
    program = compiler.program(model)
    numeric = ("a", "b")
    program.bind(numeric, ["region", "plan"])
    categorical = {c: [v if isinstance(v, str) else None for v in frame[c]] for c in ("region", "plan")}
    agreement = compare(program, model, columns=tuple(frame.columns), numeric_names=numeric,
                        numeric=frame[list(numeric)].to_numpy(), categorical=categorical)
    assert agreement.passed, agreement.describe()
    assert agreement.rows == len(frame)
    if program.classification:
        assert agreement.max_proba_difference is not None
        assert agreement.max_proba_difference <= TOLERANCE


CASES = [
    (name, classes)
    for name, spec in estimators.ESTIMATORS.items()
    for classes in ((2, 3) if spec.task == "classification" else (0,))
]


@pytest.mark.parametrize(("name", "classes"), CASES)
def test_every_allowed_estimator_compiles_to_identical_answers(name: str, classes: int) -> None:
    spec = estimators.ESTIMATORS[name]
    train = _frame(500, 0)
    model = _pipeline(SCHEMA, spec, _params(name), seed=0).fit(train, _target(train, spec.task, classes))
    _check(model, _frame(400, 1, unseen=True))
    # One row at a time too: a different batch shape must not change a single bit of the answer.
    for i in range(0, 40, 7):
        _check(model, _frame(40, 2, unseen=True).iloc[[i]])


@pytest.mark.parametrize("loss", ["exponential", "log_loss"])
def test_gradient_boosting_losses(loss: str) -> None:
    train = _frame(400, 3)
    spec = estimators.ESTIMATORS["GradientBoostingClassifier"]
    model = _pipeline(SCHEMA, spec, {"n_estimators": 20, "loss": loss}, seed=0)
    _check(model.fit(train, _target(train, "classification", 2)), _frame(200, 4, unseen=True))


@pytest.mark.parametrize("loss", ["poisson", "gamma", "absolute_error", "quantile"])
def test_histogram_boosting_links(loss: str) -> None:
    train = _frame(400, 5)
    spec = estimators.ESTIMATORS["HistGradientBoostingRegressor"]
    params = {"max_iter": 20, "loss": loss, **({"quantile": 0.3} if loss == "quantile" else {})}
    model = _pipeline(SCHEMA, spec, params, seed=0)
    _check(model.fit(train, _target(train, "regression", 0)), _frame(200, 6, unseen=True))


def _bare(name: str) -> Any:
    cls = getattr(ensemble, name, None) or getattr(linear_model, name)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    x[::6, 1] = np.nan if "Tree" in name or "Forest" in name or "Hist" in name else 0.0
    y = (np.nan_to_num(x[:, 0]) + np.nan_to_num(x[:, 1]) > 0).astype(int)
    return cls(**({"n_estimators": 10} if "Forest" in name or "Trees" in name else {})).fit(x, y)


@pytest.mark.parametrize("name", ["RandomForestClassifier", "ExtraTreesClassifier",
                                  "HistGradientBoostingClassifier"])
def test_bare_trees_route_missing_values_as_scikit_learn_does(name: str) -> None:
    model = _bare(name)
    program = compiler.program(model)
    assert program.missing == "route"
    program.bind(["x0", "x1", "x2"])
    probe = np.random.default_rng(1).normal(size=(200, 3))
    probe[::3, 1] = np.nan
    probe[::4, 0] = np.nan
    agreement = compare(program, model, columns=("x0", "x1", "x2"), numeric_names=("x0", "x1", "x2"),
                        numeric=probe, categorical={})
    assert agreement.passed, agreement.describe()


def test_a_bare_linear_model_refuses_missing_values_like_scikit_learn() -> None:
    model = _bare("LogisticRegression")
    program = compiler.program(model)
    assert program.missing == "reject"
    program.bind(["x0", "x1", "x2"])
    with pytest.raises(MissingValueError, match="NaN"):
        program.evaluate(np.array([[0.0, np.nan, 1.0]]), {}, proba=False)


def test_a_value_beyond_float32_is_refused_by_trees_as_by_scikit_learn() -> None:
    model = _bare("RandomForestClassifier")
    program = compiler.program(model)
    program.bind(["x0", "x1", "x2"])
    huge = np.array([[1e300, 0.0, 0.0]])
    with pytest.raises(ValueError, match="too large"):
        model.predict(huge)
    with pytest.raises(InputError, match="too large"):
        program.evaluate(huge, {}, proba=False)


def test_what_is_not_covered_says_why() -> None:
    x = np.arange(20.0).reshape(10, 2)
    with pytest.raises(compiler.UnsupportedError, match="KNeighborsClassifier has no compiled form"):
        compiler.compile_model(KNeighborsClassifier(n_neighbors=1).fit(x, np.arange(10) % 2))
    with pytest.raises(compiler.UnsupportedError, match="ColumnTransformer"):
        compiler.compile_model(Pipeline([("s", MinMaxScaler()), ("m", KNeighborsClassifier(1))]).fit(
            x, np.arange(10) % 2))


# -- the container: safe to read ----------------------------------------------------------------------


def _sample() -> bytes:
    train = _frame(200, 0)
    spec = estimators.ESTIMATORS["RandomForestClassifier"]
    model = _pipeline(SCHEMA, spec, {"n_estimators": 3}, seed=0)
    model.fit(train, _target(train, "classification", 2))
    return compiler.dumps(model)


def test_the_sha256_is_checked_before_anything_is_parsed() -> None:
    data = _sample()
    with pytest.raises(storage.IntegrityError):
        Program.loads(data, sha256="0" * 64)
    garbage = b"\x80\x04\x95" + b"pickle" * 8  # not a container: refused by the digest, then the magic
    with pytest.raises(storage.IntegrityError):
        Program.loads(garbage, sha256=storage.sha256_hex(data))
    with pytest.raises(container.ContainerError, match="magic"):
        Program.loads(garbage, sha256=storage.sha256_hex(garbage))


def _rewritten(data: bytes, change: Any) -> bytes:
    """The container with its header changed by ``change`` (header length kept consistent)."""
    size = int.from_bytes(data[8:12], "little")
    header = json.loads(data[12:12 + size])
    change(header)
    text = json.dumps(header).encode()
    head = data[:8] + len(text).to_bytes(4, "little") + text
    old_start = 12 + size + (-(12 + size) % 8)
    return head + b"\0" * (-len(head) % 8) + data[old_start:]


@pytest.mark.parametrize(("change", "error"), [
    (lambda h: h["arrays"]["trees.left"].update(offset=1 << 40), "past the end"),
    (lambda h: h["arrays"]["trees.left"].update(dtype="|O"), "not allowed"),
    (lambda h: h["arrays"]["trees.left"].update(offset=3), "multiple of 8"),
    (lambda h: h["arrays"]["trees.value"].update(shape=[-1]), "non-negative"),
    (lambda h: h.update(format=2), "not supported"),
    (lambda h: h["model"].update(depth="deep"), "malformed"),
    (lambda h: h.update(link="sigmoid"), "unknown decision or link"),
    (lambda h: h["classes"].update(values=[1]), "two classes"),
    (lambda h: h["inputs"].update(categorical=["region"]), "exactly the declared inputs"),
])
def test_a_malformed_container_is_refused_with_a_reason(change: Any, error: str) -> None:
    data = _rewritten(_sample(), change)
    with pytest.raises((container.ContainerError, ProgramError), match=error):
        Program.loads(data, sha256=storage.sha256_hex(data))


def test_tree_indices_out_of_range_are_refused() -> None:
    header, arrays = compiler.compile_model(_model())
    arrays["trees.left"] = arrays["trees.left"].copy()
    arrays["trees.left"][0] = len(arrays["trees.left"]) + 5
    with pytest.raises(ProgramError, match="tree left out of range"):
        Program(header, arrays)
    arrays = dict(arrays, **{"trees.feature": np.full_like(arrays["trees.feature"], 99)})
    with pytest.raises(ProgramError, match="out of range"):
        Program(header, arrays)


def _model() -> Any:
    train = _frame(100, 0)
    spec = estimators.ESTIMATORS["ExtraTreesRegressor"]
    return _pipeline(SCHEMA, spec, {"n_estimators": 2}, seed=0).fit(train, _target(train, "regression", 0))


def test_binding_to_a_schema_that_lacks_an_input_fails() -> None:
    program = compiler.program(_model())
    with pytest.raises(ProgramError, match="categorical column"):
        program.bind(("a", "b"), ["region"])
    with pytest.raises(ProgramError, match="numeric column"):
        program.bind(("a",), ["region", "plan"])
    with pytest.raises(ProgramError, match="bind"):
        program.evaluate(np.zeros((1, 2)), {"region": ["north"], "plan": ["pro"]}, proba=False)


def test_rows_round_trip_with_missing_values() -> None:
    held = rows.Rows(("a", "c"), ("a",), np.array([[1.0], [np.nan]]), {"c": ["x", None]})
    data = rows.dumps(held)
    back = rows.loads(data, sha256=storage.sha256_hex(data))
    assert back.columns == ("a", "c")
    assert back.categorical == {"c": ["x", None]}
    np.testing.assert_array_equal(back.numeric, held.numeric)
    frame = rows.frame(back.columns, back.numeric_names, back.numeric, back.categorical)
    assert list(frame.columns) == ["a", "c"]
    assert frame["c"].isna().tolist() == [False, True]
