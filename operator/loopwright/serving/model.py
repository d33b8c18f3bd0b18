"""The served model: a compiled program or a verified skops estimator, with its reference profile.

Two ways to serve, one answer:

* **compiled** (the ModelVersion carries a compiled artifact that the verification Job found
  identical to the skops model on the hold-out rows): the plain arrays of
  :mod:`loopwright.compiled` evaluated with numpy. Neither scikit-learn nor SciPy nor pandas is
  imported, which is what makes such a pod start in a fraction of a second and stay small.
* **skops** (anything else): the estimator, loaded with the fixed trusted types (plus the ones its
  ModelVersion declares for a factory's own code, ``LOOPWRIGHT_TRUSTED_TYPES``). scikit-learn's
  ``predict`` spends most of its time validating the one-row requests a prediction server sees,
  so when :mod:`loopwright.compiled.compiler` covers the estimator its compiled form is built in
  process and proven at load time on probe rows from the reference profile
  (:mod:`loopwright.compiled.agreement`); if it disagrees on a single probe it is dropped and
  the estimator's own methods serve.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError

from loopwright import artifacts, storage
from loopwright.api._base import one_line
from loopwright.api.schema import TaskType
from loopwright.compiled import compiler, container
from loopwright.compiled.agreement import compare, estimator_input
from loopwright.compiled.program import InputError, Program, ProgramError
from loopwright.core.profile import FeatureKind, FeatureProfile, Profile
from loopwright.serving.decode import Batch, Decoder, FloatArray, RequestError

logger = logging.getLogger(__name__)

IntArray = npt.NDArray[np.intp]
_PROBE_ROWS = 512


class ModelLoadError(Exception):
    """The model or its profile cannot be served."""


@dataclass(slots=True)
class Prediction:
    """One batch's predictions in the three forms the server needs."""

    labels: npt.NDArray[Any]  # what the client sees: class labels or regression values
    stored: FloatArray  # what feedback is scored against: class index or value
    bins: IntArray | None  # reference prediction bin per row, for the metrics


class ServedModel:
    """A compiled ``program``, or a skops ``estimator``, with the schema and bins of its profile."""

    def __init__(self, *, profile: Profile, program: Program | None = None, estimator: Any = None) -> None:
        schema = profile.dataset_schema
        if schema is None:
            raise ModelLoadError("the profile carries no dataset schema")
        if (program is None) == (estimator is None):
            raise ModelLoadError("serve either a compiled program or an estimator")
        self.estimator = estimator
        self.profile = profile
        self.decoder = Decoder(schema=schema)
        self.task = TaskType(profile.task or schema.label.task)
        self.classification = self.task == TaskType.CLASSIFICATION
        self.features = self._reference_features(profile)
        self.prediction_profile = profile.prediction
        self.compiled = program is not None
        if program is not None:
            self._bind(program)
            if program.classification != self.classification:
                raise ModelLoadError(f"the compiled model is a {program.task} model, the profile's task "
                                     f"is {self.task}")
        classes = program.classes if program is not None else getattr(estimator, "classes_", None)
        if self.classification:
            if classes is None:
                raise ModelLoadError("a classification model without classes")
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
        self.has_proba = self.classification and (
            program is not None or hasattr(estimator, "predict_proba"))
        self._program = program if program is not None else self._verified_fast_path()

    @property
    def form(self) -> str:
        """What answers: ``compiled`` (the compiled artifact), ``skops-compiled`` (the skops model's
        compiled form, proven at load) or ``skops`` (scikit-learn's own methods)."""
        if self.compiled:
            return "compiled"
        return "skops-compiled" if self._program is not None else "skops"

    def predict(self, batch: Batch, *, proba: bool = False) -> tuple[Prediction, FloatArray | None]:
        """Predictions and, with ``proba`` (classifiers only), class probabilities."""
        if proba and not self.has_proba:
            raise RequestError(400, "this model has no 'predict_proba' output")
        out = None
        if self._program is not None:
            try:
                out = self._program.evaluate(batch.numeric, batch.categorical, proba=proba,
                                             missing=batch.missing_numeric)
            except InputError as exc:
                if self.compiled:
                    raise RequestError(422, f"the model rejected the input: {exc}") from None
                # else a skops model's NaN rows: the estimator answers, or words the 422 itself
        if out is not None:
            index, probabilities = out
        else:
            raw = self._call(self.estimator.predict, batch)
            probabilities = (np.asarray(self._call(self.estimator.predict_proba, batch), dtype=np.float64)
                             if proba else None)
            index = (np.minimum(np.searchsorted(self.classes, raw), len(self.classes) - 1)
                     if self.classification else np.asarray(raw, dtype=np.float64))
        if self.classification:
            return self._classes_from_index(index), probabilities
        return self._regression(index), None

    def class_index(self, label: object) -> int:
        """Index of a label sent as feedback (-1: not a class the model knows)."""
        return self._class_index.get(_label_key(label), -1)

    def _bind(self, program: Program) -> None:
        categorical = [c.name for c in self.decoder.columns if not c.numeric]
        try:
            program.bind(self.decoder.numeric_names, categorical)
        except ProgramError as exc:
            raise ModelLoadError(f"the compiled model does not fit the schema: {exc}") from None

    def _classes_from_index(self, index: npt.NDArray[np.intp]) -> Prediction:
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
        d = self.decoder
        return estimator_input(self.estimator, d.names, d.numeric_names, batch.numeric, batch.categorical)

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

    def _verified_fast_path(self) -> Program | None:
        est = self.estimator
        name = type(est).__name__
        try:
            program = compiler.program(est)
            program.bind(self.decoder.numeric_names, [c.name for c in self.decoder.columns if not c.numeric])
        except (compiler.UnsupportedError, ProgramError) as exc:
            logger.info("no compiled form for %s (%s); serving with its own predict()", name, exc)
            return None
        if program.classification != self.classification:
            logger.warning("%s is a %s model but the profile's task is %s; serving with its own predict()",
                           name, program.task, self.task)
            return None
        # Probes carry missing values only where the compiled form answers them (a bare linear
        # model's NaN rows go to its own predict(), which refuses them).
        probes = _probe_batch(self.features, self.decoder, trees=est, missing=program.accepts_missing)
        d = self.decoder
        try:
            agreement = compare(program, est, columns=d.names, numeric_names=d.numeric_names,
                                numeric=probes.numeric, categorical=probes.categorical)
        except Exception:  # a replay that cannot even run is simply not used
            logger.exception("the compiled form of %s failed on the probe rows; using predict()", name)
            return None
        if not agreement.passed:
            logger.warning("the compiled form of %s disagrees with it on probe rows (%s); using predict()",
                           name, agreement.describe())
            return None
        logger.info("compiled form of %s verified on %d probe rows", name, probes.rows)
        return program


