"""The drift report of one check: the data (the JSON twin) and its HTML page (pure).

As Evidently's data drift report does, it shows per feature the reference against the current
distribution, the statistic and the threshold it was judged against, and the prediction drift.
Unlike Evidently it needs no raw data: both histograms are counts in the bins frozen in the
training profile, the very numbers the verdict was computed from.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from loopwright import __version__
from loopwright.api.driftpolicy import DriftPolicySpec
from loopwright.core.drift.check import Outcome
from loopwright.core.drift.window import Counts
from loopwright.core.profile import FeatureKind, FeatureProfile, Profile
from loopwright.reports import html, svg
from loopwright.reports.html import e, number

KIND = "DriftReport"
SCHEMA_VERSION = 1


def report_uri(*, bucket: str, namespace: str, model: str, policy: str, time: datetime) -> str:
    """Where a check's report goes: next to the model's runs, one object per check."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ")
    return f"s3://{bucket}/models/{namespace}/{model}/drift/{policy}/{stamp}.html"


def bin_labels(feature: FeatureProfile) -> list[str]:
    """Readable bins: ``< 3``, ``3 to 10``, ``≥ 50`` for numbers; the categories and ``(other)``."""
    if feature.kind == FeatureKind.CATEGORICAL:
        return [*(feature.categories or ()), "(other)"]
    edges = feature.edges or []
    if not edges:
        return ["all"]
    inner = [f"{number(a, 3)} to {number(b, 3)}" for a, b in itertools.pairwise(edges)]
    return [f"< {number(edges[0], 3)}", *inner, f"≥ {number(edges[-1], 3)}"]


def _distribution(profile: FeatureProfile, current: Sequence[int] | None,
                  missing: int | None) -> dict[str, Any]:
    return {"kind": str(profile.kind), "bins": bin_labels(profile), "reference": list(profile.counts),
            "current": list(current) if current is not None else None,
            "missing": {"reference": profile.missing, "current": missing}}


def build(
    *,
    spec: DriftPolicySpec,
    outcome: Outcome,
    profile: Profile,
    counts: Counts,
    policy: str,
    namespace: str,
    deployment: str,
    model_version: str,
    time: datetime,
    retrain: Mapping[str, str] | None,
) -> dict[str, Any]:
    """The report's data: every number behind the verdict, with both histograms per feature."""
    current = counts.features(profile)
    report = outcome.report
    features = []
    for result in report.features:
        feature = profile.features[result.name]
        missing = round(counts.get(("missing", result.name))) if result.name in current else None
        features.append({**result.to_wire(), **_distribution(feature, current.get(result.name), missing)})
    prediction = None
    if report.prediction is not None and profile.prediction is not None:
        prediction = {**report.prediction.to_wire(),
                      **_distribution(profile.prediction, counts.prediction(profile), None)}
    return {
        "kind": KIND, "schemaVersion": SCHEMA_VERSION, "generator": f"loopwright {__version__}",
        "namespace": namespace, "policy": policy, "deployment": deployment, "modelVersion": model_version,
        "time": time.isoformat().replace("+00:00", "Z"), "window": spec.window, "samples": outcome.samples,
        "minSamples": spec.min_samples, "drifted": outcome.drifted, "driftShare": report.drift_share,
        "driftShareThreshold": spec.drift_share, "datasetDrift": report.dataset_drift,
        "consecutive": outcome.consecutive, "consecutiveNeeded": spec.consecutive,
        "confirmed": outcome.confirmed,
        "features": features, "prediction": prediction,
        "performance": outcome.performance.to_wire() if outcome.performance is not None else None,
        "retrain": dict(retrain) if retrain else None,
    }


def _statistic(row: Mapping[str, Any]) -> str:
    value, threshold = row.get("statistic"), row.get("threshold")
    if value is None:
        return "no data"
    if row.get("method") == "chiSquared":
        return f"p-value {number(value)} {'<' if row.get('drifted') else '≥'} {number(threshold)}"
    return f"{row.get('method')} {number(value)} {'>' if row.get('drifted') else '≤'} {number(threshold)}"


def _verdict(row: Mapping[str, Any]) -> str:
    if row.get("statistic") is None:
        return html.pill("no data", "none")
    return html.pill("drifted", "bad") if row.get("drifted") else html.pill("ok", "ok")


