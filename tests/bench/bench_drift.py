"""Benchmark: Loopwright's drift check against Evidently's data drift report, same data, same method.

Not a test. Generates a reference table and a current table of 1,000,000 rows x
20 features each (14 numeric, 6 categorical; 7 features shifted, 13 not), then:

* ours: the reference profile is built once from the reference rows (training
  time, reported apart); the timed check bins the 1M current rows of every
  feature into the frozen reference bins (``FeatureProfile.count``) and runs
  :func:`loopwright.core.drift.stats.check` with PSI;
* Evidently: ``Report([DataDriftPreset(method="psi", threshold=0.1)])`` on the
  same two tables (loaded before timing), in its own venv
  /work/main/.venv-bench-evidently (created here if missing: evidently 0.7,
  pandas<3 which it needs).

Both use PSI with threshold 0.1 (Evidently's default for PSI) and a drift share
of 0.5. The bins differ by design: ours are the reference deciles frozen at
training time, Evidently's are equal-width (Sturges) over both tables, so PSI
values differ; the verdicts are compared feature by feature. Targets: under
2 s, at least 50x faster, same verdicts.

    .venv/bin/python tests/bench/bench_drift.py [--rows 1000000] [--repeats 5]

Writes reports/bench-drift.md and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import comparison_venv
import numpy as np
import pandas as pd

from loopwright.api.driftpolicy import FeatureDrift
from loopwright.core.drift import stats
from loopwright.core.profile import Profile, profile_categorical, profile_numeric

REPO = Path(__file__).resolve().parents[2]
EVIDENTLY_VENV = REPO / ".venv-bench-evidently"
# Evidently 0.7 imports pandas internals that pandas 3 removed.
EVIDENTLY_PACKAGES = ("evidently==0.7.*", "pandas<3", "pyarrow")
REPORT = REPO / "reports" / "bench-drift.md"
THRESHOLD = 0.1
DRIFT_SHARE = 0.5
NUMERIC = 14
CATEGORICAL = 6
EVIDENTLY_TIMEOUT = 1800

EVIDENTLY_RUNNER = textwrap.dedent(
    """
    import json, sys, time
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    ref_path, cur_path, numeric, categorical, threshold, share = sys.argv[1:]
    numeric, categorical = numeric.split(","), categorical.split(",")
    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    started = time.perf_counter()
    report = Report([DataDriftPreset(method="psi", threshold=float(threshold), drift_share=float(share))])
    snapshot = report.run(Dataset.from_pandas(cur, data_definition=definition),
                          Dataset.from_pandas(ref, data_definition=definition))
    result = snapshot.dict()
    seconds = time.perf_counter() - started
    values, share_value = {}, None
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            values[config["column"]] = metric["value"]
        elif config["type"].endswith("DriftedColumnsCount"):
            share_value = metric["value"]["share"]
    print(json.dumps({"seconds": seconds, "values": values, "share": share_value}))
    """
)


def _tables(rows: int) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    """Reference and current tables; returns the names of the features shifted on purpose."""
    rng = np.random.default_rng(0)
    ref: dict[str, object] = {}
    cur: dict[str, object] = {}
    shifted: set[str] = set()
    for i in range(NUMERIC):
        name = f"n{i}"
        scale = 1.0 + i
        def sample(i: int = i, scale: float = scale) -> np.ndarray:
            if i % 2:
                return rng.normal(loc=i, scale=scale, size=rows)
            return rng.gamma(2.0 + i, scale, size=rows)

        base = sample()
        ref[name] = base
        # n0..n4: mean shifts of 0.6 sd; n5: a small 0.05 sd shift that must not count; others: a
        # fresh sample of the same distribution.
        delta = 0.6 if i < 5 else 0.05 if i == 5 else 0.0
        cur_values = sample() + delta * np.std(base)
        cur_values[rng.random(rows) < 0.01] = np.nan
        cur[name] = cur_values
        if delta >= 0.5:
            shifted.add(name)
    for i in range(CATEGORICAL):
        name = f"c{i}"
        levels = np.array([f"level-{k}" for k in range(3 + 2 * i)])
        p = np.linspace(1.0, 2.0, levels.size)
        p /= p.sum()
        ref[name] = rng.choice(levels, size=rows, p=p)
        if i < 2:
            # c0: reversed proportions; c1: a new level taking 20% of the rows.
            q = p[::-1] if i == 0 else p
            values = rng.choice(levels, size=rows, p=q).astype(object)
            if i == 1:
                values[rng.random(rows) < 0.2] = "level-new"
            cur[name] = values
            shifted.add(name)
        else:
            cur[name] = rng.choice(levels, size=rows, p=p)
    return pd.DataFrame(ref), pd.DataFrame(cur), shifted


def _profile(ref: pd.DataFrame) -> Profile:
    features = {
        name: profile_numeric(ref[name].to_numpy()) if name.startswith("n")
        else profile_categorical(ref[name].to_numpy(dtype=object))
        for name in ref.columns
    }
    return Profile(rows=len(ref), features=features)


def _ours(profile: Profile, columns: dict[str, object]) -> tuple[float, float, stats.DriftReport]:
    """One timed check: binning of every column, then the statistics. Returns (binning s, stats s, report).

    ``columns`` maps names to numpy arrays, or to pandas Series (then the
    conversion to numpy is timed too).
    """
    started = time.perf_counter()
    counts = {
        name: profile.features[name].count(np.asarray(values))[0] for name, values in columns.items()
    }
    binned = time.perf_counter()
    report = stats.check(profile, counts, features=FeatureDrift(method="psi", threshold=THRESHOLD),
                         drift_share=DRIFT_SHARE)
    return binned - started, time.perf_counter() - binned, report


def _evidently(ref: pd.DataFrame, cur: pd.DataFrame, work: Path) -> dict[str, object]:
    ref.to_parquet(work / "ref.parquet")
    cur.to_parquet(work / "cur.parquet")
    runner = work / "run_evidently.py"
    runner.write_text(EVIDENTLY_RUNNER)
    numeric = ",".join(c for c in ref.columns if c.startswith("n"))
    categorical = ",".join(c for c in ref.columns if c.startswith("c"))
    cmd = [str(EVIDENTLY_VENV / "bin" / "python"), str(runner), str(work / "ref.parquet"),
           str(work / "cur.parquet"), numeric, categorical, str(THRESHOLD), str(DRIFT_SHARE)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=EVIDENTLY_TIMEOUT, check=False,
                          env={**os.environ, "DO_NOT_TRACK": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"Evidently failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    error = comparison_venv.ensure(EVIDENTLY_VENV, EVIDENTLY_PACKAGES)
    if error:
        raise SystemExit(error)

    ref, cur, shifted = _tables(args.rows)
    started = time.perf_counter()
    profile = _profile(ref)
    profile_seconds = time.perf_counter() - started
    arrays = {name: cur[name].to_numpy() for name in cur.columns}
    runs = [_ours(profile, arrays) for _ in range(args.repeats)]
    report = runs[-1][2]
    from_frame = statistics.median(
        sum(_ours(profile, {n: cur[n] for n in cur.columns})[:2]) for _ in range(args.repeats))
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        print("running Evidently ...", flush=True)
        evidently = _evidently(ref, cur, Path(tmp))
    _write(args, profile_seconds, runs, from_frame, report, evidently, shifted)


def _write(args: argparse.Namespace, profile_seconds: float, runs: list, from_frame: float,
           report: stats.DriftReport, evidently: dict, shifted: set[str]) -> None:
    totals = [b + s for b, s, _ in runs]
    ours = statistics.median(totals)
    ev_seconds = float(evidently["seconds"])
    ev_values: dict[str, float] = evidently["values"]  # type: ignore[assignment]
    rows = []
    agree = 0
    for f in report.features:
        ev_value = ev_values[f.name]
        ev_drift = ev_value >= THRESHOLD
        agree += int(ev_drift == f.drifted)
        ours_verdict = "drift" if f.drifted else "-"
        ev_verdict = "drift" if ev_drift else "-"
        same = "yes" if ev_drift == f.drifted else "**NO**"
        rows.append(
            f"| {f.name} | {'yes' if f.name in shifted else 'no'} | {f.statistic:.4f} | {ours_verdict}"
            f" | {ev_value:.4f} | {ev_verdict} | {same} |"
        )
    ev_share = evidently["share"]
    lines = [
        "# Benchmark: drift check vs Evidently data drift report",
        "",
        f"Data: reference and current tables of {args.rows:,} rows x {NUMERIC + CATEGORICAL} features"
        f" ({NUMERIC} numeric, {CATEGORICAL} categorical; {len(shifted)} shifted on purpose, 1% missing in"
        " current numeric columns). Method PSI, threshold 0.1, drift share 0.5 on both sides.",
        "",
        "| | Loopwright | Evidently 0.7 | ratio |",
        "|---|---|---|---|",
        f"| check time (s), median of {args.repeats} | {ours:.3f} | {ev_seconds:.2f} (one run) |"
        f" **{ev_seconds / ours:.0f}x** |",
        f"| of which binning / statistics (s) | {statistics.median(b for b, _, _ in runs):.3f} /"
        f" {statistics.median(s for _, s, _ in runs):.4f} | | |",
        f"| check time from the DataFrame's columns, converting pandas strings to numpy (s) |"
        f" {from_frame:.3f} | | {ev_seconds / from_frame:.0f}x |",
        f"| drifted features / share | {sum(f.drifted for f in report.features)} /"
        f" {report.drift_share:.2f} | {sum(v >= THRESHOLD for v in ev_values.values())} / {ev_share:.2f} | |",
        f"| dataset drift | {report.dataset_drift} | {ev_share >= DRIFT_SHARE} | |",
        "",
        f"Verdicts agree on {agree} of {len(report.features)} features."
        f" Targets: under 2 s ({'met' if ours < 2 else 'NOT met'}), at least 50x"
        f" ({'met' if ev_seconds / ours >= 50 else 'NOT met'}), same verdicts"
        f" ({'met' if agree == len(report.features) else 'NOT met'}).",
        f"Building the reference profile from the reference rows (once, at training time):"
        f" {profile_seconds:.2f} s.",
        "",
        "| feature | shifted | our PSI | our verdict | Evidently PSI | Evidently verdict | agree |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "PSI values differ because the bins differ: ours are the reference deciles frozen at training time"
        " (the predictor counts live traffic into them, so no raw reference is kept), Evidently's are"
        " equal-width Sturges bins over both tables. Evidently's time covers Report.run and the snapshot"
        " dict, not the parquet loading; ours covers binning the raw current columns (numpy arrays:"
        " float64, and object arrays of Python strings as pandas gives them) and the statistics.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with a background build;"
        f" Python {platform.python_version()}, numpy {np.__version__}. Command:"
        f" `.venv/bin/python tests/bench/bench_drift.py --rows {args.rows} --repeats {args.repeats}`.",
    ]
    text = "\n".join(lines) + "\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
