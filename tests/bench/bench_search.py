"""Benchmark: a hyperparameter search as pods (one process per trial, N at a time) against the
same trials in one process.

Not a test. Generates churn-like data (tests/demo/churn.py, ``--rows`` rows), then runs the same
random search (``--trials`` trials, default 16, of a random forest over n_estimators, max_depth
and min_samples_leaf) two ways, ``--repeats`` times, alternating:

* pods: ``loopwright-trial --index i`` for every trial, ``--parallelism`` (default 4) processes at
  a time: what the search's Indexed Job runs, each pod a fresh process that imports, reads the
  data, checks its digest, splits and fits one trial;
* one process: a single Python process that imports and reads once, then fits and scores every
  trial in turn with the same code (:func:`loopwright.jobs.trainer.trial.score`).

Reported: wall time (median), total CPU of all processes (user + system, from rusage), the
per-trial fixed cost of the pods (their CPU minus the one process's, per trial), and whether both
found the same best trial with the same score. One thread per process (OMP_NUM_THREADS=1), so
the parallelism is the processes'; on a machine with fewer cores than ``--parallelism`` the pods
queue for CPU, as pods queue on a small node.

    .venv/bin/python tests/bench/bench_search.py [--rows 20000] [--trials 16] [--parallelism 4]

Writes reports/bench-search.md and prints it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "demo"))
import churn  # noqa: E402

PYTHON = str(REPO / ".venv" / "bin" / "python")
TRIAL = str(REPO / ".venv" / "bin" / "loopwright-trial")
REPORT = REPO / "reports" / "bench-search.md"
TIMEOUT = 1800
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SCHEMA = {"label": {"name": "churned", "task": "classification"}, "columns": [
    {"name": "tenure_months", "type": "numeric"}, {"name": "monthly_charges", "type": "numeric"},
    {"name": "support_calls", "type": "numeric"}, {"name": "plan", "type": "categorical"}]}
SPACE = {"n_estimators": {"values": [20, 40, 60]}, "max_depth": {"min": 3, "max": 14, "integer": True},
         "min_samples_leaf": {"min": 1, "max": 20, "integer": True}}

ONE_PROCESS = """
import json, sys
from loopwright.core.training import search as plan
from loopwright.api.search import Search
from loopwright.jobs.trainer import model, trial
args = trial._parse_args(sys.argv[1:])
search = Search.model_validate_json(args.search_json)
schema, base, metrics = model.check_parameters(args)
data = trial.prepare(args, schema, search.validation_fraction)
scores = [trial.score(data, args, {**base, **plan.trial_params(search, i)}, metrics[0])
          for i in range(plan.trial_count(search))]
print(json.dumps(scores))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


Timing = tuple[float, float, list[float]]
"""(wall seconds, CPU seconds, each trial's score by index)."""


def _pods(common: list[str], *, trials: int, parallelism: int, out: Path) -> Timing:
    """Every trial as its own process, ``parallelism`` at a time: (wall, CPU, scores by index)."""
    cpu0, wall0 = _children_cpu(), time.perf_counter()

    def one(index: int) -> None:
        subprocess.run([TRIAL, *common, "--index", str(index), "--output-prefix", f"{out}/"], env=ENV,
                       check=True, capture_output=True, timeout=TIMEOUT)

    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        list(pool.map(one, range(trials)))
    wall, cpu = time.perf_counter() - wall0, _children_cpu() - cpu0
    scores = [json.loads((out / "trials" / f"{i}.json").read_text())["score"] for i in range(trials)]
    return wall, cpu, scores


def _one_process(common: list[str], out: Path) -> Timing:
    cpu0, wall0 = _children_cpu(), time.perf_counter()
    done = subprocess.run([PYTHON, "-c", ONE_PROCESS, *common, "--output-prefix", f"{out}/"], env=ENV,
                          check=True, capture_output=True, text=True, timeout=TIMEOUT)
    scores = json.loads(done.stdout.strip().splitlines()[-1])
    return time.perf_counter() - wall0, _children_cpu() - cpu0, scores


