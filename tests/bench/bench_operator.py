"""Benchmark: 1,000 TrainingPipelines applied at once, reconciled to training Jobs.

Not a test. Against the cluster of KUBECONFIG, else the kind cluster (brought up if need be;
`make kind-down` deletes it), with this checkout's CRDs installed:

1. a dedicated namespace with the S3 credentials Secret, a small CSV in S3 and a Dataset;
2. the operator as a subprocess (`kopf run -m loopwright.operator.main --standalone --namespace <ns>`)
   with LOOPWRIGHT_SUSPEND_JOBS=true: the Jobs are real, but suspended, so 1,000 trainers do
   not run on the node (the scale under test is the control plane's, not the node's);
3. once the Dataset is Validated, N pipelines are created from 8 client threads as fast as
   the API server takes them, while a watch on Jobs records when each run's Job appears.

Figures: total time from the first create to the last Job; per pipeline, the time from its
create call returning to its Job's ADDED event (both on this host's monotonic clock); the
operator process's resident memory (VmRSS), sampled every 0.25 s, peak and at the end.
Targets: total < 20 s, p95 < 0.5 s, RSS < 150 MB. The namespace is deleted afterwards.

``--control-plane-only`` runs against an API server without nodes or S3 (a bare kube-apiserver and
etcd, e.g. where no kind cluster can be had): no data is uploaded and no profiling Job runs, the
Dataset is marked validated through its status, the CRDs the server already has are used, and no
default ServiceAccount is awaited. The Jobs are created (suspended) all the same: what is measured
does not change.

``--baseline DIR`` runs the same benchmark first with the operator of another checkout (its own
``.venv``), e.g. a worktree of the commit before a change, and reports both side by side with
their ratios: one cluster, one run, the same load. An operator whose code does not import the
``kubernetes`` package runs as in its image, where that package is not installed: the tests'
virtualenv has it for the tests, so the bench hides it from the operator process (kopf imports it
whenever it is importable).

    .venv/bin/python tests/bench/bench_operator.py [--pipelines 1000] [--baseline ../runtime-base]

Writes reports/bench-operator.md and prints it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
from kubernetes import client, config, watch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))  # the shared test helpers, as pytest's pythonpath has them
import kind_env  # noqa: E402
from crd_install import install_crds  # noqa: E402

REPORT = REPO / "reports" / "bench-operator.md"
GROUP, VERSION = "loopwright.dev", "v1alpha1"
SECRET = "loopwright-s3"
IN_CLUSTER_S3 = "http://s3.loopwright-system.svc:9000"
SCHEMA = {
    "label": {"name": "y", "task": "classification"},
    "columns": [{"name": "x1", "type": "numeric"}, {"name": "x2", "type": "numeric"}],
}
TARGETS = {"total": 20.0, "p95": 0.5, "rss_mb": 150.0}
WITHOUT_CLIENT_LIBRARIES = (
    "import sys; sys.modules.update(dict.fromkeys(('kubernetes', 'kubernetes_asyncio', 'pykube'))); "
    "from kopf.cli import main; sys.exit(main())")
"""kopf's entry point with the client libraries the operator image lacks made unimportable."""


def operator_command(checkout: Path) -> list[str]:
    """How to run the operator of ``checkout``: its venv's kopf, as in its image."""
    python = checkout / ".venv" / "bin" / "python"
    code = checkout / "operator" / "loopwright" / "operator"
    uses_client = any("import kubernetes" in p.read_text() for p in code.rglob("*.py"))
    prefix = [str(checkout / ".venv" / "bin" / "kopf")] if uses_client else [str(python), "-c",
                                                                            WITHOUT_CLIENT_LIBRARIES]
    return [*prefix, "run", "-m", "loopwright.operator.main", "--standalone"]


def cluster_env() -> dict[str, str]:
    """KUBECONFIG and S3 settings: the environment's, else the kind cluster's (brought up if need be:
    make kind-up kind-load kind-deploy), whose S3 the host reaches on 127.0.0.1 (kind_env.s3_endpoint)
    with the kind overlay's development credentials (manifests/overlays/kind/s3.yaml)."""
    env: dict[str, str] = {}
    if not os.environ.get("KUBECONFIG"):
        subprocess.run(["make", "-C", str(REPO), "kind-up", "kind-load", "kind-deploy"], check=True)
        env = {"KUBECONFIG": kind_env.KIND_KUBECONFIG, "AWS_ENDPOINT_URL": kind_env.s3_endpoint(),
               "AWS_ACCESS_KEY_ID": "loopwright", "AWS_SECRET_ACCESS_KEY": "loopwright-kind-only",
               "AWS_DEFAULT_REGION": "us-east-1"}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("AWS_", "LOOPWRIGHT_", "KUBECONFIG"))})
    return env


