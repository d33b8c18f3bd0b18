"""Benchmark: this predictor against today's (b44fee7) and MLServer 1.7, same models, same load, one run.

Not a test. Models (see predictor_servers.py): a logistic regression and a 100-tree random forest
on 10 numeric features, and a logistic regression in the trainer's pipeline shape. Servers, all on
127.0.0.1: ``loopwright`` (this checkout, serving the compiled artifact), ``loopwright b44fee7``
(today's predictor from a detached worktree, skops artifact), MLServer with ``parallel_workers``
1 (its default) and 0. Measured:

* start: process start to the first 200 from the readiness endpoint (polled every 5 ms), median
  of ``--starts`` starts per server and model; resident memory (the whole process tree, from
  /proc) at that moment and after the load runs;
* throughput and latency, closed loop, one-row requests, at 1 and 32 concurrent clients: v2 JSON
  with ``wrk`` (every server); the binary tensor extension with ``wrk`` (the body Triton's
  client sends by default; MLServer does not implement the extension, so it is compared with
  MLServer's JSON); v2 gRPC with ``ghz`` (v0.93.0, built from the Go module proxy into
  ~/.cache/loopwright/ghz-0.93.0 if absent), typed contents, one HTTP/2 connection per client.

    .venv/bin/python tests/bench/bench_predictor.py [--duration 10] [--quick]

Writes reports/bench-predictor.md and prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import comparison_venv
import load_generators as load
import predictor_servers as ps

REPORT = ps.REPO / "reports" / "bench-predictor.md"
CONCURRENCY = (1, 32)
# The design brief's numbers to beat.
TARGET_RATIO = {"lr": 10.0, "rf": 30.0}
TARGET_P99_MS = 5.0
NO_WORSE_TOLERANCE = 0.95  # "no worse than today": rounds of one server differ by up to ~5 % here
TARGET_READY_S = 0.5
TARGET_RSS_MB = 100.0
OURS, TODAY, MLSERVER = "loopwright", f"loopwright {ps.BASELINE}", "mlserver"


@dataclass
class Load:
    model: str
    server: str
    protocol: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Start:
    model: str
    server: str
    ready_s: list[float]
    rss_ready_mb: list[float]
    cpu_ready_s: list[float] = field(default_factory=list)
    rss_loaded_mb: float | None = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument("--starts", type=int, default=5, help="starts per server and model (default 5)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per measurement (default 3)"
    )
    parser.add_argument("--quick", action="store_true", help="3 s runs and 2 starts, for trying the script")
    parser.add_argument("--models", default="lr,rf,lr-pipeline", help="comma list (default: all three)")
    parser.add_argument("--no-mlserver", action="store_true", help="only the Loopwright predictors")
    args = parser.parse_args()
    duration, starts = (3, 2) if args.quick else (args.duration, args.starts)
    wrk, ghz = load.ensure_wrk(), load.ensure_ghz()
    mlserver_error = (
        "skipped (--no-mlserver)"
        if args.no_mlserver
        else comparison_venv.ensure(ps.MLSERVER_VENV, ps.MLSERVER_PACKAGES)
    )
    started, context = time.strftime("%Y-%m-%d %H:%M:%S %Z"), _context()
    loads: list[Load] = []
    boots: list[Start] = []
    with tempfile.TemporaryDirectory(prefix="lw-bench-predictor-") as tmp:
        work = Path(tmp)
        models = ps.train(work)
        lua = work / "post.lua"
        lua.write_text(load.LUA)
        protoset = load.protoset(work / "v2.protoset")
        with ps.baseline_checkout(work) as baseline:
            for name, served in models.items():
                if name not in args.models.split(","):
                    continue
                servers: list[tuple[str, Callable[[], Any]]] = [
                    (OURS, lambda n=name, s=served: ps.loopwright(n, s, work, label=OURS)),
                    (TODAY, lambda n=name, s=served: ps.loopwright(n, s, work, label=TODAY, source=baseline)),
                ]
                if mlserver_error is None:
                    servers += [
                        (
                            f"{MLSERVER} pw={w}",
                            lambda n=name, s=served, w=w: ps.mlserver(
                                n, s, work, workers=w, label=f"{MLSERVER} pw={w}"
                            ),
                        )
                        for w in (1, 0)
                    ]
                answers: dict[str, Any] = {}
                # Starts interleaved across servers, so a change in the machine's load hits all alike.
                model_boots = {label: Start(name, label, [], []) for label, _ in servers}
                for _ in range(starts):
                    for label, start in servers:
                        with start() as running:
                            model_boots[label].ready_s.append(running.ready_seconds)
                            model_boots[label].rss_ready_mb.append(running.rss_ready_mb)
                            model_boots[label].cpu_ready_s.append(running.cpu_ready_seconds)
                # Then every server runs at once (idle while another is measured) and each
                # measurement alternates between them in rounds; medians are reported.
                with contextlib.ExitStack() as stack:
                    running_all = [stack.enter_context(start()) for _, start in servers]
                    for running in running_all:
                        answers[running.label] = _predict_once(running, name, served)
                    runs = {r.label: _runs(wrk, ghz, protoset, lua, r, name, served) for r in running_all}
                    loads += _measure(runs, name, duration=duration, warmup=args.warmup, rounds=args.rounds)
                    for running in running_all:
                        model_boots[running.label].rss_loaded_mb = running.rss_mb()
                boots += model_boots.values()
                if len({json.dumps(a) for a in answers.values()}) != 1:
                    print(f"WARNING: servers disagree on the prediction for {name}: {answers}", flush=True)
                context[f"prediction ({name})"] = json.dumps(answers)
    report = _report(
        loads,
        boots,
        context=context,
        started=started,
        duration=duration,
        starts=starts,
        mlserver_error=mlserver_error,
    )
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(report)
    print(report)


Run = Callable[[int, int], tuple[float, float, float, int]]


def _runs(
    wrk: str, ghz: str | None, protoset: Path, lua: Path, running: ps.Running, name: str, served: ps.Served
) -> dict[str, Run]:
    """The load generators that apply to one server: protocol -> run(clients, seconds)."""
    url = f"http://127.0.0.1:{running.http}/v2/models/{name}/infer"
    json_body = served.json_body
    runs: dict[str, Run] = {
        "http json": lambda c, s: load.wrk(wrk, url, lua, json_body, "application/json", "", c, s),
    }
    if running.label == OURS and served.binary_body is not None:
        body, length = served.binary_body, str(served.binary_header_length)
        octets = "application/octet-stream"
        runs["http binary"] = lambda c, s: load.wrk(wrk, url, lua, body, octets, length, c, s)
    if running.grpc is not None and ghz is not None and served.grpc_body is not None:
        target, grpc_body = f"127.0.0.1:{running.grpc}", served.grpc_body
        runs["grpc"] = lambda c, s: load.ghz(ghz, protoset, target, grpc_body, c, s)
    return runs


def _measure(
    runs: dict[str, dict[str, Run]], name: str, *, duration: int, warmup: int, rounds: int
) -> list[Load]:
    """Every (protocol, clients) cell: ``rounds`` rounds alternating between the servers."""
    out: list[Load] = []
    protocols = sorted({p for by_protocol in runs.values() for p in by_protocol})
    for protocol in protocols:
        servers = [label for label, by_protocol in runs.items() if protocol in by_protocol]
        for label in servers:
            runs[label][protocol](32, warmup)
        for c in CONCURRENCY:
            samples: dict[str, list[tuple[float, float, float, int]]] = {label: [] for label in servers}
            for _ in range(rounds):
                for label in servers:
                    samples[label].append(runs[label][protocol](c, max(1, round(duration / rounds))))
            for label in servers:
                got = samples[label]
                rps = statistics.median(g[0] for g in got)
                p50 = statistics.median(g[1] for g in got)
                p99 = statistics.median(g[2] for g in got)
                errors = sum(g[3] for g in got)
                out.append(Load(name, label, protocol, c, rps, p50, p99, errors))
                print(
                    f"{name:11} {label:20} {protocol:11} c={c:<3} {rps:9.0f} req/s p50 {p50:7.2f} ms "
                    f"p99 {p99:7.2f} ms errors {errors}",
                    flush=True,
                )
    return out


def _predict_once(running: ps.Running, name: str, served: ps.Served) -> object:
    req = urllib.request.Request(
        f"http://127.0.0.1:{running.http}/v2/models/{name}/infer",
        data=served.json_body.read_bytes(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        outputs = json.loads(r.read())["outputs"]
    return next(o["data"] for o in outputs if o["name"] == "predict")


# -- load generators -----------------------------------------------------------------------------------


# -- report --------------------------------------------------------------------------------------------


def _context() -> dict[str, str]:
    go = subprocess.run(
        ["pgrep", "-fa", "go build"], capture_output=True, text=True, check=False
    ).stdout.strip()
    pip = subprocess.run(
        [str(ps.MLSERVER_VENV / "bin" / "pip"), "list"], capture_output=True, text=True, check=False
    ).stdout
    versions = " ".join(
        line.split()[0] + "==" + line.split()[1]
        for line in pip.splitlines()
        if line.split() and line.split()[0] in {"mlserver", "mlserver-sklearn", "scikit-learn", "uvloop"}
    )
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load average at start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "`go build` running at start": "yes: " + go.splitlines()[0][:120] if go else "no",
        "MLServer venv": versions or "(not installed)",
    }


def _best(loads: list[Load], model: str, c: int, match: Callable[[Load], bool]) -> Load | None:
    found = [r for r in loads if r.model == model and r.concurrency == c and match(r)]
    return max(found, key=lambda r: r.rps) if found else None


def _report(
    loads: list[Load],
    boots: list[Start],
    *,
    context: dict[str, str],
    started: str,
    duration: int,
    starts: int,
    mlserver_error: str | None,
) -> str:
    lines = [
        f"# Predictor benchmark: Loopwright (compiled) vs today's predictor ({ps.BASELINE}) vs MLServer 1.7",
        "",
        f"Started {started}. One-row requests, closed loop, after a warm-up run; "
        f"`wrk -t1 -c<C> -d{duration}s` for HTTP, `ghz -c<C> --connections <C>` for gRPC; all servers on "
        f"127.0.0.1. Bodies: lr, rf: one [1, {ps.FEATURES}] FP64 tensor (JSON; binary: the extension's "
        "header plus 80 bytes, outputs binary; gRPC: typed fp64_contents); lr-pipeline: one [1, 1] tensor "
        "per column, content_type pd.",
        "",
        "## Start and memory",
        "",
        f"Process start to readiness 200 (median of {starts} starts, interleaved across servers, and "
        "min-max), the CPU time the process tree spent until then (independent of what else loads the "
        "machine), its resident memory at that moment (median) and after the load runs.",
        "",
        "| model | server | ready s (median) | min-max | CPU s to ready | RSS at ready MB "
        "| RSS after load MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for b in boots:
        lines.append(
            f"| {b.model} | {b.server} | {statistics.median(b.ready_s):.3f} | {min(b.ready_s):.3f}-"
            f"{max(b.ready_s):.3f} | {statistics.median(b.cpu_ready_s):.2f} | "
            f"{statistics.median(b.rss_ready_mb):.1f} | {b.rss_loaded_mb or 0:.1f} |"
        )
    lines += [
        "",
        "## Throughput and latency",
        "",
        "| model | server | protocol | clients | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r.model} | {r.server} | {r.protocol} | {r.concurrency} | {r.rps:.0f} | {r.p50_ms:.2f} | "
        f"{r.p99_ms:.2f} | {r.errors} |"
        for r in loads
    ]
    lines += ["", "## Verdicts", ""]
    lines += _verdicts(loads, boots)
    if mlserver_error:
        lines += ["", "## MLServer was not measured", "", "```", mlserver_error, "```"]
    context["load average at end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    lines += [
        "",
        "## Context",
        "",
        *(f"- {k}: {v}" for k, v in context.items()),
        "",
        "2 cores are shared by the servers, the load generator and whatever else runs, so absolute "
        "figures are noisy; the ratios measured back to back in one run are the meaningful part.",
        "",
    ]
    return "\n".join(lines)


def _verdicts(loads: list[Load], boots: list[Start]) -> list[str]:
    out: list[str] = []

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    for model in sorted({r.model for r in loads}):
        for c in CONCURRENCY:
            mls_json = _best(
                loads, model, c, lambda r: r.server.startswith(MLSERVER) and r.protocol == "http json"
            )
            today = _best(loads, model, c, lambda r: r.server == TODAY)
            for protocol in ("http json", "http binary", "grpc"):
                ours = _best(loads, model, c, lambda r, p=protocol: r.server == OURS and r.protocol == p)
                if ours is None:
                    continue
                theirs = (
                    mls_json
                    if protocol != "grpc"
                    else _best(
                        loads, model, c, lambda r: r.server.startswith(MLSERVER) and r.protocol == "grpc"
                    )
                )
                parts = [f"- {model}, {c} client(s), {protocol}: {ours.rps:.0f} req/s"]
                if theirs is not None and theirs.rps:
                    ratio = ours.rps / theirs.rps
                    target = TARGET_RATIO.get(model)
                    parts.append(
                        f"{ratio:.1f}x MLServer {theirs.protocol} ({theirs.server}, {theirs.rps:.0f})"
                    )
                    if target is not None and c == 32:
                        parts.append(f"target >= {target:g}x: {met(ratio >= target)}")
                if today is not None and protocol == "http json":
                    parts.append(
                        f"{ours.rps / today.rps:.2f}x today's predictor ({today.rps:.0f}); "
                        f"no worse (5 % tolerance): {met(ours.rps >= NO_WORSE_TOLERANCE * today.rps)}"
                    )
                if c == 32 and model == "lr":
                    parts.append(
                        f"p99 {ours.p99_ms:.2f} ms, target < {TARGET_P99_MS:g} ms: "
                        f"{met(ours.p99_ms < TARGET_P99_MS)}"
                    )
                out.append("; ".join(parts))
    for b in boots:
        if b.server != OURS:
            continue
        ready, rss = statistics.median(b.ready_s), max([*b.rss_ready_mb, b.rss_loaded_mb or 0])
        out.append(
            f"- {b.model}: ready in {ready:.3f} s (target <= {TARGET_READY_S} s: "
            f"{met(ready <= TARGET_READY_S)}), at most {rss:.1f} MB resident (target < {TARGET_RSS_MB:g} MB: "
            f"{met(rss < TARGET_RSS_MB)})"
        )
    return out or ["- (nothing measured)"]


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so every server, worktree and temporary directory is cleaned up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        main()
