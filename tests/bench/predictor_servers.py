"""The predictor benchmark's models and servers: training, artifacts, request bodies, processes.

Three servers get the same models: this checkout's predictor (serving the compiled artifact),
today's predictor (the code of ``BASELINE``, run from a detached worktree with the same
virtualenv, serving the skops artifact, as it did) and MLServer 1.7 with its sklearn runtime
(joblib, its own format) in its own virtualenv, with ``parallel_workers`` 1 (its default) and 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
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

from loopwright import artifacts, storage
from loopwright.api.schema import ColumnSpec, ColumnType, DatasetSchema, LabelSpec, TaskType
from loopwright.compiled import compiler
from loopwright.core.profile import Profile, profile_categorical, profile_numeric

REPO = Path(__file__).resolve().parents[2]
BASELINE = "b44fee7"
MLSERVER_VENV = REPO / ".venv-bench-mlserver"
# uvloop 0.22 breaks MLServer 1.7.1's parallel workers ("There is no current event loop",
# SeldonIO/MLServer#2286); 0.21 is the last release it works with.
MLSERVER_PACKAGES = ("mlserver==1.7.*", "mlserver-sklearn==1.7.*", "uvloop<0.22")
FEATURES = 10


@dataclass
class Served:
    """One model as every server gets it, and the request bodies all of them receive."""

    dir: Path
    sha: str
    compiled_sha: str
    json_body: Path
    binary_body: Path | None = None
    binary_header_length: int = 0
    grpc_body: Path | None = None  # a serialised ModelInferRequest (typed contents)


@dataclass
class Running:
    label: str
    proc: subprocess.Popen[bytes]
    http: int
    grpc: int | None
    ready_seconds: float
    rss_ready_mb: float
    cpu_ready_seconds: float

    def rss_mb(self) -> float:
        return tree_rss_mb(self.proc.pid)


def train(work: Path) -> dict[str, Served]:
    """A logistic regression and a 100-tree forest on 10 numeric features, and a logistic regression
    in the trainer's pipeline shape (imputer + scaler, imputer + one-hot on one categorical column)."""
    x, y = make_classification(n_samples=5000, n_features=FEATURES, n_informative=6, random_state=0)
    names = [f"f{i}" for i in range(FEATURES)]
    numeric = [ColumnSpec(name=n, type=ColumnType.NUMERIC) for n in names]
    row = x[1].tolist()
    # A one-row v2 body as MLServer's NumpyCodec sends it: one [1, F] tensor.
    matrix_body = {"inputs": [{"name": "input-0", "shape": [1, FEATURES], "datatype": "FP64", "data": [row]}]}
    frame = pd.DataFrame(x, columns=names)
    frame["c"] = np.array(["a", "b", "c", "d", "e"], dtype=object)[(x[:, 0] > 0) + 2 * (x[:, 1] > 0)]
    # The trainer's model shape takes a DataFrame: MLServer's PandasCodec body, for both.
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
        compiled_sha = storage.put_bytes(str(d / "model.lwc"), compiler.dumps(est))
        classes = [str(c) for c in est.classes_]
        schema = DatasetSchema(label=LabelSpec(name="y", task=TaskType.CLASSIFICATION), columns=columns)
        features = {n: profile_numeric(x[:, j]) for j, n in enumerate(names)}
        if isinstance(data, pd.DataFrame):
            features["c"] = profile_categorical(data["c"].to_numpy())
        profile = Profile(
            rows=len(x),
            features=features,
            schema=schema,
            task=TaskType.CLASSIFICATION,
            prediction=profile_categorical([str(p) for p in est.predict(data)], categories=classes),
            classes=classes,
        )
        (d / "profile.json").write_text(json.dumps(profile.to_wire()))
        (d / "body.json").write_text(json.dumps(body))
        served = Served(dir=d, sha=model_sha, compiled_sha=compiled_sha, json_body=d / "body.json")
        if name != "lr-pipeline":
            served.binary_body, served.binary_header_length = _binary_body(d, row)
            served.grpc_body = _grpc_body(d, name, row)
        out[name] = served
    return out


def _trainer_shaped(model: Any, numeric: list[str], categorical: list[str]) -> Any:
    """What loopwright.jobs.trainer builds from a schema (see its ``_pipeline``)."""
    return Pipeline([
        ("preprocess", ColumnTransformer([
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                                  ("scale", StandardScaler())]), numeric),
            ("categorical", Pipeline([
                ("impute", SimpleImputer(strategy="most_frequent", keep_empty_features=True)),
                ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=True)),
            ]), categorical),
        ], sparse_threshold=0.3)),
        ("model", model),
    ])  # fmt: skip


