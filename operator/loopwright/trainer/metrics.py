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
    binary = n_classes == 2
    averaged: dict[str, Any] = {"average": "macro"}
    if binary:
        averaged = {"average": "binary", "pos_label": 1}
    match name:
        case "accuracy":
            return float(skm.accuracy_score(y_true, y_pred))
        case "balanced_accuracy":
            return float(skm.balanced_accuracy_score(y_true, y_pred))
        case "f1":
            return float(skm.f1_score(y_true, y_pred, zero_division=0, **averaged))
        case "f1_macro":
            return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
        case "precision":
            return float(skm.precision_score(y_true, y_pred, zero_division=0, **averaged))
        case "recall":
            return float(skm.recall_score(y_true, y_pred, zero_division=0, **averaged))
        case "roc_auc":
            if proba is None:
                raise _SkippedError("the estimator gives no probabilities")
            present = np.unique(y_true)
            if present.size < 2:
                raise _SkippedError("the hold-out has a single class")
            if binary:
                return float(skm.roc_auc_score(y_true == 1, proba[:, 1]))
            if present.size < n_classes:
                raise _SkippedError("some classes are absent from the hold-out")
            return float(skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=list(range(n_classes))))
        case "log_loss":
            if proba is None:
                raise _SkippedError("the estimator gives no probabilities")
            return float(skm.log_loss(y_true, proba, labels=list(range(n_classes))))
        case "r2":
            if len(y_true) < 2:
                raise _SkippedError("r2 needs at least two hold-out rows")
            return float(skm.r2_score(y_true, y_pred))
        case "rmse":
            return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
        case "mae":
            return float(skm.mean_absolute_error(y_true, y_pred))
    raise _SkippedError(f"unknown metric {name!r}")