def load(
    *,
    model_uri: str,
    model_sha256: str,
    profile_uri: str,
    profile_sha256: str | None,
    compiled_uri: str | None = None,
    compiled_sha256: str | None = None,
    trusted_types: tuple[str, ...] = (),
) -> ServedModel:
    """Fetch, verify and load the model and its profile (blocking; run it off the event loop).

    With a compiled artifact, that is what serves: the skops file is not read, and a compiled
    artifact that is missing, corrupt or does not match its sha256 is an error, never a silent
    fallback (the operator passes one only after the verification Job proved it).
    """
    try:
        profile = Profile.model_validate_json(storage.get_bytes(profile_uri, sha256=profile_sha256))
    except ValidationError as exc:
        raise ModelLoadError(f"profile {profile_uri}: {one_line(exc, root='profile')}") from exc
    except (storage.StorageError, ValueError) as exc:
        raise ModelLoadError(f"profile {profile_uri}: {exc}") from exc
    if compiled_uri:
        try:
            program = Program.loads(storage.get_bytes(compiled_uri), sha256=compiled_sha256 or "")
        except (storage.StorageError, container.ContainerError, ProgramError) as exc:
            raise ModelLoadError(f"compiled model {compiled_uri}: {exc}") from exc
        return ServedModel(program=program, profile=profile)
    try:
        estimator = artifacts.load(model_uri, sha256=model_sha256, extra=trusted_types)
    except (storage.StorageError, artifacts.ArtifactError) as exc:
        raise ModelLoadError(f"model {model_uri}: {exc}") from exc
    return ServedModel(estimator=estimator, profile=profile)


def _label_key(label: object) -> str:
    """Labels compare as text, with 1.0 == 1 (JSON clients send either for an integer class)."""
    if isinstance(label, float | np.floating) and float(label).is_integer():
        return str(int(label))
    return str(label)


def _datatype(values: npt.NDArray[Any]) -> str:
    kind = values.dtype.kind
    return {"i": "INT64", "u": "UINT64", "f": "FP64", "b": "BOOL"}.get(kind, "BYTES")


def _probe_batch(
    features: list[tuple[str, FeatureProfile]], decoder: Decoder, *, trees: Any, missing: bool
) -> Batch:
    """Rows over every reference bin, unseen categories, missing values where the schema allows
    them and, for a bare forest, both sides of its split points."""
    rng = np.random.default_rng(0)
    numeric = [(n, f) for n, f in features if f.kind == FeatureKind.NUMERIC]
    thresholds: list[list[float]] = [[] for _ in numeric]
    for tree in getattr(trees, "estimators_", []):
        t = getattr(tree, "tree_", None)
        if t is None:
            continue
        inner = t.children_left >= 0
        for j, thr in zip(t.feature[inner], t.threshold[inner], strict=True):
            if j < len(thresholds) and len(thresholds[j]) < 64:
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
