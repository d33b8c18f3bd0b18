"""The training report of one run: its data (the JSON twin) and its HTML page (pure).

What MLflow shows for a run, on one page: the hold-out metrics, the confusion matrix (or the
residuals of a regressor), the training features, the gate decision with every check, and the
comparison with the champion. The gates are the operator's own (:mod:`loopwright.core.training.gates`)
applied to the thresholds and champion the run was given; the ModelVersion's status holds the
registry's final verdict, made after the artifact is verified.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from loopwright import __version__
from loopwright.api.pipeline import LOWER_IS_BETTER, PipelineValidation
from loopwright.core.profile import FeatureKind, Profile
from loopwright.core.training import gates
from loopwright.reports import html, svg
from loopwright.reports.drift import bin_labels
from loopwright.reports.html import e, number

KIND = "TrainingReport"
SCHEMA_VERSION = 1
RESIDUAL_BINS = 12


def gate(
    metrics: Mapping[str, float], *, primary: str | None, given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The gate decision on the run's metrics, with the thresholds and champion in ``given``
    (``{"model", "validation", "champion": {"name", "version", "metrics"} | null}``)."""
    if not given:
        return {"decision": None, "checks": [], "champion": None}
    validation = PipelineValidation.model_validate(given.get("validation") or {})
    raw = given.get("champion")
    incumbent = (
        gates.Incumbent(
            name=str(raw["name"]),
            version=int(raw["version"]),
            metrics={k: float(v) for k, v in (raw.get("metrics") or {}).items()},
        )
        if raw
        else None
    )
    checks = gates.thresholds(metrics, validation)
    champion_check, champion = gates.champion_check(
        metrics, validation, primary_metric=primary, incumbent=incumbent, model=str(given.get("model") or "")
    )
    if champion_check is not None:
        checks.append(champion_check)
    return {
        "decision": "Pass" if all(c.passed for c in checks) else "Reject",
        "checks": [c.to_wire() for c in checks],
        "champion": (
            {**champion.to_wire(), "metrics": dict(incumbent.metrics)}
            if champion is not None and incumbent is not None
            else None
        ),
    }


def residuals(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, Any]:
    """Residuals (actual minus predicted) of a regressor: summary and an equal-width histogram."""
    r = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    if r.size == 0:
        return {"count": 0}
    counts, edges = np.histogram(r, bins=RESIDUAL_BINS)
    return {
        "count": int(r.size),
        "mean": float(r.mean()),
        "std": float(r.std()),
        "meanAbs": float(np.abs(r).mean()),
        "maxAbs": float(np.abs(r).max()),
        "edges": [float(x) for x in edges],
        "counts": [int(c) for c in counts],
    }


def features(profile: Profile) -> list[dict[str, Any]]:
    out = []
    for name, f in profile.features.items():
        row: dict[str, Any] = {
            "name": name,
            "kind": str(f.kind),
            "missing": f.missing,
            "bins": bin_labels(f),
            "counts": list(f.counts),
        }
        if f.kind == FeatureKind.NUMERIC:
            row |= {"mean": f.mean, "std": f.std, "min": f.min, "max": f.max}
        out.append(row)
    return out


