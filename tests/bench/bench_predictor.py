"""Benchmark: the Loopwright predictor against MLServer 1.7 (mlserver-sklearn), same models, same load.

Not a test. It trains a logistic regression and a 100-tree random forest on the
same generated data (10 numeric features), plus a logistic regression in the
trainer's pipeline shape (imputer + scaler, imputer + one-hot on one categorical
column), serves each with MLServer's sklearn runtime (joblib file, MLServer's
own format) and with ``python -m loopwright.serving`` (skops + profile), all
on 127.0.0.1, and drives every server with ``wrk`` (closed loop: each
connection sends its next request when the previous answer arrives) at 1 and 32
concurrent connections, posting the same Open Inference Protocol v2 body to
``/v2/models/<name>/infer``: for the bare estimators one [1, 10] FP64 tensor
(what MLServer's NumpyCodec sends), for the pipeline one [1, 1] tensor per
column with ``content_type: pd`` (what its PandasCodec sends).

MLServer runs twice: with its default ``parallel_workers=1`` (the HTTP process
hands each request to one inference worker process) and with
``parallel_workers=0`` (inference in the HTTP process, like ours); the ratio is
taken against the faster of the two. Access logs are off on both sides
(MLServer ``debug=false``). MLServer lives in its own venv,
/work/main/.venv-bench-mlserver, created here if missing.

    .venv/bin/python tests/bench/bench_predictor.py [--duration 10] [--quick]

Writes reports/bench-predictor.md and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from loopwright import artifacts
from loopwright.api.schema import ColumnSpec, ColumnType, DatasetSchema, LabelSpec, TaskType
from loopwright.core.profile import Profile, profile_categorical, profile_numeric

REPO = Path(__file__).resolve().parents[2]
MLSERVER_VENV = REPO / ".venv-bench-mlserver"
# uvloop 0.22 breaks MLServer 1.7.1's parallel workers ("There is no current event loop",
# SeldonIO/MLServer#2286); 0.21 is the last release it works with.
MLSERVER_PACKAGES = ("mlserver==1.7.*", "mlserver-sklearn==1.7.*", "uvloop<0.22")
REPORT = REPO / "reports" / "bench-predictor.md"
FEATURES = 10
CONCURRENCY = (1, 32)
TARGET_RATIO = 2.0
TARGET_P99_MS = 10.0

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY_FILE")):read("*a")
"""


@dataclass
class Result:
    model: str
    server: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument("--quick", action="store_true", help="3 s runs, for trying the script")
    parser.add_argument("--models", default="lr,rf,lr-pipeline", help="comma list (default: all three)")
    parser.add_argument("--no-mlserver", action="store_true", help="only the Loopwright predictor")
    args = parser.parse_args()
    duration = 3 if args.quick else args.duration

    wrk = _ensure_wrk()
    mlserver_error = None if args.no_mlserver else _ensure_mlserver()
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    context = _context()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="lw-bench-predictor-") as tmp:
        work = Path(tmp)
        models = _train(work)
        lua = work / "post.lua"
        lua.write_text(LUA)
        for name, served in models.items():
            if name not in args.models.split(","):
                continue
            body_file = served.body
            servers = [("loopwright", lambda p=served, n=name: _start_loopwright(n, p, work))]
            if mlserver_error is None and not args.no_mlserver:
                servers += [
                    (
                        f"mlserver pw={pw}",
                        lambda p=served, n=name, w=pw: _start_mlserver(n, p, work, workers=w),
                    )
                    for pw in (1, 0)
                ]
            answers: dict[str, object] = {}
            for label, start in servers:
                with start() as url:
                    answers[label] = _predict_once(url, body_file)
                    _wrk(wrk, url, lua, body_file, connections=32, seconds=args.warmup)
                    for c in CONCURRENCY:
                        res = _wrk(wrk, url, lua, body_file, connections=c, seconds=duration)
                        results.append(Result(name, label, c, *res))
                        print(
                            f"{name:11} {label:15} c={c:<3} {res[0]:9.0f} req/s p50 {res[1]:7.2f} ms "
                            f"p99 {res[2]:7.2f} ms errors {res[3]}",
                            flush=True,
                        )
            if len({json.dumps(a) for a in answers.values()}) != 1:
                print(f"WARNING: servers disagree on the prediction for {name}: {answers}", flush=True)
            context[f"prediction ({name})"] = json.dumps(answers)
    report = _report(
        results, context=context, started=started, duration=duration, mlserver_error=mlserver_error
    )
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(report)
    print(report)


