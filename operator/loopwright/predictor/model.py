"""The served model: a verified estimator, its reference profile, and a fast predict.

scikit-learn's ``predict`` spends most of its time on input validation for the
one-row requests a prediction server sees (about 100 us for a logistic
regression, 5 ms for a 100-tree forest, whose per-tree dispatch dominates). For
the estimators that matter most the predictor therefore evaluates the fitted
parameters directly with numpy, replaying scikit-learn's arithmetic in the same
order so the results are bit-identical, and it proves that at load time on
probe rows built from the reference profile: if the fast path disagrees with
``estimator.predict`` on a single probe, it is dropped and the estimator's own
``predict`` serves. Anything else (pipelines with categorical features, other
estimators) goes through ``estimator.predict`` unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright import artifacts, storage
from loopwright.api.schema import TaskType
from loopwright.predictor.decode import Batch, Decoder, FloatArray, RequestError
from loopwright.profile import FeatureKind, FeatureProfile, Profile

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.intp]
_FastPredict = Callable[[FloatArray], npt.NDArray[Any]]

_PROBE_ROWS = 512


class ModelLoadError(Exception):
    """The model or its profile cannot be served."""


@dataclass(frozen=True)
class Prediction:
    """One batch's predictions in the three forms the server needs."""

    labels: npt.NDArray[Any]  # what the client sees: class labels or regression values
    stored: FloatArray  # what feedback is scored against: class index or value
    bins: IntArray | None  # reference prediction bin per row, for the metrics


class ServedModel:
    """One estimator with the schema, task and reference bins from its profile."""

    def __init__(self, *, estimator: Any, profile: Profile) -> None:
        schema = profile.dataset_schema
        if schema is None:
            raise ModelLoadError("the profile carries no dataset schema")
        self.estimator = estimator
        self.profile = profile
        self.decoder = Decoder(schema=schema)
        self.task = TaskType(profile.task or schema.label.task)
        self.classification = self.task == TaskType.CLASSIFICATION
        self.frame_input = hasattr(estimator, "feature_names_in_") or not self.decoder.all_numeric
        self.features = self._reference_features(profile)
        self.prediction_profile = profile.prediction

        if self.classification:
            classes = getattr(estimator, "classes_", None)
            if classes is None:
                raise ModelLoadError("a classification model without classes_")
            self.classes: npt.NDArray[Any] = np.asarray(classes)
            self._class_index = {_label_key(c): i for i, c in enumerate(self.classes.tolist())}
            self.output_datatype = _datatype(self.classes)
            self._class_bins = (
                self.prediction_profile.bin_index([str(c) for c in self.classes.tolist()])
                if self.prediction_profile is not None
                else None
            )
        else:
            self.classes = np.zeros(0)
            self.output_datatype = "FP64"
        self._fast = None if self.frame_input else self._verified_fast_path()

    @property
    def fast_path(self) -> bool:
        return self._fast is not None

    def predict(self, batch: Batch) -> Prediction:
        if self._fast is not None and not batch.missing_numeric:
            out = self._fast(batch.numeric)
            if self.classification:
                return self._classes_from_index(out)
            return self._regression(out)
        raw = self._call(self.estimator.predict, batch)
        if self.classification:
            index = np.searchsorted(self.classes, raw)
            return self._classes_from_index(np.minimum(index, len(self.classes) - 1))
        return self._regression(np.asarray(raw, dtype=np.float64))

    def predict_proba(self, batch: Batch) -> FloatArray:
        if not self.classification or not hasattr(self.estimator, "predict_proba"):
            raise RequestError(400, "this model has no 'predict_proba' output")
        return np.asarray(self._call(self.estimator.predict_proba, batch), dtype=np.float64)

    def class_index(self, label: object) -> int:
        """Index of a label sent as feedback (-1: not a class the model knows)."""
        return self._class_index.get(_label_key(label), -1)

    def _classes_from_index(self, index: npt.NDArray[Any]) -> Prediction:
        index = index.astype(np.intp, copy=False)
        bins = self._class_bins[index] if self._class_bins is not None else None
        return Prediction(labels=self.classes[index], stored=index.astype(np.float64), bins=bins)

    def _regression(self, values: FloatArray) -> Prediction:
        profile = self.prediction_profile
        bins = profile.bin_index(values) if profile is not None else None
        return Prediction(labels=values, stored=values, bins=bins)

    def _call(self, method: Callable[[Any], Any], batch: Batch) -> Any:
        try:
            return method(self._input(batch))
        except ValueError as exc:
            # scikit-learn's input validation speaks ValueError: input the schema admits but
            # this estimator cannot take (e.g. NaN in a nullable column) is the request's fault.
            raise RequestError(422, f"the model rejected the input: {exc}") from None

    def _input(self, batch: Batch) -> Any:
        if not self.frame_input:
            return batch.numeric
        import pandas as pd  # noqa: PLC0415 - only models trained on DataFrames need it

        columns: dict[str, Any] = {}
        numeric_index = {n: j for j, n in enumerate(self.decoder.numeric_names)}
        for c in self.decoder.columns:
            if c.numeric:
                columns[c.name] = batch.numeric[:, numeric_index[c.name]]
            else:
                # NaN, not None: that is what pandas gives the trainer for an empty cell, and what
                # SimpleImputer(missing_values=np.nan) recognises in object columns.
                values = np.array(batch.categorical[c.name], dtype=object)
                values[values == None] = np.nan  # noqa: E711 - element-wise comparison
                columns[c.name] = values
        return pd.DataFrame(columns, columns=list(self.decoder.names))

    def _reference_features(self, profile: Profile) -> list[tuple[str, FeatureProfile]]:
        """The reference profile of every schema feature, numeric ones first (the metrics' order)."""
        out: list[tuple[str, FeatureProfile]] = []
        numeric = [c for c in self.decoder.columns if c.numeric]
        categorical = [c for c in self.decoder.columns if not c.numeric]
        for column in (*numeric, *categorical):
            kind = FeatureKind.NUMERIC if column.numeric else FeatureKind.CATEGORICAL
            feature = profile.features.get(column.name)
            if feature is None:
                raise ModelLoadError(f"the profile has no reference bins for feature {column.name!r}")
            if feature.kind != kind:
                raise ModelLoadError(
                    f"feature {column.name!r} is {kind} in the schema, {feature.kind} in the profile"
                )
            out.append((column.name, feature))
        return out

    def _verified_fast_path(self) -> _FastPredict | None:
        fast = _compile(self.estimator, classification=self.classification)
        if fast is None:
            return None
        probes = _probe_rows(self.features, self.estimator)
        expected = self.estimator.predict(probes)
        got = fast(probes)
        if self.classification:
            got = self.classes[got]
        if not np.array_equal(np.asarray(expected), got):
            logger.warning("fast path of %s disagrees with predict(); using predict()", type(self.estimator))
            return None
        logger.info("fast path for %s verified on %d probe rows", type(self.estimator).__name__, len(probes))
        return fast


