"""The training Job: ``loopwright-trainer``.

Reads exactly the dataset version it was given (the content digest must match
``--dataset-digest``), builds the preprocessing from the schema (numeric:
median imputation and scaling; categorical: most-frequent imputation and
one-hot encoding that ignores unseen values), fits the allow-listed estimator
with the given params and seed, evaluates it on the hold-out, and writes under
``--output-prefix``: ``model.skops``, ``metrics.json``, ``profile.json`` (the
training features and the hold-out predictions in frozen bins), for the estimators
:mod:`loopwright.compiled` covers ``model.lwc`` (the compiled form the predictor serves
without scikit-learn) and ``holdout.lwr`` (the hold-out rows, up to 50,000, that the
verification Job checks it on), and ``result.json`` (sha256 of each file, metrics,
library versions, params, seed, dataset digest, timings, row counts).

Exit codes (also in the one-line JSON summary and the termination message):
0 success; 1 infrastructure or unexpected failure (retrying may help);
2 bad parameters (estimator, params, metrics, schema); 3 bad data (digest
mismatch, unreadable, missing columns, nothing to train on).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import platform
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from loopwright import artifacts, storage
from loopwright.api.dataset import DataFormat
from loopwright.api.schema import ColumnType, DatasetSchema, TaskType
from loopwright.core import estimators
from loopwright.core.profile import Profile, profile_categorical, profile_numeric
from loopwright.jobs import contract as _job
from loopwright.jobs import data
from loopwright.jobs.trainer import report, scores
from loopwright.jobs.trainer.compiled import compiled_form, holdout_rows
from loopwright.reports import training as training_report

_MAX_WARNINGS = 10


class _StopError(Exception):
    """Ends the run with an exit code and a reason for the operator."""

    def __init__(self, code: int, error: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.error = error


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loopwright-trainer", description="Train one model version.")
    p.add_argument("--dataset-uri", required=True, help="s3://bucket/key, s3://bucket/prefix/ or a path")
    p.add_argument("--format", choices=[f.value for f in DataFormat], default=DataFormat.CSV.value)
    p.add_argument("--dataset-digest", required=True, help="sha256 of the version to train on")
    p.add_argument("--schema-json", required=True, help="the Dataset's spec.schema (wire form)")
    p.add_argument("--estimator", required=True, help="an allow-listed estimator name")
    p.add_argument("--params-json", default="{}", help="estimator parameters as a JSON object")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stratify", action=argparse.BooleanOptionalAction, default=True,
                   help="keep class proportions in the hold-out (classification)")
    p.add_argument("--metrics", default="", help="comma-separated metric names; the first is primary")
    p.add_argument("--output-prefix", required=True, help="where the model, metrics and profile go")
    p.add_argument("--gates-json", default=None,
                   help="the pipeline's gates for the report: {model, validation, champion}")
    return p.parse_args(argv)


def _check_parameters(args: argparse.Namespace) -> tuple[DatasetSchema, dict[str, Any], list[str]]:
    try:
        schema = DatasetSchema.model_validate_json(args.schema_json)
    except ValidationError as exc:
        raise _StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", f"invalid schema: {exc}") from exc
    try:
        params = json.loads(args.params_json)
    except json.JSONDecodeError as exc:
        raise _StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", f"--params-json: {exc}") from exc
    if not isinstance(params, dict):
        raise _StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", "--params-json must be a JSON object")
    task = TaskType(schema.label.task)
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] or list(scores.DEFAULTS[task])
    errors = estimators.validate(args.estimator, params, task=task)
    errors += [f"metric {m!r} does not apply to {task}" for m in scores.unsupported(task, names)]
    if args.gates_json:
        try:
            json.loads(args.gates_json)
        except json.JSONDecodeError as exc:
            errors.append(f"--gates-json: {exc}")
    if not 0.0 < args.test_fraction < 1.0:
        errors.append("--test-fraction must be between 0 and 1 (exclusive)")
    if not 0 <= args.seed < 2**32:
        errors.append("--seed must be in [0, 2**32)")
    if errors:
        raise _StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", "; ".join(errors))
    return schema, params, names


def _load(args: argparse.Namespace, schema: DatasetSchema) -> tuple[pd.DataFrame, str]:
    try:
        raw = data.fetch(args.dataset_uri)
    except storage.ObjectNotFoundError as exc:
        raise _StopError(_job.EXIT_BAD_DATA, "BadData", str(exc)) from exc
    expected = data.normalise_digest(args.dataset_digest)
    if raw.digest != expected:
        raise _StopError(
            _job.EXIT_BAD_DATA, "DigestMismatch",
            f"the data at {args.dataset_uri} is {raw.digest}, not the version {expected} this run was given")
    try:
        frame = data.normalise(data.parse(raw, fmt=args.format, schema=schema), schema)
    except data.DataError as exc:
        raise _StopError(_job.EXIT_BAD_DATA, "BadData", str(exc)) from exc
    missing = [c for c in [*schema.feature_names, schema.label.name] if c not in frame.columns]
    if missing:
        message = "columns missing from the data: " + ", ".join(missing)
        raise _StopError(_job.EXIT_BAD_DATA, "BadData", message)
    return frame, raw.digest


def _pipeline(
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


def _split(
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


class _BackgroundImport(threading.Thread):
    """Imports a module on a daemon thread while the data is read and the model fits.

    Importing skops costs about half a second of CPU (it imports every
    scikit-learn estimator module, then searches all loaded modules for the
    home of each numpy and scipy ufunc). The fit mostly runs in compiled code,
    so on a second core the two overlap in wall-clock time; the CPU is spent
    either way and reported as ``cpu_seconds``. The later regular import waits
    for this one through Python's import lock.
    """

    def __init__(self, module: str) -> None:
        super().__init__(name=f"import-{module}", daemon=True)
        self.module = module
        self.cpu_seconds = 0.0

    def run(self) -> None:
        started = time.thread_time()
        importlib.import_module(self.module)
        self.cpu_seconds = time.thread_time() - started


class _Clock:
    """Wall-clock and CPU seconds of each phase of a run, for result.json (the benchmark reports them).

    CPU is the main thread's (``time.thread_time``): the background import
    reports its own, so no work is counted twice.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.thread_time()
        yield
        self.wall[name] = round(time.perf_counter() - wall, 3)
        self.cpu[name] = round(time.thread_time() - cpu, 3)