def csv_bytes(*, rows: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=rows), rng.normal(size=rows)
    y = np.where(x1 + 0.5 * x2 + rng.normal(scale=0.3, size=rows) > 0, "yes", "no")
    return (
        "x1,x2,y\n" + "".join(f"{a:.6f},{b:.6f},{c}\n" for a, b, c in zip(x1, x2, y, strict=True))
    ).encode()


class Bench:
    """A namespace, S3 data and an operator subprocess for one benchmark run."""

    def __init__(self, *, name: str, env: dict[str, str], suspend_jobs: bool, checkout: Path = REPO,
                 control_plane_only: bool = False) -> None:
        self.env = env
        self.checkout = checkout
        self.control_plane_only = control_plane_only
        self.api = config.new_client_from_config(config_file=env["KUBECONFIG"])
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.ns = f"lw-bench-{name}-{uuid.uuid4().hex[:6]}"
        self.bucket = env.get("LOOPWRIGHT_ARTIFACT_BUCKET", "loopwright")
        self.suspend_jobs = suspend_jobs
        self.process: subprocess.Popen[bytes] | None = None
        self.log = REPO / "reports" / f"bench-{name}-operator.log"
        self.rss_samples: list[float] = []
        self._sampling = threading.Event()

    def __enter__(self) -> Bench:
        self.core.create_namespace(
            {"metadata": {"name": self.ns, "labels": {"loopwright.dev/bench": "true"}}}
        )
        if self.control_plane_only:
            return self
        install_crds(self.api)
        self.core.create_namespaced_secret(
            self.ns,
            {
                "metadata": {"name": SECRET},
                "stringData": {
                    "AWS_ACCESS_KEY_ID": self.env["AWS_ACCESS_KEY_ID"],
                    "AWS_SECRET_ACCESS_KEY": self.env["AWS_SECRET_ACCESS_KEY"],
                },
            },
        )
        self.wait(
            lambda: any(
                sa.metadata.name == "default"
                for sa in self.core.list_namespaced_service_account(self.ns).items
            ),
            timeout=30,
            what="the default ServiceAccount",
        )
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_operator()
        self.core.delete_namespace(self.ns, propagation_policy="Background")

    def upload(self, key: str, data: bytes) -> str:
        s3 = boto3.client("s3", endpoint_url=self.env["AWS_ENDPOINT_URL"],
                          region_name=self.env.get("AWS_DEFAULT_REGION", "us-east-1"),
                          aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"])
        s3.put_object(Bucket=self.bucket, Key=f"bench/{self.ns}/{key}", Body=data)
        return f"s3://{self.bucket}/bench/{self.ns}/{key}"

    def validated_data(self) -> None:
        """The Dataset the pipelines train on, validated: profiled by its Job, or marked by hand."""
        if self.control_plane_only:
            self.dataset("data", f"s3://{self.bucket}/bench/{self.ns}/data.csv")
            validated = {"status": {"validatedVersion": "sha256:" + "a" * 64}}
            self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, self.ns, "datasets", "data",
                                                              validated)
            # The operator is up once it has published the Dataset's conditions (its source is
            # unreachable here): what "idle" measures, as a profiled Dataset does on a full cluster.
            self.wait(lambda: (self.get("datasets", "data").get("status") or {}).get("conditions"),
                      timeout=120, what="the operator's first reconcile")
            return
        self.dataset("data", self.upload("data.csv", csv_bytes(rows=200, seed=0)))
        self.wait_validated("data")

    def start_operator(self) -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {
            **os.environ,
            **self.env,
            "LOOPWRIGHT_S3_ENDPOINT": self.env.get("LOOPWRIGHT_BENCH_S3_IN_CLUSTER", IN_CLUSTER_S3),
            "LOOPWRIGHT_S3_SECRET": f"{self.ns}/{SECRET}",
            "LOOPWRIGHT_NAMESPACES": self.ns,
            "LOOPWRIGHT_METRICS_PORT": str(port),
            "LOOPWRIGHT_SUSPEND_JOBS": "true" if self.suspend_jobs else "false",
        }
        self.log.parent.mkdir(exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*operator_command(self.checkout), "--namespace", self.ns,
                 *shlex.split(os.environ.get("LOOPWRIGHT_BENCH_KOPF_ARGS", ""))],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.checkout,
                start_new_session=True,
            )
        self._sampling.set()
        threading.Thread(target=self._sample_rss, daemon=True).start()
        return self.process.pid

    def stop_operator(self) -> None:
        self._sampling.clear()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def _sample_rss(self) -> None:
        while self._sampling.is_set() and self.process is not None and self.process.poll() is None:
            try:
                self.rss_samples.append(self.rss_mb())
            except (OSError, AssertionError):
                return
            time.sleep(0.25)

    def create(self, plural: str, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, body)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)

    def dataset(self, name: str, uri: str, *, refresh: str = "5m") -> None:
        self.create(
            "datasets",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Dataset",
                "metadata": {"name": name},
                "spec": {"source": {"uri": uri}, "schema": SCHEMA, "refreshInterval": refresh},
            },
        )

    def wait_validated(self, name: str, *, not_version: str | None = None, timeout: float = 180) -> str:
        def probe() -> str | None:
            status = self.get("datasets", name).get("status") or {}
            version = status.get("validatedVersion")
            return version if version and version != not_version else None

        return str(self.wait(probe, timeout=timeout, what=f"Dataset {name} to be validated"))

    def wait(self, probe: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.2) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; see {self.log}")
            time.sleep(interval)


