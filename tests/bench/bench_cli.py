"""Benchmark: start-up and `get` wall time of the kubectl plugin, side by side with what it avoids.

Not a test. Runs each command ``--repeats`` times as a new process (what a user's shell does):

* ``kubectl-loopwright --help``;
* ``kubectl-loopwright get churn``: the recorded churn loop (tests/unit/cli_objects.py) served by the
  fake API server on loopback (five lists), drawn as the tree;
* ``python -c "import kubernetes.client, pydantic"`` plus the API models: the imports a plugin
  built on the kubernetes package and the pydantic models would pay before doing anything.

    .venv/bin/python tests/bench/bench_cli.py [--repeats 20]

Writes reports/bench-cli.md and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tests")]

from unit.cli_objects import NAMESPACE, objects  # noqa: E402
from unit.fake_kube import FakeKube  # noqa: E402

REPORT = REPO / "reports" / "bench-cli.md"
PLUGIN = str(Path(sys.executable).with_name("kubectl-loopwright"))


def timed(argv: list[str], env: dict[str, str], repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        out.append(time.perf_counter() - start)
    return out


def row(name: str, samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"| {name} | {statistics.median(samples) * 1000:.0f} ms | {p95 * 1000:.0f} ms | {len(samples)} |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    fake = FakeKube(objects(), namespace=NAMESPACE)
    with fake.running(), tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "KUBECONFIG": str(fake.kubeconfig(Path(tmp) / "kubeconfig")), "NO_COLOR": "1"}
        results = {
            "kubectl-loopwright --help": timed([PLUGIN, "--help"], env, args.repeats),
            "kubectl-loopwright get churn (5 lists, tree)": timed(
                [PLUGIN, "get", "churn"], env, args.repeats),
            "import kubernetes.client + API models (what it avoids)": timed(
                [sys.executable, "-c", "import kubernetes.client, loopwright.api.kinds"], env, args.repeats),
        }
    help_, get, heavy = (statistics.median(v) for v in results.values())
    lines = [
        "# bench-cli: start-up of the kubectl plugin",
        "",
        f"Command: `.venv/bin/python tests/bench/bench_cli.py --repeats {args.repeats}`; "
        f"{platform.python_version()} on {platform.machine()}, load average {os.getloadavg()[0]:.2f}.",
        "",
        "| Command (a new process each time) | median | p95 | runs |",
        "| --- | --- | --- | --- |",
        *(row(name, samples) for name, samples in results.items()),
        "",
        f"`get` takes {get / heavy:.2f}x the time of importing the kubernetes client and the API models "
        f"alone; `--help` {help_ * 1000:.0f} ms.",
    ]
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
