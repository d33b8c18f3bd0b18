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

from loopwright import artifacts, storage
from loopwright.api.schema import DatasetSchema, TaskType
from loopwright.core.profile import Profile, profile_categorical, profile_numeric
from loopwright.jobs import contract as _job
from loopwright.jobs import data
from loopwright.jobs.trainer import model, report, scores
from loopwright.jobs.trainer.compiled import compiled_form, holdout_rows
from loopwright.reports import training as training_report

_MAX_WARNINGS = 10


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loopwright-trainer", description="Train one model version.")
    model.add_arguments(p)
    p.add_argument("--output-prefix", required=True, help="where the model, metrics and profile go")
    p.add_argument("--gates-json", default=None,
                   help="the pipeline's gates for the report: {model, validation, champion}")
    p.add_argument("--trusted-type", action="append", default=[], dest="trusted_types",
                   help="a type the factory's model may need beyond the built-in list (repeatable)")
    p.add_argument("--search-json", default=None,
                   help="the run's search result (trials and the best one) for result.json and the report")
    return p.parse_args(argv)


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
    schema, params, metric_names = model.check_parameters(args)
    skops_import = _BackgroundImport("skops.io")
    skops_import.start()
    task = TaskType(schema.label.task)
    with clock.phase("read"):
        frame, digest = model.load(uri=args.dataset_uri, fmt=args.format, digest=args.dataset_digest,
                                   schema=schema)

    with clock.phase("split"):
        x, y, codes, dropped = model.labelled(frame, schema, task)
        x_train, x_test, y_train, y_test, not_stratified = model.split(
            x, y, codes=codes, test_fraction=args.test_fraction, seed=args.seed, stratify=args.stratify)

    fitted = model.build(schema, estimator=args.estimator, factory=args.factory, params=params,
                         seed=args.seed)
    with clock.phase("fit"), warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        try:
            fitted.fit(x_train, y_train)
        except (ValueError, TypeError) as exc:
            raise model.fit_error(exc, params) from exc

    with clock.phase("evaluate"):
        y_pred, proba, classes = model.predict(fitted, x_test, task)
        evaluation = scores.evaluate(
            task, metric_names, y_true=y_test, y_pred=y_pred, proba=proba, classes=classes)

    with clock.phase("profile"):
        profile = _reference_profile(x_train, y_train, y_pred, schema=schema, task=task, classes=classes)
    primary = next((m for m in metric_names if m in evaluation.values), None)
    facts = {
        "task": str(task),
        "classes": classes or None,
        "estimator": args.estimator,
        "factory": args.factory,
        "trustedTypes": args.trusted_types,
        "search": json.loads(args.search_json) if args.search_json else None,
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
        serialised = artifacts.dumps(fitted)
        try:
            artifacts.check_types(serialised, extra=args.trusted_types)
        except artifacts.UntrustedTypesError as exc:
            message = f"{exc}: declare them in spec.model.trustedTypes (if you trust them)"
            raise model.StopError(_job.EXIT_BAD_PARAMETERS, "UntrustedTypes", message) from exc
        files = {
            "model": ("model.skops", serialised),
            "metrics": ("metrics.json", _job.dumps(evaluation.values)),
            "profile": ("profile.json", _job.dumps(profile.to_wire())),
            "report": ("report.html", training_report.render(page_data).encode()),
            "reportData": ("report.json", _job.dumps(page_data)),
        }
    with clock.phase("compile"):
        compiled, not_compiled = compiled_form(fitted)
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
    except model.StopError as exc:
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