def pipeline(name: str, *, dataset: str, model: str, cooldown: str = "10m") -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingPipeline",
        "metadata": {"name": name},
        "spec": {
            "datasetRef": {"name": dataset},
            "model": {"name": model, "estimator": "LogisticRegression"},
            "triggers": {"cooldown": cooldown},
        },
    }


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


@dataclass
class Figures:
    checkout: Path
    commit: str
    pipelines: int
    applied: float
    seen: int
    suspended: int
    total: float
    latencies: list[float]
    calls: list[float]
    rss_idle: float
    rss_peak: float
    rss_end: float

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)


def measure(env: dict[str, str], *, pipelines: int, checkout: Path, name: str,
            control_plane_only: bool = False) -> Figures:
    with Bench(name=name, env=env, suspend_jobs=True, checkout=checkout,
               control_plane_only=control_plane_only) as bench:
        bench.start_operator()
        bench.validated_data()
        time.sleep(2)
        rss_idle = bench.rss_mb()

        seen: dict[str, float] = {}
        done = threading.Event()

        def watch_jobs() -> None:
            w = watch.Watch()
            for event in w.stream(
                bench.batch.list_namespaced_job,
                bench.ns,
                timeout_seconds=300,
                label_selector="loopwright.dev/trainingpipeline",
            ):
                if event["type"] == "ADDED":
                    seen.setdefault(event["object"].metadata.name, time.monotonic())
                    if len(seen) >= pipelines:
                        done.set()
                        w.stop()

        watcher = threading.Thread(target=watch_jobs, daemon=True)
        watcher.start()
        time.sleep(1)
        created: dict[str, float] = {}
        names = [f"p-{i:04d}" for i in range(pipelines)]

        calls: list[float] = []

        def create(name: str) -> None:
            before = time.monotonic()
            bench.create("trainingpipelines", pipeline(name, dataset="data", model=name))
            created[name] = time.monotonic()
            calls.append(created[name] - before)

        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, names))
        applied = time.monotonic() - start
        done.wait(timeout=300)
        total = max(seen.values(), default=float("nan")) - start
        latencies = [seen[f"{n}-1"] - created[n] for n in names if f"{n}-1" in seen]
        time.sleep(2)
        rss_end = bench.rss_mb()
        rss_peak = max(bench.rss_samples, default=float("nan"))
        jobs = bench.batch.list_namespaced_job(
            bench.ns, label_selector="loopwright.dev/trainingpipeline"
        ).items
        suspended = sum(1 for j in jobs if j.spec.suspend)
        bench.stop_operator()
    commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    return Figures(checkout=checkout, commit=commit, pipelines=pipelines, applied=applied, seen=len(seen),
                   suspended=suspended, total=total, latencies=latencies, calls=calls, rss_idle=rss_idle,
                   rss_peak=rss_peak, rss_end=rss_end)


