"""Compile a fitted scikit-learn model into the plain arrays of :mod:`.program`.

Runs where scikit-learn is installed (the trainer, the verifier, a predictor loading a skops
model); it imports nothing from scikit-learn itself and recognises estimators by class name and
module, reading only their fitted attributes (and, for gradient boosting's constant initial
prediction and the missing-value behaviour, asking the estimator itself). Covered: every
allow-listed estimator of :mod:`loopwright.core.estimators`, bare or behind the trainer's
preprocessing (``Pipeline([ColumnTransformer(...), estimator])`` with median-imputed, scaled
numeric columns and most-frequent-imputed, one-hot encoded categorical ones). Anything else is
an :class:`UnsupportedError` naming what is not covered, and is served from the skops artifact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright.compiled import container
from loopwright.compiled.program import CONTENT, FORMAT, Program

Arrays = dict[str, npt.NDArray[Any]]
_LINEAR_CLASSIFIERS = frozenset({"LogisticRegression"})
_LINEAR_REGRESSORS = frozenset({"LinearRegression", "Ridge"})
_FORESTS = frozenset(
    {"RandomForestClassifier", "ExtraTreesClassifier", "RandomForestRegressor", "ExtraTreesRegressor"}
)
_BOOSTING = frozenset({"GradientBoostingClassifier", "GradientBoostingRegressor"})
_HIST_BOOSTING = frozenset({"HistGradientBoostingClassifier", "HistGradientBoostingRegressor"})


class UnsupportedError(Exception):
    """The model is outside what the compiled form covers (it is served from skops instead)."""


def compile_model(model: Any) -> tuple[dict[str, Any], Arrays]:
    """The header and arrays of ``model``'s compiled form."""
    arrays: Arrays = {}
    if _is(model, "Pipeline"):
        steps = getattr(model, "steps", [])
        if len(steps) != 2 or not _is(steps[0][1], "ColumnTransformer"):
            raise UnsupportedError("only Pipeline([ColumnTransformer, estimator]) is compiled")
        preprocess, inputs, width = _column_transformer(steps[0][1], arrays)
        estimator = steps[1][1]
    else:
        estimator, preprocess = model, None
        names = getattr(model, "feature_names_in_", None)
        inputs = {"numeric": None if names is None else [str(n) for n in names], "categorical": []}
        width = int(getattr(model, "n_features_in_", 0))
    name = type(estimator).__name__
    if not type(estimator).__module__.startswith("sklearn."):
        raise UnsupportedError(f"{type(estimator).__module__}.{name} is not a scikit-learn estimator")
    if getattr(estimator, "n_features_in_", width) != width:
        raise UnsupportedError("the estimator's input width differs from the preprocessing's")
    classification = hasattr(estimator, "classes_")
    if name in _LINEAR_CLASSIFIERS | _LINEAR_REGRESSORS:
        spec, decision, link = _linear(estimator, arrays, classification=classification)
    elif name in _FORESTS:
        spec, decision, link = _forest(estimator, arrays, classification=classification)
    elif name in _BOOSTING:
        spec, decision, link = _boosting(estimator, arrays, classification=classification)
    elif name in _HIST_BOOSTING:
        spec, decision, link = _hist_boosting(estimator, arrays, classification=classification)
    else:
        raise UnsupportedError(f"{name} has no compiled form")
    header: dict[str, Any] = {
        "content": CONTENT,
        "format": FORMAT,
        "task": "classification" if classification else "regression",
        "estimator": name,
        "classes": _classes(estimator.classes_) if classification else None,
        "inputs": inputs,
        "preprocess": preprocess,
        "model": spec,
        "decision": decision,
        "link": link,
        "missing": "route" if _accepts_missing(estimator, width) else "reject",
    }
    return header, arrays


def dumps(model: Any) -> bytes:
    """The compiled form of ``model`` as container bytes (the file the trainer writes)."""
    return container.dumps(*compile_model(model))


def program(model: Any) -> Program:
    """The compiled form of ``model``, ready to evaluate, without a round trip through bytes."""
    return Program(*compile_model(model))


def _is(obj: Any, name: str) -> bool:
    return type(obj).__name__ == name and type(obj).__module__.startswith("sklearn.")


