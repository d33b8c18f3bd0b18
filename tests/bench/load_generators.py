"""Load generators of the predictor benchmark: wrk (HTTP, JSON or binary bodies) and ghz (gRPC).

Both closed loop: each connection sends its next request when the previous answer arrives.
wrk comes from Debian (installed with apt-get if missing); ghz is built from the Go module proxy
at a pinned version into ~/.cache/loopwright/ghz-<version> (gRPC rows are skipped if it cannot be).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

GHZ_VERSION = "v0.93.0"
GHZ = Path.home() / ".cache" / "loopwright" / f"ghz-{GHZ_VERSION}" / "ghz"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE")
local length = os.getenv("BENCH_HEADER_LENGTH")
if length ~= "" then wrk.headers["Inference-Header-Content-Length"] = length end
wrk.body = io.open(os.getenv("BENCH_BODY_FILE"), "rb"):read("*a")
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("installing wrk (apt-get install -y wrk)", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or _fail("wrk is not installed and apt-get could not install it")


def ensure_ghz() -> str | None:
    """ghz from the Go module proxy (a pinned version); None, with a message, if it cannot be built."""
    if GHZ.exists():
        return str(GHZ)
    if shutil.which("go") is None:
        print("no Go toolchain: gRPC rows skipped", flush=True)
        return None
    print(f"building ghz {GHZ_VERSION} (go install, Go module proxy)", flush=True)
    proc = subprocess.run(
        ["go", "install", f"github.com/bojand/ghz/cmd/ghz@{GHZ_VERSION}"],
        env={**os.environ, "GOBIN": str(GHZ.parent)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        print(f"ghz did not build, gRPC rows skipped:\n{proc.stderr[-2000:]}", flush=True)
        return None
    return str(GHZ)


def wrk(
    wrk: str,
    url: str,
    lua: Path,
    body: Path,
    content_type: str,
    header_length: str,
    connections: int,
    seconds: int,
) -> tuple[float, float, float, int]:
    env = {
        **os.environ,
        "BENCH_BODY_FILE": str(body),
        "BENCH_CONTENT_TYPE": content_type,
        "BENCH_HEADER_LENGTH": header_length,
    }
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
            url,
        ],
        capture_output=True,
        text=True,
        env=env,
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


def ghz(
    ghz: str,
    protoset: Path,
    target: str,
    body: Path,
    concurrency: int,
    seconds: int,
) -> tuple[float, float, float, int]:
    proc = subprocess.run(
        [
            ghz,
            "--insecure",
            "--protoset",
            str(protoset),
            "--call",
            "inference.GRPCInferenceService/ModelInfer",
            "--binary-file",
            str(body),
            "-c",
            str(concurrency),
            "--connections",
            str(concurrency),
            "-z",
            f"{seconds}s",
            "-n",
            "100000000",
            "--duration-stop",
            "wait",
            "--count-errors",
            "-O",
            "json",
            target,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        _fail(f"unexpected ghz output ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    latency = {d["percentage"]: d["latency"] / 1e6 for d in result.get("latencyDistribution") or []}
    errors = sum(n for code, n in (result.get("statusCodeDistribution") or {}).items() if code != "OK")
    return float(result["rps"]), latency.get(50, float("nan")), latency.get(99, float("nan")), errors


def _grab(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else _fail(f"unexpected wrk output:\n{text}")


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        _fail(f"cannot read wrk latency {value!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[m.group(2)]


def _fail(message: str) -> Any:
    raise SystemExit(message)


def protoset(path: Path) -> Path:
    """The v2 service as a FileDescriptorSet for ghz, taken from the Triton client's messages."""
    from google.protobuf import descriptor_pb2  # noqa: PLC0415
    from tritonclient.grpc import service_pb2  # noqa: PLC0415

    files = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(fd: Any) -> None:
        for dep in fd.dependencies:
            add(dep)
        if fd.name not in seen:
            seen.add(fd.name)
            proto = descriptor_pb2.FileDescriptorProto()
            fd.CopyToProto(proto)
            files.file.append(proto)

    add(service_pb2.DESCRIPTOR)
    path.write_bytes(files.SerializeToString())
    return path
