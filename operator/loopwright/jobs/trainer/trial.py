"""One trial of a hyperparameter search: ``loopwright-trial``, a pod of the run's Indexed Job.

The pod's index (``$JOB_COMPLETION_INDEX``, or ``--index``) gives its parameters
(:func:`loopwright.core.training.search.trial_params`, merged over ``--params-json``). It reads
the same dataset version as the trainer, splits off the same hold-out (which it never looks
at), carves a validation part out of the training part (``validationFraction``, the same seed:
every trial scores on the same rows), fits on the rest and writes
``<output-prefix>/trials/<index>.json``: ``{index, params, phase, score, metric, seconds,
cpuSeconds}`` or, for a failure it can name, ``{index, params, phase: Failed, error, message}``.

Exit codes as the trainer's: 2 (bad parameters) and 3 (bad data) fail this index at once
(the Job's ``podFailurePolicy``), 1 may be retried within ``backoffLimitPerIndex``. A failed
trial fails only itself; the operator fails the run only when every trial failed.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from loopwright import storage
from loopwright.api.schema import DatasetSchema, TaskType
from loopwright.api.search import Search, TrialPhase
from loopwright.core import estimators
from loopwright.core.training import search as plan
from loopwright.jobs import contract as _job
from loopwright.jobs.trainer import model, scores


@dataclass(frozen=True)
class Prepared:
    """The rows every trial of a search fits and scores on (read and split once per process)."""

    schema: DatasetSchema
    task: TaskType
    x_fit: Any
    y_fit: Any
    x_val: Any
    y_val: Any


def prepare(args: argparse.Namespace, schema: DatasetSchema, validation_fraction: float) -> Prepared:
    """Read the dataset version, drop the hold-out, split the rest into fit and validation parts."""
    task = TaskType(schema.label.task)
    frame, _ = model.load(uri=args.dataset_uri, fmt=args.format, digest=args.dataset_digest, schema=schema)
    x, y, codes, _ = model.labelled(frame, schema, task)
    x_train, _, y_train, _, _ = model.split(x, y, codes=codes, test_fraction=args.test_fraction,
                                            seed=args.seed, stratify=args.stratify)
    train_codes = pd.factorize(y_train, sort=True)[0] if codes is not None else None
    x_fit, x_val, y_fit, y_val, _ = model.split(x_train, y_train, codes=train_codes,
                                                test_fraction=validation_fraction, seed=args.seed,
                                                stratify=args.stratify)
    return Prepared(schema=schema, task=task, x_fit=x_fit, y_fit=y_fit, x_val=x_val, y_val=y_val)


def score(data: Prepared, args: argparse.Namespace, params: dict[str, Any], metric: str) -> float:
    """Fit a model with ``params`` on the fit part; its ``metric`` on the validation part."""
    fitted = model.build(data.schema, estimator=args.estimator, factory=args.factory, params=params,
                         seed=args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fitted.fit(data.x_fit, data.y_fit)
        except (ValueError, TypeError) as exc:
            raise model.fit_error(exc, params) from exc
        y_pred, proba, classes = model.predict(fitted, data.x_val, data.task)
    evaluation = scores.evaluate(data.task, [metric], y_true=data.y_val, y_pred=y_pred, proba=proba,
                                 classes=classes)
    if not math.isfinite(evaluation.values.get(metric, math.nan)):
        raise model.StopError(_job.EXIT_BAD_PARAMETERS, "MetricUnavailable",
                              f"{metric} cannot be computed: {evaluation.skipped.get(metric, 'skipped')}")
    return float(evaluation.values[metric])


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loopwright-trial", description="Score one trial of a search.")
    model.add_arguments(p)
    p.add_argument("--search-json", required=True, help="the pipeline's spec.search (wire form)")
    p.add_argument("--index", type=int, default=None, help="the trial (default: $JOB_COMPLETION_INDEX)")
    p.add_argument("--output-prefix", required=True, help="the run's prefix; the result goes to trials/")
    return p.parse_args(argv)


def result_uri(prefix: str, index: int) -> str:
    return storage.join_uri(prefix, f"{plan.RESULTS_DIR}/{index}.json")


def run(args: argparse.Namespace, index: int, params: dict[str, Any]) -> int:
    started, cpu = time.perf_counter(), time.process_time()
    search = Search.model_validate_json(args.search_json)
    schema, base, metric_names = model.check_parameters(args)
    params.update({**base, **plan.trial_params(search, index)})
    errors = estimators.validate(args.estimator, params, task=schema.label.task) if args.estimator else []
    if errors:
        raise model.StopError(_job.EXIT_BAD_PARAMETERS, "BadParameters", "; ".join(errors))
    value = score(prepare(args, schema, search.validation_fraction), args, params, metric_names[0])
    result = {"index": index, "params": params, "phase": TrialPhase.SUCCEEDED, "score": value,
              "metric": metric_names[0], "seconds": round(time.perf_counter() - started, 3),
              "cpuSeconds": round(time.process_time() - cpu, 3)}
    _job.write_json(result_uri(args.output_prefix, index), result)
    return _job.finish(result, code=_job.EXIT_OK)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    index = args.index if args.index is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    params: dict[str, Any] = {}
    try:
        return run(args, index, params)
    except model.StopError as exc:
        failure = {"index": index, "params": params, "phase": TrialPhase.FAILED, "error": exc.error,
                   "message": str(exc)}
        _job.write_json(result_uri(args.output_prefix, index), failure)
        return _job.finish(failure, code=exc.code)
    except storage.StorageError as exc:
        return _job.finish({"index": index, "phase": TrialPhase.FAILED, "error": "StorageError",
                            "message": str(exc)}, code=_job.EXIT_FAILED)
    except Exception as exc:  # the traceback goes to the log, the reason to the summary
        traceback.print_exc()
        return _job.finish({"index": index, "phase": TrialPhase.FAILED, "error": "Failed",
                            "message": f"{type(exc).__name__}: {exc}"}, code=_job.EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
