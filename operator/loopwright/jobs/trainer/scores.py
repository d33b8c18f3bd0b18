"""Hold-out metrics by the names a TrainingPipeline uses (``spec.metrics``).

Conventions, so a value means the same thing on every ModelVersion:

* ``precision``, ``recall``, ``f1``: for a binary label the positive class is
  the greater of the two class names (``"1"`` for ``"0"``/``"1"``); for more
  classes they are macro averages. ``f1_macro`` is always the macro average.
* ``roc_auc``: binary, or one-vs-rest macro for more classes; ``log_loss``
  uses the predicted probabilities over every class seen in training.
* ``rmse``, ``mae``, ``r2``: regression, in the label's units.

A metric that cannot be computed on this hold-out (no probabilities, a single
class in the hold-out) is reported in ``skipped`` with the reason, never as a
made-up number.

The classification metrics are computed in numpy from one confusion matrix and
one ranking per class, with scikit-learn's definitions (the unit tests compare
every value with ``sklearn.metrics``): its functions validate and re-encode
their inputs on every call, which made the eight defaults cost about as much as
predicting the hold-out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics as skm

from loopwright.api.schema import TaskType

CLASSIFICATION = ("accuracy", "balanced_accuracy", "f1", "f1_macro", "precision", "recall", "roc_auc",
                  "log_loss")
REGRESSION = ("r2", "rmse", "mae")
DEFAULTS: dict[str, tuple[str, ...]] = {
    TaskType.CLASSIFICATION: CLASSIFICATION,
    TaskType.REGRESSION: REGRESSION,
}


@dataclass
class Evaluation:
    values: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def unsupported(task: TaskType | str, names: Sequence[str]) -> list[str]:
    """Requested metrics that do not apply to the task."""
    allowed = DEFAULTS[TaskType(task)]
    return [n for n in names if n not in allowed]


def evaluate(
    task: TaskType | str,
    names: Sequence[str],
    *,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None = None,
    classes: Sequence[str] = (),
) -> Evaluation:
    """Compute ``names`` on the hold-out (see the module docstring for conventions)."""
    out = Evaluation()
    n_classes = len(classes)
    if n_classes:
        # Integer codes (position in ``classes``, unknown labels after them):
        # scikit-learn's metrics are several times faster on ints than on strings.
        y_true, y_pred = _codes(y_true, classes), _codes(y_pred, classes)
    for name in names:
        try:
            value = _metric(name, y_true=y_true, y_pred=y_pred, proba=proba, n_classes=n_classes)
        except _SkippedError as exc:
            out.skipped[name] = str(exc)
            continue
        except ValueError as exc:
            out.skipped[name] = f"not defined on this hold-out: {exc}"
            continue
        if not math.isfinite(value):
            out.skipped[name] = "not finite on this hold-out"
            continue
        out.values[name] = value
    return out


class _SkippedError(Exception):
    pass


def _codes(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    positions = {c: i for i, c in enumerate(classes)}
    unknown = len(classes)
    return np.fromiter((positions.get(str(v), unknown) for v in labels), dtype=np.intp, count=len(labels))


def _metric(name: str, *, y_true: Any, y_pred: Any, proba: Any, n_classes: int) -> float:
    """One metric; a classification code is a position in the classes, ``n_classes`` an unseen class."""
    match name:
        case "accuracy":
            return float(np.mean(y_true == y_pred))
        case "balanced_accuracy":
            # Recall of every class present in the hold-out (a class only
            # predicted has no recall and is left out, as scikit-learn does).
            cm = _confusion(y_true, y_pred, n_classes)
            support = cm.sum(axis=1)
            present = support > 0
            return float(np.mean(np.diag(cm)[present] / support[present]))
        case "f1" | "precision" | "recall":
            return _set_wise(name, y_true, y_pred, n_classes, binary=n_classes == 2)
        case "f1_macro":
            return _set_wise("f1", y_true, y_pred, n_classes, binary=False)
        case "roc_auc":
            if proba is None:
                raise _SkippedError("the estimator gives no probabilities")
            present = np.unique(y_true)
            if present.size < 2:
                raise _SkippedError("the hold-out has a single class")
            if n_classes == 2:
                return _auc(y_true == 1, proba[:, 1])
            if present.size < n_classes:
                raise _SkippedError("some classes are absent from the hold-out")
            _known_only(y_true, n_classes)
            return float(np.mean([_auc(y_true == k, proba[:, k]) for k in range(n_classes)]))
        case "log_loss":
            if proba is None:
                raise _SkippedError("the estimator gives no probabilities")
            _known_only(y_true, n_classes)
            eps = np.finfo(proba.dtype).eps
            return float(np.mean(-np.log(np.clip(proba[np.arange(len(y_true)), y_true], eps, 1 - eps))))
        case "r2":
            if len(y_true) < 2:
                raise _SkippedError("r2 needs at least two hold-out rows")
            return float(skm.r2_score(y_true, y_pred))
        case "rmse":
            return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
        case "mae":
            return float(skm.mean_absolute_error(y_true, y_pred))
    raise _SkippedError(f"unknown metric {name!r}")


def confusion_matrix(y_true: Any, y_pred: Any, classes: Sequence[str]) -> tuple[list[str], list[list[int]]]:
    """Rows are the true class, columns the predicted one; an "(unseen)" class only when it occurs."""
    codes = _codes(np.asarray(y_true), classes), _codes(np.asarray(y_pred), classes)
    matrix = _confusion(*codes, len(classes))
    names = list(classes)
    if matrix[-1].sum() or matrix[:, -1].sum():
        names.append("(unseen)")
    else:
        matrix = matrix[:-1, :-1]
    return names, [[int(v) for v in row] for row in matrix]


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true, predicted) codes over the known classes and the unseen code: (n+1) x (n+1)."""
    size = n_classes + 1
    return np.bincount(y_true * size + y_pred, minlength=size * size).reshape(size, size)


def _set_wise(name: str, y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, *, binary: bool) -> float:
    """Precision, recall or F1: of class 1 when ``binary``, else the macro average.

    The macro average runs over the classes in the hold-out or the predictions
    (scikit-learn's default labels); a zero denominator scores 0
    (``zero_division=0``).
    """
    cm = _confusion(y_true, y_pred, n_classes)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    labels = np.flatnonzero((predicted + actual) > 0)
    if binary:
        # scikit-learn's rule: more than two labels, or two without the positive one, is no binary problem.
        if labels.size > 2 or (labels.size == 2 and 1 not in labels):
            raise _SkippedError("a class unseen in training is in the hold-out: not a binary problem")
        labels = np.array([1])
    tp = np.diag(cm)[labels].astype(np.float64)
    numerator, denominator = {
        "precision": (tp, predicted[labels]),
        "recall": (tp, actual[labels]),
        "f1": (2 * tp, predicted[labels] + actual[labels]),
    }[name]
    scores = np.divide(numerator, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(np.mean(scores))


def _auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney statistic, ties counted as a half (scikit-learn's value)."""
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _known_only(y_true: np.ndarray, n_classes: int) -> None:
    if (y_true >= n_classes).any():
        raise _SkippedError("the hold-out has a class unseen in training")
