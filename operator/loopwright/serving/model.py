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
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from loopwright import artifacts, storage
from loopwright.api.schema import TaskType
from loopwright.core.profile import FeatureKind, FeatureProfile, Profile
from loopwright.serving.decode import Batch, Decoder, FloatArray, RequestError

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.intp]
# Class indices (classification) or values (regression); None: not for this batch, use predict().
_FastPredict = Callable[[Batch], npt.NDArray[Any] | None]
_MatrixPredict = Callable[[FloatArray], npt.NDArray[Any]]

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
        self._fast = self._verified_fast_path()

    @property
    def fast_path(self) -> bool:
        return self._fast is not None

    def predict(self, batch: Batch) -> Prediction:
        out = self._fast(batch) if self._fast is not None else None
        if out is not None:
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
        est = self.estimator
        fast: _FastPredict | None
        if self.frame_input:
            fast = _pipeline(est, decoder=self.decoder, classification=self.classification)
        else:
            on_matrix = _compile(est, classification=self.classification)
            fast = None if on_matrix is None else _on_complete_rows(on_matrix)
        if fast is None:
            return None
        # Bare estimators never see missing values on the fast path, so their probes have none.
        probes = _probe_batch(
            self.features, self.decoder, trees=None if self.frame_input else est, missing=self.frame_input
        )
        try:
            expected = np.asarray(est.predict(self._input(probes)))
            got = fast(probes)
        except Exception:  # a replay that cannot even run is simply not used
            logger.exception("fast path of %s failed on the probe rows; using predict()", type(est).__name__)
            return None
        if got is None:
            return None
        if self.classification:
            got = self.classes[got]
        if not np.array_equal(expected, got):
            logger.warning("fast path of %s disagrees with predict(); using predict()", type(est).__name__)
            return None
        logger.info("fast path for %s verified on %d probe rows", type(est).__name__, probes.rows)
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


def _compile(estimator: Any, *, classification: bool) -> _MatrixPredict | None:
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


def _linear_classifier(estimator: Any) -> _MatrixPredict:
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


def _linear_regressor(estimator: Any) -> _MatrixPredict:
    coef_t = estimator.coef_.T
    intercept = estimator.intercept_

    def predict(x: FloatArray) -> FloatArray:
        out: FloatArray = x @ coef_t + intercept
        return out

    return predict


def _forest(estimator: Any, *, classification: bool) -> _MatrixPredict:
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


def _on_complete_rows(on_matrix: _MatrixPredict) -> _FastPredict:
    """A bare estimator's replay; rows with a missing value go to ``predict`` (and its errors)."""

    def predict(batch: Batch) -> npt.NDArray[Any] | None:
        return None if batch.missing_numeric else on_matrix(batch.numeric)

    return predict


def _pipeline(estimator: Any, *, decoder: Decoder, classification: bool) -> _FastPredict | None:
    """The trainer's ``Pipeline([ColumnTransformer(...), model])`` replayed without pandas.

    Each block of the ColumnTransformer must be ``SimpleImputer`` + ``StandardScaler`` on
    numeric columns or ``SimpleImputer`` + ``OneHotEncoder(handle_unknown="ignore")`` on
    categorical ones, with nothing passed through. Building a DataFrame and running the
    ColumnTransformer costs milliseconds per request; the same arithmetic on the decoded
    batch costs microseconds. A dense result feeds the model's own replay when there is
    one; a sparse one (the ColumnTransformer chose sparse output) goes to the model's
    ``predict`` as the same CSR matrix the ColumnTransformer would have produced.
    """
    if type(estimator).__name__ != "Pipeline" or len(estimator.steps) != 2:
        return None
    transformer, model = estimator.steps[0][1], estimator.steps[1][1]
    if type(transformer).__name__ != "ColumnTransformer":
        return None
    numeric_index = {n: j for j, n in enumerate(decoder.numeric_names)}
    blocks: list[Callable[[Batch], FloatArray]] = []
    for name, step, columns in transformer.transformers_:
        if name == "remainder" and (step == "drop" or len(columns) == 0):
            continue
        block = _numeric_block(step, columns, numeric_index) or _categorical_block(step, columns, decoder)
        if block is None:
            return None
        blocks.append(block)
    sparse_output = bool(getattr(transformer, "sparse_output_", False))
    on_matrix = None if sparse_output else _compile(model, classification=classification)
    classes = np.asarray(getattr(model, "classes_", []))

    def predict(batch: Batch) -> npt.NDArray[Any] | None:
        parts = [block(batch) for block in blocks]
        x = parts[0] if len(parts) == 1 else np.hstack(parts)
        if on_matrix is not None:
            return on_matrix(x)
        if sparse_output:
            from scipy import sparse  # noqa: PLC0415 - scikit-learn's own dependency

            raw = model.predict(sparse.csr_matrix(x))
        else:
            raw = model.predict(x)
        out: npt.NDArray[Any] = (
            np.searchsorted(classes, raw) if classification else np.asarray(raw, np.float64)
        )
        return out

    return predict