def run(args: argparse.Namespace) -> int:
    started, cpu_started = time.perf_counter(), time.process_time()
    clock = _Clock()
    schema, params, metric_names = _check_parameters(args)
    skops_import = _BackgroundImport("skops.io")
    skops_import.start()
    task = TaskType(schema.label.task)
    with clock.phase("read"):
        frame, digest = _load(args, schema)

    with clock.phase("split"):
        x, y, codes, dropped = _labelled(frame, schema, task)
        x_train, x_test, y_train, y_test, not_stratified = _split(
            x, y, codes=codes, test_fraction=args.test_fraction, seed=args.seed, stratify=args.stratify)

    model = _pipeline(schema, estimators.ESTIMATORS[args.estimator], params, args.seed)
    with clock.phase("fit"), warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        try:
            model.fit(x_train, y_train)
        except (ValueError, TypeError) as exc:
            raise _fit_error(exc, params) from exc

    with clock.phase("evaluate"):
        y_pred, proba, classes = _predict(model, x_test, task)
        evaluation = scores.evaluate(
            task, metric_names, y_true=y_test, y_pred=y_pred, proba=proba, classes=classes)

    with clock.phase("profile"):
        profile = _reference_profile(x_train, y_train, y_pred, schema=schema, task=task, classes=classes)
    primary = next((m for m in metric_names if m in evaluation.values), None)
    facts = {
        "task": str(task),
        "classes": classes or None,
        "estimator": args.estimator,
        "params": params,
        "seed": args.seed,
        "testFraction": args.test_fraction,
        "stratified": args.stratify and task == TaskType.CLASSIFICATION and not_stratified is None,
        "notStratifiedReason": not_stratified,
        "metrics": evaluation.values,
        "skippedMetrics": evaluation.skipped,
        "primaryMetric": primary,
        "dataset": {"uri": args.dataset_uri, "digest": digest, "format": args.format},
        "rows": {"total": len(x) + dropped, "train": len(x_train), "test": len(x_test),
                 "droppedUnlabelled": dropped},
        "fitSeconds": clock.wall["fit"],
    }
    with clock.phase("report"):
        page_data = report.data(facts, gates_json=args.gates_json, output_prefix=args.output_prefix,
                                profile=profile, y_test=y_test, y_pred=y_pred, classes=classes)
    with clock.phase("serialise"):
        skops_import.join()
        files = {
            "model": ("model.skops", artifacts.dumps(model)),
            "metrics": ("metrics.json", _job.dumps(evaluation.values)),
            "profile": ("profile.json", _job.dumps(profile.to_wire())),
            "report": ("report.html", training_report.render(page_data).encode()),
            "reportData": ("report.json", _job.dumps(page_data)),
        }
    with clock.phase("compile"):
        compiled, not_compiled = compiled_form(model)
        if compiled is not None:
            files["compiled"] = ("model.lwc", compiled)
            files["holdout"] = ("holdout.lwr", holdout_rows(x_test, schema))
    with clock.phase("write"):
        outputs = {name: _put(storage.join_uri(args.output_prefix, file), payload)
                   for name, (file, payload) in files.items()}
    result = {
        "artifacts": outputs,
        "format": artifacts.FORMAT,
        "notCompiledReason": not_compiled,
        **facts,
        "seconds": {**clock.wall, "total": round(time.perf_counter() - started, 3)},
        "cpuSeconds": {**clock.cpu, "skopsImport": round(skops_import.cpu_seconds, 3),
                       "total": round(time.process_time() - cpu_started, 3)},
        "versions": _versions(),
        "warnings": [f"{w.category.__name__}: {w.message}" for w in records][:_MAX_WARNINGS],
    }
    result_uri = storage.join_uri(args.output_prefix, "result.json")
    summary = {
        "phase": "Succeeded",
        "resultUri": result_uri,
        "resultSha256": _job.write_json(result_uri, result),
        **{f"{name}Uri": out["uri"] for name, out in outputs.items()},
        **{f"{name}Sha256": out["sha256"] for name, out in outputs.items()},
        "metrics": evaluation.values,
        "primaryMetric": primary,
        "datasetDigest": digest,
    }
    return _job.finish(summary, code=_job.EXIT_OK)