# -- setup ---------------------------------------------------------------------------------------------


def _ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get install -y wrk)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed and apt-get could not install it")
    return found


def _ensure_mlserver() -> str | None:
    """Create the MLServer venv if needed; returns the install error, or None when usable."""
    steps = [[str(MLSERVER_VENV / "bin" / "pip"), "install", "-q", *MLSERVER_PACKAGES]]
    if not (MLSERVER_VENV / "bin" / "pip").exists():
        print(f"creating {MLSERVER_VENV} with {' '.join(MLSERVER_PACKAGES)}", flush=True)
        python = shutil.which("python3.11") or sys.executable
        steps.insert(0, [python, "-m", "venv", str(MLSERVER_VENV)])
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"`{' '.join(step)}` failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return None


@dataclass
class Served:
    """One model as both servers get it, and the request body both receive."""

    dir: Path
    sha: str
    body: Path


def _train(work: Path) -> dict[str, Served]:
    x, y = make_classification(n_samples=5000, n_features=FEATURES, n_informative=6, random_state=0)
    names = [f"f{i}" for i in range(FEATURES)]
    numeric = [ColumnSpec(name=n, type=ColumnType.NUMERIC) for n in names]
    # A one-row v2 body as MLServer's NumpyCodec sends it: one [1, F] tensor.
    matrix_body = {
        "inputs": [{"name": "input-0", "shape": [1, FEATURES], "datatype": "FP64", "data": [x[1].tolist()]}]
    }
    # The trainer's model shape (imputer+scaler, imputer+one-hot, then the estimator) takes a
    # DataFrame: MLServer's PandasCodec body (one named [1, 1] tensor per column), for both.
    frame = pd.DataFrame(x, columns=names)
    frame["c"] = np.array(["a", "b", "c", "d", "e"], dtype=object)[(x[:, 0] > 0) + 2 * (x[:, 1] > 0)]
    frame_body = {
        "parameters": {"content_type": "pd"},
        "inputs": [
            *({"name": n, "shape": [1, 1], "datatype": "FP64", "data": [float(frame[n].iloc[1])]}
              for n in names),
            {"name": "c", "shape": [1, 1], "datatype": "BYTES", "parameters": {"content_type": "str"},
             "data": [frame["c"].iloc[1]]},
        ],
    }  # fmt: skip
    cases: dict[str, tuple[Any, list[ColumnSpec], Any, dict[str, Any]]] = {
        "lr": (LogisticRegression(max_iter=1000), numeric, x, matrix_body),
        "rf": (RandomForestClassifier(n_estimators=100, random_state=0), numeric, x, matrix_body),
        "lr-pipeline": (
            _trainer_shaped(LogisticRegression(max_iter=1000), names, ["c"]),
            [*numeric, ColumnSpec(name="c", type=ColumnType.CATEGORICAL)],
            frame,
            frame_body,
        ),
    }
    out: dict[str, Served] = {}
    for name, (est, columns, data, body) in cases.items():
        est.fit(data, y)
        d = work / name
        d.mkdir()
        joblib.dump(est, d / "model.joblib")
        model_sha = artifacts.save(est, str(d / "model.skops"))
        classes = [str(c) for c in est.classes_]
        schema = DatasetSchema(label=LabelSpec(name="y", task=TaskType.CLASSIFICATION), columns=columns)
        features = {n: profile_numeric(x[:, j]) for j, n in enumerate(names)}
        if isinstance(data, pd.DataFrame):
            features["c"] = profile_categorical(data["c"].to_numpy())
        profile = Profile(
            rows=len(x),
            features=features,
            prediction=profile_categorical([str(p) for p in est.predict(data)], categories=classes),
            schema=schema,
            task=TaskType.CLASSIFICATION,
            classes=classes,
        )
        (d / "profile.json").write_text(json.dumps(profile.to_wire()))
        (d / "body.json").write_text(json.dumps(body))
        out[name] = Served(dir=d, sha=model_sha, body=d / "body.json")
    return out