def _rows(f: Figures) -> dict[str, tuple[float, str, float | None]]:
    """figure -> (value, unit, target)."""
    return {
        "total, first create to last Job": (f.total, "s", TARGETS["total"]),
        "CR-to-Job latency p50": (f.p(50) * 1000, "ms", None),
        "CR-to-Job latency p95": (f.p(95) * 1000, "ms", TARGETS["p95"] * 1000),
        "CR-to-Job latency p99": (f.p(99) * 1000, "ms", None),
        "CR-to-Job latency max": (max(f.latencies, default=float("nan")) * 1000, "ms", None),
        "operator RSS idle (1 Dataset)": (f.rss_idle, "MB", None),
        "operator RSS peak": (f.rss_peak, "MB", TARGETS["rss_mb"]),
        f"operator RSS at the end ({f.pipelines} pipelines + Jobs)": (f.rss_end, "MB", None),
    }


def report(figures: Figures, baseline: Figures | None, *, load: float, command: str,
           control_plane_only: bool) -> str:
    lines = [
        "# Operator scale: TrainingPipelines to Jobs",
        "",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs (shared), "
        f"Python {platform.python_version()}, load average before: {load:.1f}",
        f"- command: `{command}`",
        "- operator: `kopf run -m loopwright.operator.main --standalone --namespace <ns>` (one process), "
        "LOOPWRIGHT_SUSPEND_JOBS=true (real Jobs, created suspended: no trainer pods)",
    ]
    for f in filter(None, (baseline, figures)):
        lines.append(
            f"- {f.commit} ({f.checkout.name}): pipelines created from 8 client threads in "
            f"{f.applied:.1f} s; "
            f"Jobs seen: {f.seen}/{f.pipelines} (suspended: {f.suspended}); one create call took "
            f"{percentile(f.calls, 50) * 1000:.0f} ms (p50), {percentile(f.calls, 95) * 1000:.0f} ms (p95)")
    lines.append("")
    rows, before = _rows(figures), _rows(baseline) if baseline else None
    if before is None:
        lines += ["| figure | value | target | met |", "|---|---|---|---|"]
    else:
        lines += [f"| figure | before ({baseline.commit if baseline else ''}) | after ({figures.commit}) | "
                  "after / before | target | met |", "|---|---|---|---|---|---|"]
    for name, (value, unit, target) in rows.items():
        met = "" if target is None else "yes" if value < target else "NO"
        goal = "" if target is None else f"< {target:.0f} {unit}"
        digits = 1 if unit == "s" else 0
        if before is None:
            lines.append(f"| {name} | {value:.{digits}f} {unit} | {goal} | {met} |")
        else:
            old = before[name][0]
            ratio = value / old if old else float("nan")
            cells = [name, f"{old:.{digits}f} {unit}", f"{value:.{digits}f} {unit}", f"{ratio:.2f}", goal,
                     met]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Latency is measured on this host from the create call returning to the Job's ADDED watch event, "
        "so it includes the API server's watch delivery. The local cluster's control plane (etcd, "
        "kube-apiserver, kube-controller-manager) runs on the same 2 shared cores as the operator.",
    ]
    if control_plane_only:
        lines += ["", "Run with --control-plane-only: a kube-apiserver and etcd on this host, no nodes, "
                  "no S3 (the Dataset marked validated through its status); the Jobs are created all the "
                  "same."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--baseline", type=Path, help="another checkout (with its .venv) measured first")
    parser.add_argument("--control-plane-only", action="store_true",
                        help="an API server without nodes or S3: the Dataset is validated by hand")
    args = parser.parse_args()
    env = cluster_env()
    load = os.getloadavg()[0]
    only = args.control_plane_only
    if only:  # no S3: the operator's fingerprint checks fail at once rather than look for AWS
        env.setdefault("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    baseline = (measure(env, pipelines=args.pipelines, checkout=args.baseline.resolve(), name="baseline",
                        control_plane_only=only) if args.baseline else None)
    figures = measure(env, pipelines=args.pipelines, checkout=REPO, name="operator", control_plane_only=only)
    command = " ".join([".venv/bin/python tests/bench/bench_operator.py", f"--pipelines {args.pipelines}",
                        *([f"--baseline {args.baseline}"] if args.baseline else []),
                        *(["--control-plane-only"] if only else [])])
    text = report(figures, baseline, load=load, command=command, control_plane_only=only)
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