def load(*, model_uri: str, model_sha256: str, profile_uri: str, profile_sha256: str | None) -> ServedModel:
    """Fetch, verify and load the model and its profile (blocking; run it off the event loop)."""
    try:
        profile = Profile.model_validate_json(storage.get_bytes(profile_uri, sha256=profile_sha256))
        estimator = artifacts.load(model_uri, sha256=model_sha256)
    except (storage.StorageError, artifacts.ArtifactError, ValueError) as exc:
        raise ModelLoadError(str(exc)) from exc
    return ServedModel(estimator=estimator, profile=profile)


def _label_key(label: object) -> str:
    """Labels compare as text, with 1.0 == 1 (JSON clients send either for an integer class)."""
    if isinstance(label, float | np.floating) and float(label).is_integer():
        return str(int(label))
    return str(label)


def _datatype(values: npt.NDArray[Any]) -> str:
    kind = values.dtype.kind
    return {"i": "INT64", "u": "UINT64", "f": "FP64", "b": "BOOL"}.get(kind, "BYTES")


def _compile(estimator: Any, *, classification: bool) -> _FastPredict | None:
    """A numpy replay of ``predict`` for the estimators worth it; None for the rest."""
    name = type(estimator).__name__
    module = type(estimator).__module__
    if not module.startswith("sklearn."):
        return None
    if classification and name == "LogisticRegression":
        return _linear_classifier(estimator)
    if not classification and name in {"LinearRegression", "Ridge"}:
        return _linear_regressor(estimator)
    if name in {
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "RandomForestRegressor",
        "ExtraTreesRegressor",
    }:
        if getattr(estimator, "n_outputs_", 1) != 1:
            return None
        return _forest(estimator, classification=classification)
    return None