def _trainer_shaped(model: Any, numeric: list[str], categorical: list[str]) -> Any:
    """What loopwright.jobs.trainer builds from a schema (see its ``_pipeline``)."""
    return Pipeline(
        [
            ("preprocess", ColumnTransformer(
                [
                    ("numeric", Pipeline([
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]), numeric),
                    ("categorical", Pipeline([
                        ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=True)),
                    ]), categorical),
                ],
                sparse_threshold=0.3,
            )),
            ("model", model),
        ]
    )  # fmt: skip


# -- servers -------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _start_loopwright(name: str, served: Served, work: Path) -> Iterator[str]:
    d = served.dir
    port = _free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "LOOPWRIGHT_MODEL_NAME": name,
        "LOOPWRIGHT_MODEL_VERSION": "1",
        "LOOPWRIGHT_MODEL_URI": str(d / "model.skops"),
        "LOOPWRIGHT_MODEL_SHA256": served.sha,
        "LOOPWRIGHT_PROFILE_URI": str(d / "profile.json"),
        "LOOPWRIGHT_DRAIN_SECONDS": "0",
    }
    cmd = [str(REPO / ".venv" / "bin" / "python"), "-m", "loopwright.serving"]
    with _process(cmd, env=env, cwd=work, log=work / f"loopwright-{name}.log") as proc:
        url = f"http://127.0.0.1:{port}/v2/models/{name}"
        _wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc, work / f"loopwright-{name}.log")
        yield url


@contextlib.contextmanager
def _start_mlserver(name: str, served: Served, work: Path, *, workers: int) -> Iterator[str]:
    d = work / f"mlserver-{name}-pw{workers}"
    model_dir = d / name
    model_dir.mkdir(parents=True)
    shutil.copy(served.dir / "model.joblib", model_dir / "model.joblib")
    (model_dir / "model-settings.json").write_text(
        json.dumps(
            {
                "name": name,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "1"},
            }
        )
    )
    port = _free_port()
    (d / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": _free_port(),
                "metrics_port": _free_port(),
                "parallel_workers": workers,
                "debug": False,
            }
        )
    )
    cmd = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(d)]
    log = work / f"mlserver-{name}-pw{workers}.log"
    with _process(cmd, env=dict(os.environ), cwd=d, log=log) as proc:
        _wait_ready(f"http://127.0.0.1:{port}/v2/models/{name}/ready", proc, log)
        yield f"http://127.0.0.1:{port}/v2/models/{name}"