def _labelled(
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
        raise _StopError(_job.EXIT_BAD_DATA, "BadData", f"{len(frame)} labelled rows: nothing to train on")
    if task != TaskType.CLASSIFICATION:
        return frame[schema.feature_names], frame[label].to_numpy(dtype=np.float64), None, dropped
    y = frame[label].to_numpy(dtype=object)
    codes, _ = pd.factorize(y, sort=True)
    if codes.max() < 1:
        raise _StopError(_job.EXIT_BAD_DATA, "BadData", f"label {label!r} has a single class")
    return frame[schema.feature_names], y, codes, dropped


def _predict(model: Any, x_test: pd.DataFrame, task: TaskType) -> tuple[Any, Any, list[str]]:
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


def _reference_profile(
    x_train: pd.DataFrame,
    y_train: Any,
    y_pred: Any,
    *,
    schema: DatasetSchema,
    task: TaskType,
    classes: list[str],
) -> Profile:
    """The training features and label, and the hold-out predictions, in frozen bins (drift's reference)."""
    features, _ = data.profile_columns(x_train, schema)
    if classes:
        label = profile_categorical(y_train, categories=classes)
        prediction = profile_categorical(y_pred, categories=classes)
    else:
        label, prediction = profile_numeric(y_train), profile_numeric(y_pred)
    return Profile(rows=len(x_train), features=features, label=label, prediction=prediction,
                   dataset_schema=schema, task=task, classes=classes or None)


def _put(uri: str, payload: bytes) -> dict[str, Any]:
    return {"uri": uri, "sha256": storage.put_bytes(uri, payload), "bytes": len(payload)}


def _fit_error(exc: Exception, params: dict[str, Any]) -> _StopError:
    """scikit-learn rejects parameter combinations only at fit; say which kind of problem it is.

    Its own parameter validation, or a message naming a parameter the user set,
    points at the parameters; anything else at the data.
    """
    from sklearn.utils._param_validation import InvalidParameterError  # noqa: PLC0415

    message = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, InvalidParameterError) or any(p in str(exc) for p in params):
        return _StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", message)
    return _StopError(_job.EXIT_BAD_DATA, "BadData", message)


def _versions() -> dict[str, str]:
    import sklearn  # noqa: PLC0415
    import skops  # noqa: PLC0415

    import loopwright  # noqa: PLC0415

    return {
        "python": platform.python_version(),
        "sklearn": sklearn.__version__,
        "skops": skops.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "loopwright": loopwright.__version__,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        return run(args)
    except _StopError as exc:
        return _job.finish({"phase": "Failed", "error": exc.error, "message": str(exc)}, code=exc.code)
    except storage.StorageError as exc:
        return _job.finish({"phase": "Failed", "error": "StorageError", "message": str(exc)},
                           code=_job.EXIT_FAILED)
    except MemoryError:
        message = "ran out of memory (a container limit usually ends the process before this)"
        summary = {"phase": "Failed", "error": "OutOfMemory", "message": message}
        return _job.finish(summary, code=_job.EXIT_FAILED)
    except Exception as exc:  # the traceback goes to the log, the reason to the summary
        traceback.print_exc()
        return _job.finish({"phase": "Failed", "error": "Failed", "message": f"{type(exc).__name__}: {exc}"},
                           code=_job.EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
