"""The trainer's classification metrics (numpy, one confusion matrix) against scikit-learn's functions."""

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from loopwright.jobs.trainer import scores as metrics


def _sklearn(name, y_true, y_pred, proba, n_classes):
    """scikit-learn's value with the conventions of loopwright.jobs.trainer.scores, None where it refuses."""
    averaged = {"average": "binary", "pos_label": 1} if n_classes == 2 else {"average": "macro"}
    labels = list(range(n_classes))
    calls = {
        "accuracy": lambda: skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y_true, y_pred),
        "f1": lambda: skm.f1_score(y_true, y_pred, zero_division=0, **averaged),
        "f1_macro": lambda: skm.f1_score(y_true, y_pred, average="macro", zero_division=0),
        "precision": lambda: skm.precision_score(y_true, y_pred, zero_division=0, **averaged),
        "recall": lambda: skm.recall_score(y_true, y_pred, zero_division=0, **averaged),
        "roc_auc": lambda: (skm.roc_auc_score(y_true == 1, proba[:, 1]) if n_classes == 2 else
                            skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=labels)),
        "log_loss": lambda: skm.log_loss(y_true, proba, labels=labels),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(calls[name]())
        except ValueError:
            return None


def _case(seed, *, n_classes, rows, unseen=0, rounded=False):
    """Codes and probabilities of a plausible classifier; ``unseen`` rows of a class not trained on."""
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, n_classes, rows)
    logits = rng.normal(size=(rows, n_classes)) + 1.5 * np.eye(n_classes)[y_true]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    if rounded:  # many tied scores, as trees give
        proba = np.round(proba, 1)
        proba /= proba.sum(axis=1, keepdims=True)
    y_pred = np.argmax(proba, axis=1)
    y_true[:unseen] = n_classes
    return y_true, y_pred, proba


CASES = [
    pytest.param(dict(n_classes=2, rows=4000), id="binary"),
    pytest.param(dict(n_classes=2, rows=3000, rounded=True), id="binary-ties"),
    pytest.param(dict(n_classes=4, rows=5000), id="multiclass"),
    pytest.param(dict(n_classes=5, rows=2000, rounded=True), id="multiclass-ties"),
    pytest.param(dict(n_classes=2, rows=500, unseen=7), id="binary-unseen-class"),
    pytest.param(dict(n_classes=3, rows=600, unseen=5), id="multiclass-unseen-class"),
    pytest.param(dict(n_classes=3, rows=9), id="tiny"),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_metric_equals_sklearn(case, seed):
    y_true, y_pred, proba = _case(seed, **case)
    n_classes = case["n_classes"]
    for name in metrics.CLASSIFICATION:
        expected = _sklearn(name, y_true, y_pred, proba, n_classes)
        try:
            got = metrics._metric(name, y_true=y_true, y_pred=y_pred, proba=proba, n_classes=n_classes)
        except metrics._SkippedError:
            got = None
        if expected is None:
            assert got is None, name
        else:
            assert got == pytest.approx(expected, rel=1e-12, abs=1e-15), name


@pytest.mark.parametrize(
    ("y_true", "y_pred"),
    [
        pytest.param([0, 0, 0, 0], [0, 0, 0, 0], id="no-positive-anywhere"),
        pytest.param([1, 1, 0, 0], [0, 0, 0, 0], id="never-predicted-positive"),
        pytest.param([0, 0, 0, 0], [1, 0, 1, 0], id="only-predicted-positive"),
        pytest.param([2, 2, 0, 0], [0, 0, 0, 0], id="unseen-class-without-positive"),
        pytest.param([2, 2, 1, 1], [1, 1, 1, 0], id="unseen-class-with-positive"),
        pytest.param([2, 2, 2, 2], [1, 0, 1, 0], id="only-unseen-class"),
    ],
)
def test_binary_zero_divisions_and_unseen_classes_follow_sklearn(y_true, y_pred):
    y_true, y_pred = np.array(y_true), np.array(y_pred)
    for name in ("accuracy", "balanced_accuracy", "f1", "f1_macro", "precision", "recall"):
        expected = _sklearn(name, y_true, y_pred, None, 2)
        try:
            got = metrics._metric(name, y_true=y_true, y_pred=y_pred, proba=None, n_classes=2)
        except metrics._SkippedError:
            got = None
        assert got == (None if expected is None else pytest.approx(expected, rel=1e-12)), name


def test_undefined_metrics_are_skipped_with_a_reason():
    y_true, y_pred, proba = _case(0, n_classes=3, rows=300)
    y_true[y_true == 2] = 0
    ev = metrics.evaluate("classification", ["roc_auc", "log_loss", "accuracy"], y_true=y_true.astype(str),
                          y_pred=y_pred.astype(str), proba=proba, classes=["0", "1", "2"])
    assert ev.skipped == {"roc_auc": "some classes are absent from the hold-out"}
    assert set(ev.values) == {"log_loss", "accuracy"}