def _numeric_block(
    step: Any, columns: Any, numeric_index: dict[str, int]
) -> Callable[[Batch], FloatArray] | None:
    parts = _imputed(step, "StandardScaler")
    if parts is None or not all(c in numeric_index for c in columns):
        return None
    imputer, scaler = parts
    stats = np.asarray(imputer.statistics_, dtype=np.float64)
    if np.isnan(stats).any():  # an empty training column that the imputer drops
        return None
    index = np.array([numeric_index[c] for c in columns], dtype=np.intp)
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None

    def transform(batch: Batch) -> FloatArray:
        x = batch.numeric[:, index]
        if batch.missing_numeric:
            x = np.where(np.isnan(x), stats, x)
        # StandardScaler.transform: X -= mean_; X /= scale_ (the same IEEE operations).
        if mean is not None:
            x = x - mean
        if scale is not None:
            x = x / scale
        return x

    return transform


def _categorical_block(step: Any, columns: Any, decoder: Decoder) -> Callable[[Batch], FloatArray] | None:
    parts = _imputed(step, "OneHotEncoder")
    if parts is None or not all(c in decoder.by_name and not decoder.by_name[c].numeric for c in columns):
        return None
    imputer, encoder = parts
    if (
        encoder.drop is not None
        or encoder.handle_unknown != "ignore"
        or getattr(encoder, "_infrequent_enabled", False)
        or np.dtype(encoder.dtype) != np.float64
        or not all(isinstance(v, str) for cats in encoder.categories_ for v in cats)
        or not all(isinstance(v, str) for v in imputer.statistics_)
    ):
        return None
    fills = [str(v) for v in imputer.statistics_]
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in encoder.categories_])]).astype(np.intp)
    lookups = [
        {v: int(offsets[j]) + k for k, v in enumerate(cats)} for j, cats in enumerate(encoder.categories_)
    ]
    width = int(offsets[-1])
    names = list(columns)

    def transform(batch: Batch) -> FloatArray:
        out = np.zeros((batch.rows, width), dtype=np.float64)
        for j, name in enumerate(names):
            lookup, fill = lookups[j], fills[j]
            for r, value in enumerate(batch.categorical[name]):
                k = lookup.get(fill if value is None else value)
                if k is not None:  # unknown categories encode as all zeros
                    out[r, k] = 1.0
        return out

    return transform


def _imputed(step: Any, second: str) -> tuple[Any, Any] | None:
    """``Pipeline([SimpleImputer(missing_values=nan), <second>])``, or None."""
    if type(step).__name__ != "Pipeline" or len(step.steps) != 2:
        return None
    imputer, other = step.steps[0][1], step.steps[1][1]
    if type(imputer).__name__ != "SimpleImputer" or type(other).__name__ != second:
        return None
    missing = imputer.missing_values
    if imputer.add_indicator or not (isinstance(missing, float) and math.isnan(missing)):
        return None
    return imputer, other


def _probe_batch(
    features: list[tuple[str, FeatureProfile]], decoder: Decoder, *, trees: Any, missing: bool
) -> Batch:
    """Rows over every reference bin, unseen categories, missing values where the schema allows
    them and, for a bare forest, both sides of its split points."""
    rng = np.random.default_rng(0)
    numeric = [(n, f) for n, f in features if f.kind == FeatureKind.NUMERIC]
    thresholds: list[list[float]] = [[] for _ in numeric]
    for tree in getattr(trees, "estimators_", []):
        t = tree.tree_
        inner = t.children_left >= 0
        for j, thr in zip(t.feature[inner], t.threshold[inner], strict=True):
            if len(thresholds[j]) < 64:
                thresholds[j].append(float(thr))
    matrix = np.empty((_PROBE_ROWS, len(numeric)))
    for j, (name, f) in enumerate(numeric):
        edges = np.asarray(f.edges or [0.0], dtype=np.float64)
        anchors = [*edges, *(v for v in (f.min, f.max, f.mean) if v is not None), *thresholds[j]]
        a = np.asarray(anchors, dtype=np.float64)
        pool = [a, np.nextafter(a, np.inf), np.nextafter(a, -np.inf), (a[:-1] + a[1:]) / 2]
        if missing and decoder.by_name[name].nullable:
            pool.append(np.full(max(len(a) // 4, 1), np.nan))
        matrix[:, j] = rng.choice(np.concatenate(pool), size=_PROBE_ROWS)
    categorical: dict[str, list[str | None]] = {}
    for name, f in features:
        if f.kind == FeatureKind.CATEGORICAL:
            pool_c: list[str | None] = [*(f.categories or []), "\x00unseen"]
            if missing and decoder.by_name[name].nullable:
                pool_c.append(None)
            categorical[name] = [pool_c[i] for i in rng.integers(0, len(pool_c), size=_PROBE_ROWS)]
    return Batch(
        rows=_PROBE_ROWS,
        numeric=matrix,
        categorical=categorical,
        missing_numeric=bool(np.isnan(matrix).any()),
    )