def _column_transformer(ct: Any, arrays: Arrays) -> tuple[dict[str, Any], dict[str, Any], int]:
    blocks: list[dict[str, Any]] = []
    numeric: list[str] = []
    categorical: list[str] = []
    width = 0
    for i, (name, step, columns) in enumerate(ct.transformers_):
        if name == "remainder" and (step == "drop" or len(columns) == 0):
            continue
        if not all(isinstance(c, str) for c in columns):
            raise UnsupportedError("ColumnTransformer columns must be selected by name")
        columns = [str(c) for c in columns]  # noqa: PLW2901 - the same names, as plain str
        imputer, second = _imputed(step)
        if _is(second, "StandardScaler"):
            fill = np.asarray(imputer.statistics_, dtype=np.float64)
            if np.isnan(fill).any():
                raise UnsupportedError("an imputer dropped an empty column")
            prefix = f"preprocess.{i}"
            arrays[f"{prefix}.fill"] = fill
            block: dict[str, Any] = {"type": "numeric", "columns": columns, "fill": f"{prefix}.fill",
                                     "mean": None, "scale": None}
            for key, attr in (("mean", "mean_"), ("scale", "scale_")):
                value = getattr(second, attr, None)
                if value is not None and getattr(second, f"with_{'std' if key == 'scale' else 'mean'}"):
                    arrays[f"{prefix}.{key}"] = np.asarray(value, dtype=np.float64)
                    block[key] = f"{prefix}.{key}"
            numeric += columns
            width += len(columns)
        elif _is(second, "OneHotEncoder"):
            if (second.drop is not None or second.handle_unknown != "ignore"
                    or getattr(second, "_infrequent_enabled", False) or np.dtype(second.dtype) != np.float64):
                raise UnsupportedError("OneHotEncoder must ignore unknown categories, drop none, "
                                       "group no infrequent ones and output float64")
            cats = [list(c) for c in second.categories_]
            fills = list(imputer.statistics_)
            strings = [v for c in cats for v in c] + fills
            if not all(isinstance(v, str) for v in strings):
                raise UnsupportedError("categories and imputed values must be strings")
            block = {"type": "categorical", "columns": columns, "fill": fills, "categories": cats}
            categorical += columns
            width += sum(len(c) for c in cats)
        else:
            raise UnsupportedError(f"a {type(second).__name__} block has no compiled form")
        blocks.append(block)
    if not blocks:
        raise UnsupportedError("the ColumnTransformer has no blocks")
    sparse = bool(getattr(ct, "sparse_output_", False))
    return {"sparse": sparse, "blocks": blocks}, {"numeric": numeric, "categorical": categorical}, width


def _imputed(step: Any) -> tuple[Any, Any]:
    """``Pipeline([SimpleImputer(missing_values=nan), <second>])``."""
    if not _is(step, "Pipeline") or len(step.steps) != 2 or not _is(step.steps[0][1], "SimpleImputer"):
        raise UnsupportedError("each block must be Pipeline([SimpleImputer, scaler or encoder])")
    imputer, second = step.steps[0][1], step.steps[1][1]
    missing = imputer.missing_values
    if imputer.add_indicator or not (isinstance(missing, float) and math.isnan(missing)):
        raise UnsupportedError("the imputer must replace NaN and add no indicator")
    return imputer, second


def _classes(classes: Any) -> dict[str, Any]:
    values = np.asarray(classes)
    if values.dtype.kind in "iu":
        return {"kind": "int", "values": [int(v) for v in values]}
    if values.dtype.kind == "f":
        return {"kind": "float", "values": [float(v) for v in values]}
    if values.dtype.kind == "b":
        return {"kind": "bool", "values": [bool(v) for v in values]}
    if all(isinstance(v, str) for v in values.tolist()):
        return {"kind": "str", "values": [str(v) for v in values]}
    raise UnsupportedError(f"class labels of dtype {values.dtype} have no compiled form")


def _accepts_missing(estimator: Any, width: int) -> bool:
    """Whether the estimator predicts on NaN (trees route it) or refuses it, as installed."""
    try:
        estimator.predict(np.full((1, width), np.nan))
    except ValueError:
        return False
    return True


def _linear(estimator: Any, arrays: Arrays, *, classification: bool) -> tuple[dict[str, Any], str, str]:
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64)
    arrays["linear.coef"] = coef
    arrays["linear.intercept"] = intercept
    spec = {"type": "linear", "coef": "linear.coef", "intercept": "linear.intercept",
            "fortran": bool(coef.ndim == 2 and coef.shape[0] > 1 and not coef.flags.c_contiguous)}
    if not classification:
        if coef.ndim != 1:
            raise UnsupportedError("only single-target linear regressors are compiled")
        return spec, "value", "identity"
    if len(estimator.classes_) == 2:
        return spec, "gt0", "expit"
    return spec, "argmax", "softmax"


def _trees_arrays(trees: list[Any], arrays: Arrays, value: list[npt.NDArray[np.float64]]) -> dict[str, Any]:
    """Concatenated node arrays of scikit-learn ``Tree`` objects; leaves point to themselves."""
    offsets = np.concatenate([[0], np.cumsum([t.node_count for t in trees])[:-1]]).astype(np.int64)
    left, right, feature, threshold, missing = [], [], [], [], []
    for t, off in zip(trees, offsets, strict=True):
        ids = np.arange(t.node_count, dtype=np.int64) + off
        leaf = t.children_left < 0
        left.append(np.where(leaf, ids, t.children_left + off))
        right.append(np.where(leaf, ids, t.children_right + off))
        feature.append(np.where(leaf, 0, t.feature).astype(np.int64))
        threshold.append(np.asarray(t.threshold, dtype=np.float64))
        missing.append(np.asarray(t.missing_go_to_left, dtype=np.uint8))
    return _store(arrays, root=offsets, left=left, right=right, feature=feature, threshold=threshold,
                  missing=missing, value=value, depth=max(int(t.max_depth) for t in trees))


