"""The model a training Job fits, and the data it fits it on (shared by the trainer and the trials).

Two kinds of model:

* an allow-listed estimator (:mod:`loopwright.core.estimators`) behind preprocessing derived from
  the Dataset schema (numeric: median imputation and scaling; categorical: most-frequent
  imputation and one-hot encoding that ignores unseen values);
* a factory, ``module:function`` in the team's own image (built FROM the Loopwright ml image),
  returning an unfitted scikit-learn estimator or Pipeline that takes a DataFrame of the
  schema's feature columns; the parameters are handed to its ``set_params``. What it is made of
  is checked when it is saved (:func:`loopwright.artifacts.check_types`): only the types the
  pipeline declares load later.

The hold-out split is the same everywhere: the trainer gates on it, the trials never see it
(they split a validation part off the training part, :func:`split` again).
"""

from __future__ import annotations

import argparse
import importlib
import json
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from loopwright import storage
from loopwright.api.dataset import DataFormat
from loopwright.api.schema import ColumnType, DatasetSchema, TaskType
from loopwright.core import estimators
from loopwright.jobs import contract as _job
from loopwright.jobs import data
from loopwright.jobs.trainer import scores


class StopError(Exception):
    """Ends the run with an exit code and a reason for the operator."""

    def __init__(self, code: int, error: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.error = error


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments a training Job and a trial share: the data, the model, the split, the metrics."""
    p.add_argument("--dataset-uri", required=True, help="s3://bucket/key, s3://bucket/prefix/ or a path")
    p.add_argument("--format", choices=[f.value for f in DataFormat], default=DataFormat.CSV.value)
    p.add_argument("--dataset-digest", required=True, help="sha256 of the version to train on")
    p.add_argument("--schema-json", required=True, help="the Dataset's spec.schema (wire form)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--estimator", help="an allow-listed estimator name")
    which.add_argument("--factory", help="module:function returning an unfitted estimator or Pipeline")
    p.add_argument("--params-json", default="{}", help="estimator parameters as a JSON object")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stratify", action=argparse.BooleanOptionalAction, default=True,
                   help="keep class proportions in the hold-out (classification)")
    p.add_argument("--metrics", default="", help="comma-separated metric names; the first is primary")


def check_parameters(args: argparse.Namespace) -> tuple[DatasetSchema, dict[str, Any], list[str]]:
    try:
        schema = DatasetSchema.model_validate_json(args.schema_json)
    except ValidationError as exc:
        raise StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", f"invalid schema: {exc}") from exc
    try:
        params = json.loads(args.params_json)
    except json.JSONDecodeError as exc:
        raise StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", f"--params-json: {exc}") from exc
    if not isinstance(params, dict):
        raise StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", "--params-json must be a JSON object")
    task = TaskType(schema.label.task)
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] or list(scores.DEFAULTS[task])
    errors = estimators.validate(args.estimator, params, task=task) if args.estimator else []
    errors += [f"metric {m!r} does not apply to {task}" for m in scores.unsupported(task, names)]
    for name in ("gates_json", "search_json"):
        if getattr(args, name, None):
            try:
                json.loads(getattr(args, name))
            except json.JSONDecodeError as exc:
                errors.append(f"--{name.replace('_', '-')}: {exc}")
    if not 0.0 < args.test_fraction < 1.0:
        errors.append("--test-fraction must be between 0 and 1 (exclusive)")
    if not 0 <= args.seed < 2**32:
        errors.append("--seed must be in [0, 2**32)")
    if errors:
        raise StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", "; ".join(errors))
    return schema, params, names


def allow_listed(
    schema: DatasetSchema, spec: estimators.EstimatorSpec, params: dict[str, Any], seed: int
) -> Any:
    """Preprocessing derived from the schema, then the estimator (imported from the allow-list only)."""
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415 - keep --help and arg errors fast
    from sklearn.impute import SimpleImputer  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: PLC0415

    numeric = [c.name for c in schema.columns if c.type == ColumnType.NUMERIC]
    categorical = [c.name for c in schema.columns if c.type == ColumnType.CATEGORICAL]
    steps: list[tuple[str, Any, list[str]]] = []
    if numeric:
        steps.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("scale", StandardScaler()),
        ]), numeric))
    if categorical:
        steps.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=not spec.dense_input)),
        ]), categorical))
    preprocess = ColumnTransformer(steps, sparse_threshold=0.0 if spec.dense_input else 0.3)
    module_name, _, cls_name = spec.import_path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), cls_name)
    model_params = dict(params)
    if "random_state" in cls().get_params():
        model_params["random_state"] = seed
    return Pipeline([("preprocess", preprocess), ("model", cls(**model_params))])


def split(
    x: pd.DataFrame,
    y: np.ndarray,
    *,
    codes: np.ndarray | None,
    test_fraction: float,
    seed: int,
    stratify: bool,
) -> tuple[Any, Any, Any, Any, str | None]:
    """Train/test split; stratified by the class ``codes`` when asked and possible, else says why not."""
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    reason = None
    strata = None
    if codes is not None and stratify:
        counts = np.bincount(codes)
        n_test = int(np.ceil(test_fraction * len(y)))
        if counts.min() < 2:
            reason = "a class has fewer than 2 rows"
        elif n_test < len(counts) or len(y) - n_test < len(counts):
            reason = "the hold-out or training set is smaller than the number of classes"
        else:
            strata = codes
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=strata)
    return x_train, x_test, y_train, y_test, reason


def labelled(
    frame: pd.DataFrame, schema: DatasetSchema, task: TaskType
) -> tuple[pd.DataFrame, Any, np.ndarray | None, int]:
    """Features and label of the rows that have a label, the class codes, and how many rows had none.

    The codes (classification only) number the classes in sorted order, as
    ``np.unique`` would, so stratifying on them splits exactly as stratifying
    on the labels does; they are found once by hashing, where each
    ``np.unique`` over the label strings sorts them all again.
    """
    label = schema.label.name
    has_label = frame[label].notna().to_numpy()
    dropped = int((~has_label).sum())
    if dropped:
        frame = frame[has_label]
    if len(frame) < 2:
        raise StopError(_job.EXIT_BAD_DATA, "BadData", f"{len(frame)} labelled rows: nothing to train on")
    if task != TaskType.CLASSIFICATION:
        return frame[schema.feature_names], frame[label].to_numpy(dtype=np.float64), None, dropped
    y = frame[label].to_numpy(dtype=object)
    codes, _ = pd.factorize(y, sort=True)
    if codes.max() < 1:
        raise StopError(_job.EXIT_BAD_DATA, "BadData", f"label {label!r} has a single class")
    return frame[schema.feature_names], y, codes, dropped


def predict(model: Any, x_test: pd.DataFrame, task: TaskType) -> tuple[Any, Any, list[str]]:
    """Hold-out predictions, class probabilities (classifiers) and the class names."""
    if task != TaskType.CLASSIFICATION:
        return np.asarray(model.predict(x_test), dtype=np.float64), None, []
    classes = [str(c) for c in model.classes_]
    if not hasattr(model, "predict_proba"):
        return model.predict(x_test), None, classes
    # One pass instead of two: every allowed classifier predicts the class of
    # highest probability (ties to the first), so this equals predict().
    proba = model.predict_proba(x_test)
    return model.classes_[np.argmax(proba, axis=1)], proba, classes


def fit_error(exc: Exception, params: dict[str, Any]) -> StopError:
    """scikit-learn rejects parameter combinations only at fit; say which kind of problem it is.

    Its own parameter validation, or a message naming a parameter the user set,
    points at the parameters; anything else at the data.
    """
    from sklearn.utils._param_validation import InvalidParameterError  # noqa: PLC0415

    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, InvalidParameterError) or any(p in str(exc) for p in params):
        return StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", message)
    return StopError(_job.EXIT_BAD_DATA, "BadData", message)


def load(*, uri: str, fmt: str, digest: str, schema: DatasetSchema) -> tuple[pd.DataFrame, str]:
    try:
        raw = data.fetch(uri)
    except storage.ObjectNotFoundError as exc:
        raise StopError(_job.EXIT_BAD_DATA, "BadData", str(exc)) from exc
    expected = data.normalise_digest(digest)
    if raw.digest != expected:
        raise StopError(
            _job.EXIT_BAD_DATA, "DigestMismatch",
            f"the data at {uri} is {raw.digest}, not the version {expected} this run was given")
    try:
        frame = data.normalise(data.parse(raw, fmt=fmt, schema=schema), schema)
    except data.DataError as exc:
        raise StopError(_job.EXIT_BAD_DATA, "BadData", str(exc)) from exc
    missing = [c for c in [*schema.feature_names, schema.label.name] if c not in frame.columns]
    if missing:
        message = "columns missing from the data: " + ", ".join(missing)
        raise StopError(_job.EXIT_BAD_DATA, "BadData", message)
    return frame, raw.digest


def from_factory(factory: str, params: dict[str, Any]) -> Any:
    """The unfitted model ``module:function`` returns, with ``params`` set on it."""
    module_name, _, function = factory.partition(":")
    try:
        make = getattr(importlib.import_module(module_name), function)
    except (ImportError, AttributeError) as exc:
        raise StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters",
                        f"factory {factory!r} is not in this image: {type(exc).__name__}: {exc}") from exc
    model = make()
    if not (hasattr(model, "fit") and hasattr(model, "predict") and hasattr(model, "set_params")):
        raise StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters",
                        f"factory {factory!r} returned {type(model).__name__}, not a scikit-learn estimator")
    if params:
        try:
            model.set_params(**params)
        except ValueError as exc:
            raise StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters",
                            f"factory {factory!r}: {exc}") from exc
    return model


def build(
    schema: DatasetSchema, *, estimator: str | None, factory: str | None, params: dict[str, Any], seed: int
) -> Any:
    """The unfitted model of a run or a trial."""
    if factory is not None:
        return from_factory(factory, params)
    return allow_listed(schema, estimators.ESTIMATORS[str(estimator)], params, seed)