@contextlib.contextmanager
def _process(
    cmd: list[str], *, env: dict[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.3)
    raise SystemExit(f"server not ready after {timeout}s:\n{log.read_text()[-3000:]}")


def _predict_once(url: str, body_file: Path) -> object:
    req = urllib.request.Request(
        f"{url}/infer", data=body_file.read_bytes(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        outputs = json.loads(r.read())["outputs"]
    return next(o["data"] for o in outputs if o["name"] == "predict")


# -- load ----------------------------------------------------------------------------------------------


def _wrk(
    wrk: str, url: str, lua: Path, body_file: Path, *, connections: int, seconds: int
) -> tuple[float, float, float, int]:
    proc = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "--latency",
            "-s",
            str(lua),
            f"{url}/infer",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODY_FILE": str(body_file)},
        timeout=seconds + 30,
        check=True,
    )
    out = proc.stdout
    rps = float(_grab(r"Requests/sec:\s+([\d.]+)", out))
    p50 = _ms(_grab(r"\s50%\s+([\d.]+\w+)", out))
    p99 = _ms(_grab(r"\s99%\s+([\d.]+\w+)", out))
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: .*?timeout (\d+)"):
        m = re.search(pattern, out)
        if m:
            errors += int(m.group(1))
    return rps, p50, p99, errors


def _grab(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    if not m:
        raise SystemExit(f"unexpected wrk output:\n{text}")
    return m.group(1)


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise SystemExit(f"cannot read wrk latency {value!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[m.group(2)]


# -- report --------------------------------------------------------------------------------------------


def _context() -> dict[str, str]:
    go = subprocess.run(
        ["pgrep", "-fa", "go build"], capture_output=True, text=True, check=False
    ).stdout.strip()
    pip = [str(MLSERVER_VENV / "bin" / "pip"), "list"]
    ml = subprocess.run(pip, capture_output=True, text=True, check=False).stdout
    versions = " ".join(
        line.split()[0] + "==" + line.split()[1]
        for line in ml.splitlines()
        if line.split()
        and line.split()[0] in {"mlserver", "mlserver-sklearn", "scikit-learn", "uvloop", "fastapi"}
    )
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "`go build` running at start": "yes: " + go.splitlines()[0][:120] if go else "no",
        "busiest other processes at start": _busiest(),
        "MLServer venv": versions or "(not installed)",
    }


def _busiest() -> str:
    """The top CPU users (ps' lifetime average), to say what shared the 2 cores."""
    ps = subprocess.run(
        ["ps", "-eo", "pid=,pcpu=,args=", "--sort=-pcpu"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    rows = [line.split(None, 2) for line in ps if len(line.split(None, 2)) == 3]
    others = [
        (cpu, args) for pid, cpu, args in rows if int(pid) != os.getpid() and not args.startswith("ps ")
    ]
    return "; ".join(f"`{args[:70]}` {cpu}%" for cpu, args in others[:5]) or "n/a"


def _report(
    results: list[Result], *, context: dict[str, str], started: str, duration: int, mlserver_error: str | None
) -> str:
    lines = [
        "# Predictor benchmark: Loopwright vs MLServer 1.7",
        "",
        f"Started {started}. `wrk -t1 -c<C> -d{duration}s --latency`, closed loop, one-row v2 infer body "
        f"(lr, rf: a single [1, {FEATURES}] FP64 tensor; lr-pipeline: one [1, 1] tensor per column, "
        "content_type pd), the same body for every server, all on 127.0.0.1, after a "
        "warm-up run. Loopwright: one process (uvicorn + uvloop + httptools, skops model). MLServer: "
        "`parallel_workers=1` (its default: one inference worker process behind the HTTP process) and "
        "`parallel_workers=0` (inference in the HTTP process), `debug=false` (no access log), joblib model.",
        "",
        "| model | server | clients | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.model} | {r.server} | {r.concurrency} | {r.rps:.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
        f"| {r.errors} |"
        for r in results
    ]
    lines += ["", "## Ratios (Loopwright req/s over the faster MLServer configuration)", ""]
    verdicts: list[str] = []
    for model in sorted({r.model for r in results}):
        for c in CONCURRENCY:
            ours = next(
                (r for r in results if r.model == model and r.server == "loopwright" and r.concurrency == c),
                None,
            )
            theirs = [
                r for r in results if r.model == model and r.server != "loopwright" and r.concurrency == c
            ]
            if ours is None or not theirs:
                continue
            best = max(theirs, key=lambda r: r.rps)
            ratio = ours.rps / best.rps if best.rps else float("inf")
            verdicts.append(
                f"- {model}, {c} client(s): {ratio:.2f}x "
                f"({ours.rps:.0f} vs {best.rps:.0f} req/s, {best.server}); "
                f"target >= {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'NOT met'}"
            )
    lr32 = next(
        (r for r in results if r.model == "lr" and r.server == "loopwright" and r.concurrency == 32), None
    )
    if lr32 is not None:
        verdicts.append(
            f"- lr, 32 clients, Loopwright p99 {lr32.p99_ms:.2f} ms; target < {TARGET_P99_MS} ms: "
            f"{'met' if lr32.p99_ms < TARGET_P99_MS else 'NOT met'}"
        )
    lines += verdicts or ["- (no MLServer figures)"]
    if mlserver_error:
        lines += ["", "## MLServer could not be installed", "", "```", mlserver_error, "```"]
    lines += ["", "## Context", ""]
    context["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    lines += [f"- {k}: {v}" for k, v in context.items()]
    lines += [
        "",
        "The machine has 2 cores shared by the servers, the load generator and whatever else runs (see",
        "above), so absolute figures are noisy; the ratios measured back to back are the meaningful part.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