def _binary_body(d: Path, row: list[float]) -> tuple[Path, int]:
    """The [1, F] tensor as Triton's HTTP client sends it by default: binary, outputs binary too."""
    data = struct.pack(f"<{len(row)}d", *row)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": [1, len(row)],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(data)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    (d / "body.bin").write_bytes(header + data)
    return d / "body.bin", len(header)


def _grpc_body(d: Path, name: str, row: list[float]) -> Path:
    """A ModelInferRequest with typed contents (what both servers read), serialised."""
    from tritonclient.grpc import service_pb2  # noqa: PLC0415 - the protocol's public messages

    tensor = service_pb2.ModelInferRequest.InferInputTensor(
        name="input-0",
        datatype="FP64",
        shape=[1, len(row)],
        contents=service_pb2.InferTensorContents(fp64_contents=row),
    )
    (d / "grpc.bin").write_bytes(
        service_pb2.ModelInferRequest(model_name=name, inputs=[tensor]).SerializeToString()
    )
    return d / "grpc.bin"


# -- processes -----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (MLServer runs worker processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of the process tree, from /proc."""
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU time of the process tree so far, from /proc."""
    ticks = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def baseline_checkout(work: Path) -> Iterator[Path]:
    """Today's predictor: a detached worktree of ``BASELINE``, removed afterwards."""
    path = work / f"loopwright-{BASELINE}"
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", "--force", str(path), BASELINE],
        check=True,
        capture_output=True,
    )
    try:
        yield path / "operator"
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )


@contextlib.contextmanager
def loopwright(
    name: str, served: Served, work: Path, *, label: str, source: Path | None = None
) -> Iterator[Running]:
    """This checkout's predictor on the compiled model, or (``source``) another checkout's on skops."""
    d = served.dir
    http, grpc = free_port(), free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(http),
        "GRPC_PORT": str(grpc),
        "LOOPWRIGHT_MODEL_NAME": name,
        "LOOPWRIGHT_MODEL_VERSION": "1",
        "LOOPWRIGHT_MODEL_URI": str(d / "model.skops"),
        "LOOPWRIGHT_MODEL_SHA256": served.sha,
        "LOOPWRIGHT_PROFILE_URI": str(d / "profile.json"),
        "LOOPWRIGHT_DRAIN_SECONDS": "0",
    }
    if source is None:
        env |= {
            "LOOPWRIGHT_COMPILED_URI": str(d / "model.lwc"),
            "LOOPWRIGHT_COMPILED_SHA256": served.compiled_sha,
        }
    else:
        env["PYTHONPATH"] = str(source)
    cmd = [str(REPO / ".venv" / "bin" / "python"), "-m", "loopwright.serving"]
    log = work / f"{label}-{name}.log".replace(" ", "_")
    with _process(
        cmd,
        env=env,
        cwd=work,
        log=log,
        label=label,
        http=http,
        grpc=grpc if source is None else None,
        ready=f"http://127.0.0.1:{http}/v2/health/ready",
    ) as running:
        yield running


@contextlib.contextmanager
def mlserver(name: str, served: Served, work: Path, *, workers: int, label: str) -> Iterator[Running]:
    d = work / f"mlserver-{name}-pw{workers}-{time.monotonic_ns()}"
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
    http, grpc = free_port(), free_port()
    (d / "settings.json").write_text(
        json.dumps(
            {
                "host": "127.0.0.1",
                "http_port": http,
                "grpc_port": grpc,
                "metrics_port": free_port(),
                "parallel_workers": workers,
                "debug": False,
            }
        )
    )
    cmd = [str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(d)]
    with _process(
        cmd,
        env=dict(os.environ),
        cwd=d,
        log=work / f"mlserver-{name}-pw{workers}.log",
        label=label,
        http=http,
        grpc=grpc,
        ready=f"http://127.0.0.1:{http}/v2/models/{name}/ready",
    ) as running:
        yield running


@contextlib.contextmanager
def _process(
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log: Path,
    label: str,
    http: int,
    grpc: int | None,
    ready: str,
) -> Iterator[Running]:
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            seconds = _wait_ready(ready, proc, log, started)
            rss, cpu = tree_rss_mb(proc.pid), tree_cpu_seconds(proc.pid)
            yield Running(label, proc, http, grpc, seconds, rss, cpu)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _wait_ready(
    url: str, proc: subprocess.Popen[bytes], log: Path, started: float, timeout: float = 180
) -> float:
    """Seconds from the process start to the first 200 (polled every 5 ms)."""
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return time.perf_counter() - started
        time.sleep(0.005)
    raise SystemExit(f"server not ready after {timeout}s:\n{log.read_text()[-3000:]}")