def _linear_classifier(estimator: Any) -> _FastPredict:
    # LinearClassifierMixin: scores = X @ coef_.T + intercept_; binary is scores > 0, else argmax.
    coef_t = estimator.coef_.T
    intercept = estimator.intercept_

    def predict(x: FloatArray) -> IntArray:
        scores: FloatArray = x @ coef_t + intercept
        if scores.shape[1] == 1:
            return (scores[:, 0] > 0).astype(np.intp)
        index: IntArray = np.argmax(scores, axis=1)
        return index

    return predict


def _linear_regressor(estimator: Any) -> _FastPredict:
    coef_t = estimator.coef_.T
    intercept = estimator.intercept_

    def predict(x: FloatArray) -> FloatArray:
        out: FloatArray = x @ coef_t + intercept
        return out

    return predict


def _forest(estimator: Any, *, classification: bool) -> _FastPredict:
    """All trees walked at once: one gather per depth level over a [trees, rows] node matrix.

    Trees compare float32 inputs with float64 thresholds (``x <= threshold`` goes left), and a
    forest sums the per-tree leaf values in estimator order before dividing by the number of
    trees; both are replayed exactly. Leaves point to themselves, so every walk can run for
    the forest's maximum depth without a branch.
    """
    trees = [e.tree_ for e in estimator.estimators_]
    sizes = np.array([t.node_count for t in trees], dtype=np.intp)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    left_parts, right_parts, feature_parts, threshold_parts, value_parts = [], [], [], [], []
    for t, off in zip(trees, offsets, strict=True):
        ids = np.arange(t.node_count, dtype=np.intp) + off
        leaf = t.children_left < 0
        left_parts.append(np.where(leaf, ids, t.children_left + off))
        right_parts.append(np.where(leaf, ids, t.children_right + off))
        feature_parts.append(np.where(leaf, 0, t.feature).astype(np.intp))
        threshold_parts.append(t.threshold)
        value_parts.append(t.value[:, 0, : estimator.n_classes_] if classification else t.value[:, 0, 0])
    left = np.concatenate(left_parts)
    right = np.concatenate(right_parts)
    feature = np.concatenate(feature_parts)
    threshold = np.concatenate(threshold_parts).astype(np.float64)
    values = np.concatenate(value_parts).astype(np.float64)
    depth = max(int(t.max_depth) for t in trees)
    n_trees = len(trees)
    width = int(estimator.n_features_in_)

    def predict(x: FloatArray) -> npt.NDArray[Any]:
        rows = x.shape[0]
        flat = x.astype(np.float32).astype(np.float64).ravel()
        base = np.arange(rows, dtype=np.intp) * width
        node = np.repeat(offsets[:, None], rows, axis=1)  # [trees, rows]
        for _ in range(depth):
            go_left = flat[base + feature[node]] <= threshold[node]
            node = np.where(go_left, left[node], right[node])
        # Sum over axis 0 runs in tree order, as the forest's own accumulation does.
        total = np.add.reduce(values[node], axis=0)
        total /= n_trees
        if classification:
            index: IntArray = np.argmax(total, axis=1)
            return index
        out: FloatArray = total
        return out

    return predict


def _probe_rows(features: list[tuple[str, FeatureProfile]], estimator: Any) -> FloatArray:
    """Rows that exercise every reference bin and, for trees, both sides of the split points."""
    rng = np.random.default_rng(0)
    numeric = [f for _, f in features if f.kind == FeatureKind.NUMERIC]
    thresholds: list[list[float]] = [[] for _ in numeric]
    for tree in getattr(estimator, "estimators_", []):
        t = tree.tree_
        inner = t.children_left >= 0
        for j, thr in zip(t.feature[inner], t.threshold[inner], strict=True):
            if len(thresholds[j]) < 64:
                thresholds[j].append(float(thr))
    columns = []
    for j, f in enumerate(numeric):
        edges = np.asarray(f.edges or [0.0], dtype=np.float64)
        anchors = [*edges, *(v for v in (f.min, f.max, f.mean) if v is not None), *thresholds[j]]
        a = np.asarray(anchors, dtype=np.float64)
        candidates = np.concatenate(
            [a, np.nextafter(a, np.inf), np.nextafter(a, -np.inf), (a[:-1] + a[1:]) / 2]
        )
        columns.append(rng.choice(candidates, size=_PROBE_ROWS))
    return np.column_stack(columns) if columns else np.zeros((_PROBE_ROWS, 0))