def _card(title: str, row: Mapping[str, Any]) -> str:
    ref_n = sum(row.get("reference") or ())
    cur_n = sum(row.get("current") or ()) if row.get("current") is not None else None
    missing = row.get("missing") or {}
    detail = (f"{_statistic(row)} · reference {number(ref_n)}, current {number(cur_n)} values"
              + (f" · missing {number(missing.get('reference'))} / {number(missing.get('current'))}"
                 if missing.get("current") is not None else ""))
    chart = "<p>No current values in the window.</p>"
    if row.get("current") is not None:
        chart = svg.paired_histogram(row.get("bins") or [], row.get("reference") or [], row["current"],
                                     title=f"{title}: reference against current",
                                     drifted=bool(row.get("drifted")))
    tone = " bad" if row.get("drifted") else ""
    return (f'<div class="card{tone}"><h3>{e(title)} {_verdict(row)}</h3>'
            f'<div class="legend">{e(detail)}</div>{chart}</div>')


def render(data: Mapping[str, Any]) -> str:
    """The HTML page of a report's data."""
    features = data.get("features") or []
    drifted = [f for f in features if f.get("drifted")]
    judged = [f for f in features if f.get("statistic") is not None]
    share, limit = data.get("driftShare"), data.get("driftShareThreshold")
    prediction = data.get("prediction")
    when = str(data.get("time", "")).replace("T", " ").replace("Z", " UTC")
    if data.get("drifted") is None:
        tone, headline = "warn", "Not enough data for a verdict"
    elif data.get("drifted"):
        tone = "bad"
        headline = ("Drift confirmed" if data.get("confirmed") else "Drift detected") + (
            f": {len(drifted)} of {len(judged)} features drifted")
    else:
        tone, headline = "ok", f"No drift: {len(drifted)} of {len(judged)} features drifted"
    detail = (f"drift share {number(share)} against {number(limit)}; "
              f"{data.get('consecutive')} of {data.get('consecutiveNeeded')} drifting checks in a row")
    if prediction and prediction.get("statistic") is not None:
        detail += f"; predictions: {_statistic(prediction)}"
    retrain = data.get("retrain")
    if retrain:
        detail += (f". This check requested a retrain of TrainingPipeline {retrain.get('pipeline')} "
                   f"(request {retrain.get('token')}, trigger {retrain.get('trigger')}).")
    rows = [[e(f.get("name")), e(f.get("method")), number(f.get("statistic")), number(f.get("threshold")),
             "" if f.get("method") == "chiSquared" else  # a p-value: no distance to draw
             svg.threshold_bar(f.get("statistic"), float(f.get("threshold") or 0)),
             _verdict(f), svg.sparkline(f.get("reference") or [], f.get("current") or [],
                                        drifted=bool(f.get("drifted")))]
            for f in sorted(features, key=lambda f: (not f.get("drifted"), str(f.get("name"))))]
    body = [
        html.banner(headline, detail, tone),
        html.facts([("Predictions in the window", number(data.get("samples"))),
                    ("Drift share", f"{number(share)} / {number(limit)}"),
                    ("Features drifted", f"{len(drifted)} of {len(judged)}"),
                    ("Reference", data.get("modelVersion")), ("Window", data.get("window")),
                    ("Checks in a row", f"{data.get('consecutive')} / {data.get('consecutiveNeeded')}")]),
        html.section("Features", html.table(
            ["Feature", "Method", "Statistic", "Threshold", "", "Verdict", "Reference · current"], rows,
            numeric=(2, 3))),
        '<p class="legend">Bars are shares of each side\'s values per bin:<span class="sw" '
        f'style="background:{svg.REF}"></span>reference (training)<span class="sw" '
        f'style="background:{svg.CUR}"></span>current<span class="sw" style="background:{svg.BAD}"></span>'
        "current, drifted</p>",
    ]
    if prediction:
        body.append(html.section("Prediction drift",
                                 f'<div class="cards">{_card("predictions", prediction)}</div>'))
    body.append(html.section("Per feature", '<div class="cards">'
                             + "".join(_card(str(f.get("name")), f) for f in sorted(
                                 features, key=lambda f: (not f.get("drifted"), str(f.get("name")))))
                             + "</div>"))
    perf = data.get("performance")
    if perf:
        body.append(html.section("Live performance", html.facts([
            ("Metric", perf.get("metric")), ("Live", number(perf.get("value"))),
            ("At training", number(perf.get("reference"))), ("Labels", number(perf.get("labels"))),
            ("Degraded", "yes" if perf.get("degraded") else "no")])))
    footer = (f"{e(data.get('generator'))} · DriftPolicy {e(data.get('namespace'))}/{e(data.get('policy'))} "
              "· statistics on the reference bins frozen at training time; missing values are counted apart "
              "and move no statistic · the same data as JSON: the .json object next to this file")
    return html.page(title=f"Drift report: {data.get('policy')}",
                     subtitle=f"Deployment {data.get('deployment')} · reference {data.get('modelVersion')} · "
                              f"checked {when} over the last {data.get('window')}",
                     body=body, footer=footer)
