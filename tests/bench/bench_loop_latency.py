"""Benchmark: from a new Dataset version in S3 to a Validated ModelVersion.

Not a test. On the cluster of KUBECONFIG (else the kind cluster), with the operator as a
subprocess and real Jobs (profiling, training, verification pods):

1. a Dataset (refreshInterval 2s) and a TrainingPipeline (onNewData, cooldown 1s,
   LogisticRegression on 2,000 rows); the first ModelVersion is awaited as a warm-up;
2. ``--rounds`` times: upload new content to the same S3 key, then time the stages seen from
   outside: the Dataset's new validated version (change detection + profiling Job), the run
   recorded in the pipeline's status, the run Succeeded (training Job + registration), the
   ModelVersion Validated (verification Job + gates).

    .venv/bin/python tests/bench/bench_loop_latency.py [--rounds 3] [--rows 2000]

Writes reports/bench-loop_latency.md and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from typing import Any

from bench_operator import REPO, Bench, cluster_env, csv_bytes, pipeline

REPORT = REPO / "reports" / "bench-loop_latency.md"
STAGES = ("new version validated", "run recorded", "run succeeded (ModelVersion registered)",
          "ModelVersion Validated")


def _run_entry(bench: Bench, run_id: int) -> dict[str, Any] | None:
    runs = (bench.get("trainingpipelines", "loop").get("status") or {}).get("runs") or []
    return next((r for r in runs if r["id"] == run_id), None)


def _phase(bench: Bench, name: str) -> str | None:
    try:
        return (bench.get("modelversions", name).get("status") or {}).get("phase")
    except Exception:  # not created yet
        return None


def run(rounds: int, rows: int) -> str:
    env = cluster_env()
    load = os.getloadavg()[0]
    table: list[list[float]] = []
    with Bench(name="loop", env=env, suspend_jobs=False) as bench:
        bench.start_operator()
        uri = bench.upload("data.csv", csv_bytes(rows=rows, seed=0))
        bench.dataset("data", uri, refresh="2s")
        version = bench.wait_validated("data")
        bench.create("trainingpipelines", pipeline("loop", dataset="data", model="loop", cooldown="1s"))
        bench.wait(lambda: _phase(bench, "loop-v1") == "Validated", timeout=300, what="the warm-up version")
        for i in range(1, rounds + 1):
            run_id = i + 1
            start = time.monotonic()
            bench.upload("data.csv", csv_bytes(rows=rows, seed=i))
            version = bench.wait_validated("data", not_version=version, timeout=300)
            t_version = time.monotonic()
            bench.wait(lambda run_id=run_id: _run_entry(bench, run_id), timeout=120, what=f"run {run_id}")
            t_recorded = time.monotonic()

            def succeeded(run_id: int = run_id) -> bool:
                entry = _run_entry(bench, run_id) or {}
                if entry.get("phase") == "Failed":
                    raise RuntimeError(f"run {run_id} failed: {entry}")
                return entry.get("phase") == "Succeeded"

            bench.wait(succeeded, timeout=300, what=f"run {run_id} to succeed")
            t_succeeded = time.monotonic()
            model = f"loop-v{run_id}"
            bench.wait(lambda model=model: _phase(bench, model) in ("Validated", "Rejected"), timeout=300,
                       what=f"{model} to be validated")
            t_validated = time.monotonic()
            table.append([t - start for t in (t_version, t_recorded, t_succeeded, t_validated)])
            time.sleep(2)  # past the cooldown, as a real next version would be

    lines = [
        "# Loop latency: new Dataset version to Validated ModelVersion",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), load average before: {load:.1f}",
        f"- command: `.venv/bin/python tests/bench/bench_loop_latency.py --rounds {rounds} --rows {rows}`",
        "- Dataset refreshInterval 2s (the change is found by the next fingerprint check); pipeline "
        "LogisticRegression, onNewData, cooldown 1s; three real pods per round (profiling, training, "
        "verification)",
        "",
        "Seconds since the new object was uploaded to S3, per round:",
        "",
        "| round | " + " | ".join(STAGES) + " |",
        "|---" * (len(STAGES) + 1) + "|",
    ]
    lines += [f"| {i} | " + " | ".join(f"{t:.1f}" for t in row) + " |" for i, row in enumerate(table, 1)]
    medians = [statistics.median(col) for col in zip(*table, strict=True)] if table else []
    lines.append("| median | " + " | ".join(f"{t:.1f}" for t in medians) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    report = run(args.rounds, args.rows)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
