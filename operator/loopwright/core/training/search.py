"""Hyperparameter search: each trial's parameters from its index, the refusals, the best trial.

A trial's parameters are a pure function of the search spec and the trial's index: the pods
of the Indexed Job (``JOB_COMPLETION_INDEX``) and the operator derive the same ones without
talking to each other, and a retried pod repeats its trial exactly.

* grid: the combinations of the values in the order of the sorted parameter names, the last
  name varying fastest (``itertools.product``); trial ``i`` is combination ``i``.
* random: for each parameter in sorted order, a value drawn with ``random.Random`` seeded by
  ``"<seed>/<index>"`` (a str seed is hashed with SHA-512: the same on every platform and
  Python 3 version): a uniform choice among ``values``, or a uniform draw from ``[min, max]``
  (in log space with ``log``, rounded with ``integer``); floats keep 6 significant digits.

The best trial has the best validation score in the primary metric (lowest for log_loss, mae,
rmse; highest for the others); ties go to the lowest index. Failed trials never win; if all
failed there is no best and the run fails.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

from loopwright.api.pipeline import LOWER_IS_BETTER
from loopwright.api.search import (
    MAX_TRIALS,
    Dimension,
    Search,
    SearchResult,
    SearchStrategy,
    Trial,
    TrialPhase,
)
from loopwright.core import estimators

DEFAULT_RANDOM_TRIALS = 16
RESULTS_DIR = "trials"
"""Under the run's output prefix: ``trials/<index>.json``, one per trial."""

Params = dict[str, Any]


def grid_size(search: Search) -> int:
    return math.prod(len(d.values or ()) for d in search.space.values())


def trial_count(search: Search) -> int:
    """How many trials the search runs (the grid's size, or ``trials`` for random search)."""
    if search.strategy == SearchStrategy.GRID:
        return grid_size(search)
    return search.trials or DEFAULT_RANDOM_TRIALS


def _draw(rng: random.Random, dim: Dimension) -> Any:
    if dim.values is not None:
        return rng.choice(dim.values)
    low, high = float(dim.min or 0.0), float(dim.max or 0.0)
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if dim.log else rng.uniform(low, high)
    if dim.integer:
        return int(min(max(round(value), math.ceil(low)), math.floor(high)))
    return float(f"{value:.6g}")


def trial_params(search: Search, index: int) -> Params:
    """The searched parameters of trial ``index`` (0-based)."""
    count = trial_count(search)
    if not 0 <= index < count:
        raise ValueError(f"trial index {index} outside [0, {count})")
    names = sorted(search.space)
    if search.strategy == SearchStrategy.GRID:
        combo = next(itertools.islice(itertools.product(*(search.space[n].values or () for n in names)),
                                      index, None))
        return dict(zip(names, combo, strict=True))
    rng = random.Random(f"{search.seed}/{index}")  # noqa: S311 (reproducible sampling, not secrets)
    return {name: _draw(rng, search.space[name]) for name in names}


def all_trials(search: Search) -> list[Params]:
    return [trial_params(search, i) for i in range(trial_count(search))]


def refusal(
    search: Search, *, estimator: str | None, params: Mapping[str, Any], task: str | None
) -> list[str]:
    """Why this search cannot run, checked before any Job exists (empty: it can).

    The grid's size is bounded; with an allow-listed estimator every trial's parameters (merged
    over ``model.params``) must pass the allow-list, so no trial pod starts only to be refused.
    A factory's parameters are its own: a bad one fails its trial, not the run.
    """
    if search.strategy == SearchStrategy.GRID and grid_size(search) > MAX_TRIALS:
        return [f"the search grid has {grid_size(search)} points, more than the {MAX_TRIALS} trials allowed"]
    if estimator is None:
        return []
    first: dict[str, int] = {}  # each distinct error once, with the first trial that has it
    for index, trial in enumerate(all_trials(search)):
        for error in estimators.validate(estimator, {**params, **trial}, task=task):
            first.setdefault(error, index)
    return [f"search trial {index}: {error}" for error, index in list(first.items())[:8]]


def select(trials: Sequence[Trial], *, metric: str) -> Trial | None:
    """The best scored trial (ties: the lowest index), or None when no trial succeeded."""
    scored = [t for t in trials if t.phase == TrialPhase.SUCCEEDED and t.score is not None
              and math.isfinite(t.score)]
    if not scored:
        return None
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    return min(scored, key=lambda t: (sign * float(t.score or 0.0), t.index))


def trial_from_result(index: int, params: Params, result: Mapping[str, Any] | None) -> Trial:
    """A trial's record from its ``trials/<index>.json`` (None: the pod left no result)."""
    if result is None:
        return Trial(index=index, params=params, phase=TrialPhase.FAILED,
                     message="no result: the trial pod failed (see the search Job's pods)")
    score = result.get("score")
    if result.get("phase") != TrialPhase.SUCCEEDED or not isinstance(score, int | float):
        message = str(result.get("message") or result.get("error") or "failed")
        return Trial(index=index, params=params, phase=TrialPhase.FAILED, message=message[:512])
    return Trial(index=index, params=params, phase=TrialPhase.SUCCEEDED, score=float(score))


def primary_metric(metrics: Sequence[str], *, task: str | None) -> str:
    """The metric the trials are ranked by: the pipeline's first, else the task's default one."""
    if metrics:
        return str(metrics[0])
    return "r2" if task == "regression" else "accuracy"


def spec_of(job: Mapping[str, Any]) -> Search | None:
    """The search a search Job runs (its ``--search-json`` argument): the trials' parameters come
    from what the Job was given, not from a spec that may have changed since."""
    for container in ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or ():
        command = list(container.get("command") or ())
        if "--search-json" in command[:-1]:
            return Search.model_validate_json(command[command.index("--search-json") + 1])
    return None


def progress(job: Mapping[str, Any], *, trials: int) -> str:
    """How far a running search Job is, for the run's message."""
    status = job.get("status") or {}
    done = int(status.get("succeeded") or 0)
    failed = len(_indexes(str(status.get("failedIndexes") or "")))
    return (f"searching: {done} of {trials} trials done" + (f", {failed} failed" if failed else "")
            + f", {int(status.get('active') or 0)} running")


def _indexes(spec: str) -> set[int]:
    """The indexes of a Job's ``completedIndexes``/``failedIndexes`` (``"1,3-5"``)."""
    out: set[int] = set()
    for part in filter(None, spec.split(",")):
        first, _, last = part.partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def outcome(
    search: Search, *, job: str, metric: str, results: Mapping[int, Mapping[str, Any] | None]
) -> SearchResult:
    """The finished search: every trial (its parameters, its score or why it failed) and the best."""
    trials = [trial_from_result(i, params, results.get(i)) for i, params in enumerate(all_trials(search))]
    best = select(trials, metric=metric)
    return SearchResult(job=job, metric=metric, best=best.index if best else None, trials=trials)


def describe(result: SearchResult) -> str:
    """One line for the run's message and its Event."""
    ok = [t for t in result.trials if t.phase == TrialPhase.SUCCEEDED]
    if result.best is None:
        first = next((t.message for t in result.trials if t.message), "no trial left a result")
        return f"all {len(result.trials)} trials failed (trial 0: {first})"
    best = next(t for t in result.trials if t.index == result.best)
    return (f"best of {len(ok)}/{len(result.trials)} trials: #{best.index} {result.metric}="
            f"{best.score:.4g} {json.dumps(best.params, sort_keys=True)}")