def _store(arrays: Arrays, *, root: npt.NDArray[np.int64], depth: int, **parts: list[Any]) -> dict[str, Any]:
    arrays["trees.root"] = root
    names = {"left": "left", "right": "right", "feature": "feature", "threshold": "threshold",
             "missing": "missingLeft", "value": "value"}
    spec: dict[str, Any] = {"type": "trees", "depth": depth, "root": "trees.root"}
    for part, key in names.items():
        arrays[f"trees.{part}"] = np.concatenate(parts[part])
        spec[key] = f"trees.{part}"
    return spec


def _forest(estimator: Any, arrays: Arrays, *, classification: bool) -> tuple[dict[str, Any], str, str]:
    if getattr(estimator, "n_outputs_", 1) != 1:
        raise UnsupportedError("only single-output forests are compiled")
    trees = [e.tree_ for e in estimator.estimators_]
    width = estimator.n_classes_ if classification else 1
    values = [np.asarray(t.value[:, 0, :width], dtype=np.float64) for t in trees]
    spec = _trees_arrays(trees, arrays, values)
    spec.update(combine="mean", cast="float32", width=int(estimator.n_features_in_))
    return spec, ("argmax" if classification else "value"), "identity"


def _boosting(estimator: Any, arrays: Arrays, *, classification: bool) -> tuple[dict[str, Any], str, str]:
    stages = estimator.estimators_  # [iterations, outputs] of DecisionTreeRegressor
    outputs = stages.shape[1]
    trees = [stages[i, k].tree_ for i in range(stages.shape[0]) for k in range(outputs)]
    scale = float(estimator.learning_rate)
    # predict_stages adds scale * value[leaf] per tree: the same product, computed once here.
    values = [scale * np.asarray(t.value[:, 0, 0], dtype=np.float64) for t in trees]
    spec = _trees_arrays(trees, arrays, values)
    width = int(estimator.n_features_in_)
    init = estimator._raw_predict_init(np.zeros((1, width), dtype=np.float32))[0]
    arrays["trees.init"] = np.asarray(init, dtype=np.float64)
    spec.update(combine="sum", cast="float32", width=width, init="trees.init")
    if not classification:
        return spec, "value", "identity"
    if outputs > 1:
        return spec, "argmax", "softmax"
    links = {"log_loss": "expit", "exponential": "expit2"}
    if estimator.loss not in links:
        raise UnsupportedError(f"GradientBoostingClassifier loss {estimator.loss!r} has no compiled form")
    return spec, "ge0", links[estimator.loss]


def _hist_boosting(
    estimator: Any, arrays: Arrays, *, classification: bool
) -> tuple[dict[str, Any], str, str]:
    categorical = getattr(estimator, "is_categorical_", None)
    if getattr(estimator, "_preprocessor", None) is not None or (
        categorical is not None and categorical.any()
    ):
        raise UnsupportedError("histogram boosting with categorical features has no compiled form")
    predictors = [p for iteration in estimator._predictors for p in iteration]
    outputs = len(estimator._predictors[0])
    nodes = [p.nodes for p in predictors]
    offsets = np.concatenate([[0], np.cumsum([len(n) for n in nodes])[:-1]]).astype(np.int64)
    left, right, feature, threshold, missing, value = [], [], [], [], [], []
    for n, off in zip(nodes, offsets, strict=True):
        ids = np.arange(len(n), dtype=np.int64) + off
        leaf = n["is_leaf"].astype(bool)
        left.append(np.where(leaf, ids, n["left"].astype(np.int64) + off))
        right.append(np.where(leaf, ids, n["right"].astype(np.int64) + off))
        feature.append(np.where(leaf, 0, n["feature_idx"]).astype(np.int64))
        threshold.append(n["num_threshold"].astype(np.float64))
        missing.append(n["missing_go_to_left"].astype(np.uint8))
        value.append(n["value"].astype(np.float64))
    spec = _store(arrays, root=offsets, left=left, right=right, feature=feature, threshold=threshold,
                  missing=missing, value=value, depth=max(int(n["depth"].max()) for n in nodes))
    arrays["trees.init"] = np.asarray(estimator._baseline_prediction, dtype=np.float64).reshape(outputs)
    spec.update(combine="sum", cast="float64", width=int(estimator.n_features_in_), init="trees.init")
    if classification:
        return spec, ("gt0" if outputs == 1 else "argmax"), ("expit" if outputs == 1 else "softmax")
    links = {"IdentityLink": "identity", "LogLink": "exp"}
    link = type(estimator._loss.link).__name__
    if link not in links:
        raise UnsupportedError(f"HistGradientBoostingRegressor link {link} has no compiled form")
    return spec, "value", links[link]