def build(
    *,
    result: Mapping[str, Any],
    run: str,
    profile: Profile,
    time: datetime,
    confusion: tuple[Sequence[str], Sequence[Sequence[int]]] | None,
    residual: Mapping[str, Any] | None,
    given_gates: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The report's data from the trainer's result (metrics, rows, parameters) and the pieces above."""
    metrics = {str(k): float(v) for k, v in (result.get("metrics") or {}).items()}
    primary = result.get("primaryMetric")
    return {
        "kind": KIND,
        "schemaVersion": SCHEMA_VERSION,
        "generator": f"loopwright {__version__}",
        "run": run,
        "time": time.isoformat().replace("+00:00", "Z"),
        "task": result.get("task"),
        "estimator": result.get("estimator"),
        "params": result.get("params") or {},
        "seed": result.get("seed"),
        "testFraction": result.get("testFraction"),
        "stratified": result.get("stratified"),
        "dataset": result.get("dataset") or {},
        "rows": result.get("rows") or {},
        "metrics": metrics,
        "primaryMetric": primary,
        "skippedMetrics": result.get("skippedMetrics") or {},
        "confusionMatrix": {
            "classes": list(confusion[0]),
            "matrix": [list(map(int, r)) for r in confusion[1]],
        }
        if confusion
        else None,
        "residuals": dict(residual) if residual else None,
        "features": features(profile),
        "gate": gate(metrics, primary=primary, given=given_gates),
        "fitSeconds": result.get("fitSeconds"),
        "versions": result.get("versions") or {},
        "factory": result.get("factory"),
        "search": result.get("search"),
    }


def _gate_banner(gate_: Mapping[str, Any]) -> str:
    checks = gate_.get("checks") or []
    failed = [c for c in checks if not c.get("passed")]
    if gate_.get("decision") is None:
        return html.banner(
            "No gates were given to this run", "the ModelVersion's status holds the verdict", "warn"
        )
    if failed:
        return html.banner(
            f"Rejected by its gates: {len(failed)} of {len(checks)} checks failed",
            "; ".join(f"{c.get('name')}: {c.get('message')}" for c in failed),
            "bad",
        )
    return html.banner(
        f"Passes its gates: {len(checks)} of {len(checks)} checks",
        "; ".join(f"{c.get('name')}: {c.get('message')}" for c in checks),
        "ok",
    )


def _metrics_table(data: Mapping[str, Any]) -> str:
    champion = (data.get("gate") or {}).get("champion") or {}
    theirs = champion.get("metrics") or {}
    rows = []
    for name, value in sorted(
        (data.get("metrics") or {}).items(), key=lambda kv: kv[0] != data.get("primaryMetric")
    ):
        other = theirs.get(name)
        delta = None if other is None else value - other
        better = delta is not None and (delta < 0 if name in LOWER_IS_BETTER else delta > 0)
        rows.append(
            [
                e(name) + (" " + html.pill("primary", "none") if name == data.get("primaryMetric") else ""),
                number(value),
                number(other),
                "" if delta is None else html.pill(f"{delta:+.4f}", "ok" if better or delta == 0 else "bad"),
            ]
        )
    head = f"Champion {champion.get('name')}" if champion else "Champion"
    return html.table(["Metric", "This run", head, "Difference"], rows, numeric=(1, 2))


def _feature_cards(rows: Sequence[Mapping[str, Any]]) -> str:
    cards = []
    for f in rows:
        if f.get("kind") == "numeric":
            detail = (
                f"mean {number(f.get('mean'))} · std {number(f.get('std'))} · range {number(f.get('min'))} "
                f"to {number(f.get('max'))} · missing {number(f.get('missing'))}"
            )
        else:
            detail = f"{len(f.get('bins') or ()) - 1} categories · missing {number(f.get('missing'))}"
        cards.append(
            f'<div class="card"><h3>{e(f.get("name"))} {html.pill(str(f.get("kind")), "none")}</h3>'
            f'<div class="legend">{e(detail)}</div>'
            + svg.bars(f.get("bins") or [], f.get("counts") or [], title=str(f.get("name")), colour=svg.REF)
            + "</div>"
        )
    return '<div class="cards">' + "".join(cards) + "</div>"


def _search_section(search: Mapping[str, Any]) -> str:
    """The trials of the run's search: parameters, validation score, and which one was trained."""
    best = search.get("best")
    rows = [[e(t.get("index")), e(json.dumps(t.get("params") or {}, sort_keys=True)), number(t.get("score")),
             html.pill("trained", "ok") if t.get("index") == best
             else html.pill("failed", "bad") if t.get("phase") == "Failed" else "",
             e(t.get("message") or "")]
            for t in search.get("trials") or ()]
    title = f"Hyperparameter search ({len(rows)} trials, {search.get('metric')} on the validation split)"
    return html.section(title, html.table(["Trial", "Parameters", "Score", "", "Why"], rows, numeric=(0, 2)))


def render(data: Mapping[str, Any]) -> str:
    gate_ = data.get("gate") or {}
    rows = data.get("rows") or {}
    metrics = data.get("metrics") or {}
    primary = data.get("primaryMetric")
    dataset = data.get("dataset") or {}
    body = [
        _gate_banner(gate_),
        html.facts(
            [
                (f"{primary} (primary)", number(metrics.get(str(primary)))),
                ("Training rows", number(rows.get("train"))),
                ("Hold-out rows", number(rows.get("test"))),
                ("Unlabelled rows dropped", number(rows.get("droppedUnlabelled"))),
                ("Seed", data.get("seed")),
                ("Fit", f"{number(data.get('fitSeconds'))} s"),
            ]
        ),
        html.section("Metrics on the hold-out", _metrics_table(data)),
    ]
    if gate_.get("checks"):
        body.append(
            html.section(
                "Gate",
                html.table(
                    ["Check", "Value", "Threshold", "Verdict", "Why"],
                    [
                        [
                            e(c.get("name")),
                            number(c.get("value")),
                            number(c.get("threshold")),
                            html.pill("passed", "ok") if c.get("passed") else html.pill("failed", "bad"),
                            e(c.get("message")),
                        ]
                        for c in gate_["checks"]
                    ],
                    numeric=(1, 2),
                ),
            )
        )
    cm = data.get("confusionMatrix")
    if cm:
        body.append(
            html.section("Confusion matrix (hold-out)", svg.confusion_matrix(cm["classes"], cm["matrix"]))
        )
    res = data.get("residuals")
    if res and res.get("count"):
        edges = res.get("edges") or []
        labels = [number(a, 3) for a in edges[:-1]]
        body.append(
            html.section(
                "Residuals (actual minus predicted, hold-out)",
                html.facts(
                    [
                        ("Mean", number(res.get("mean"))),
                        ("Std", number(res.get("std"))),
                        ("Mean absolute", number(res.get("meanAbs"))),
                        ("Largest absolute", number(res.get("maxAbs"))),
                    ]
                ),
                svg.bars(labels, res.get("counts") or [], title="residuals"),
            )
        )
    search = data.get("search")
    if search:
        body.append(_search_section(search))
    body.append(html.section("Training features", _feature_cards(data.get("features") or [])))
    params = data.get("params") or {}
    body.append(
        html.section(
            "Parameters",
            html.table(
                ["Name", "Value"],
                [
                    [e(k), e(v)]
                    for k, v in [
                        ("estimator", data.get("estimator") or data.get("factory")),
                        *sorted(params.items()),
                        ("testFraction", data.get("testFraction")),
                        ("stratified", data.get("stratified")),
                        *sorted((data.get("versions") or {}).items()),
                    ]
                ],
            ),
        )
    )
    when = str(data.get("time", "")).replace("T", " ").replace("Z", " UTC")
    return html.page(
        title=f"Training report: {data.get('run')}",
        subtitle=f"{data.get('estimator') or data.get('factory')} · {data.get('task')} · data "
        f"{str(dataset.get('digest', ''))[7:19]} ({dataset.get('uri')}) · trained {when}",
        body=body,
        footer=f"{e(data.get('generator'))} · the same data as JSON: the .json object next to this file "
        "· the ModelVersion's status holds the registry's verdict, made after its artifact is verified",
    )