def _best(scores: list[float]) -> tuple[int, float]:
    index = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return index, scores[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--parallelism", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        path = Path(tmp) / "churn.csv"
        path.write_bytes(churn.csv_bytes(*churn.rows(args.rows, seed=1)))
        search = {"strategy": "random", "trials": args.trials, "parallelism": args.parallelism, "seed": 5,
                  "space": SPACE}
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        common = ["--dataset-uri", str(path), "--dataset-digest", digest, "--schema-json", json.dumps(SCHEMA),
                  "--estimator", "RandomForestClassifier", "--seed", "7", "--search-json", json.dumps(search)]
        runs: dict[str, list[Timing]] = {"pods": [], "one": []}
        load_before = os.getloadavg()
        for repeat in range(args.repeats):
            out = Path(tmp) / f"r{repeat}"
            pods = _pods(common, trials=args.trials, parallelism=args.parallelism, out=out / "pods")
            runs["pods"].append(pods)
            runs["one"].append(_one_process(common, out / "one"))
            print(f"repeat {repeat + 1}: pods {runs['pods'][-1][0]:.1f} s wall, "
                  f"one process {runs['one'][-1][0]:.1f} s wall", file=sys.stderr)
        load_after = os.getloadavg()
    _report(runs, args=args, load=(load_before, load_after))


def _report(runs: dict[str, list[Timing]], *, args: argparse.Namespace, load: tuple[Any, Any]) -> None:
    def med(key: str, i: int) -> float:
        return statistics.median(r[i] for r in runs[key])

    pods_best, one_best = _best(runs["pods"][0][2]), _best(runs["one"][0][2])
    same_scores = all(r[2] == runs["one"][0][2] for r in (*runs["pods"], *runs["one"]))
    fixed = (med("pods", 1) - med("one", 1)) / args.trials
    lines = [
        "# bench-search: trials as pods against one process",
        "",
        f"Command: `.venv/bin/python tests/bench/bench_search.py --rows {args.rows} --trials {args.trials} "
        f"--parallelism {args.parallelism} --repeats {args.repeats}`",
        f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}; "
        f"load average before {load[0][0]:.1f}, after {load[1][0]:.1f}.",
        f"Search: random, {args.trials} trials of RandomForestClassifier over {json.dumps(SPACE)}, "
        f"{args.rows} rows (hold-out 0.2, validation 0.2 of the rest), one thread per process.",
        "",
        "| Way | Wall time (median) | Total CPU (median) | Best trial | Best accuracy |",
        "| --- | --- | --- | --- | --- |",
        f"| pods: {args.trials} processes, {args.parallelism} at a time | {med('pods', 0):.1f} s | "
        f"{med('pods', 1):.1f} s | #{pods_best[0]} | {pods_best[1]:.6f} |",
        f"| one process, trials in turn | {med('one', 0):.1f} s | {med('one', 1):.1f} s | "
        f"#{one_best[0]} | {one_best[1]:.6f} |",
        "",
        f"Speed-up in wall time: {med('one', 0) / med('pods', 0):.2f}x; CPU cost of the pods: "
        f"{med('pods', 1) / med('one', 1):.2f}x the one process ({fixed:.2f} s of fixed cost per trial: "
        "interpreter, imports, reading and splitting the data again).",
        f"Same best trial and score: **{'yes' if pods_best == one_best else 'NO'}**; every trial's score "
        f"identical in every run: **{'yes' if same_scores else 'NO'}**.",
        "",
        "Raw (wall s, CPU s) per repeat: pods " + ", ".join(f"({w:.1f}, {c:.1f})" for w, c, _ in runs["pods"])
        + "; one process " + ", ".join(f"({w:.1f}, {c:.1f})" for w, c, _ in runs["one"]) + ".",
    ]
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
