"""The drift report of a check: its data, its self-contained HTML, the status that records it."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

from fake_api import NS, FakeApi
from loopwright.api.driftpolicy import DriftPolicyStatus
from loopwright.core.drift import check
from loopwright.operator.controllers.driftpolicy import reads
from loopwright.operator.runtime.client import EVENTS
from loopwright.reports import drift as report
from loopwright.reports import html
from unit.test_drift_check import NOW, PROFILE, SAME, SHIFTED, _counts, _evaluate, _spec


class _Tags(HTMLParser):
    """Every tag and attribute of a page, to prove it loads nothing from anywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _data(counts=None, **extra):
    spec = _spec()
    counts = counts or _counts(x=SHIFTED, y=SHIFTED)
    outcome = _evaluate(spec, counts, check.Previous(consecutive=1))
    return report.build(
        spec=spec,
        outcome=outcome,
        profile=PROFILE,
        counts=counts,
        policy="iris",
        namespace="ml",
        deployment="iris",
        model_version="iris-v3",
        time=NOW,
        retrain={"pipeline": "iris", "token": "iris-1767268800", "trigger": "Drift"},
        **extra,
    )


def test_the_data_holds_both_histograms_and_the_verdict_of_every_feature():
    data = _data()
    assert data["kind"] == "DriftReport"
    assert data["drifted"] is True
    assert data["confirmed"] is True
    x = next(f for f in data["features"] if f["name"] == "x")
    assert x["reference"] == [250, 250, 250, 250]
    assert x["current"] == SHIFTED
    assert x["bins"] == ["< -1", "-1 to 0", "0 to 1", "≥ 1"]
    assert x["drifted"] is True
    assert x["statistic"] > x["threshold"] == 0.2
    c = next(f for f in data["features"] if f["name"] == "c")
    assert c["bins"] == ["a", "b", "(other)"]
    assert data["prediction"]["bins"] == ["0", "1", "(other)"]
    json.dumps(data, allow_nan=False)  # the JSON twin is plain JSON


def test_the_page_is_self_contained_and_tells_the_verdict_first():
    page = report.render(_data())
    parser = _Tags()
    parser.feed(page)
    tags = {t for t, _ in parser.tags}
    assert "script" not in tags
    assert not any(k in ("src", "href") for _, attrs in parser.tags for k in attrs)  # nothing to fetch
    assert "<title>Drift report: iris</title>" in page
    banner = re.search(r'<div class="banner bad"><strong>(.*?)</strong><br>(.*?)</div>', page)
    assert banner is not None
    assert banner.group(1) == "Drift confirmed: 2 of 3 features drifted"
    assert (
        "requested a retrain of TrainingPipeline iris (request iris-1767268800, trigger Drift)"
        in banner.group(2)
    )
    # One histogram per feature and one for the predictions, each with reference and current bars.
    assert page.count('aria-label="x: reference against current"') == 1
    assert page.count('<svg role="img"') == 4
    assert "psi " in page
    assert "&lt; -1" in page


def test_no_drift_and_names_are_escaped():
    spec = _spec()
    counts = _counts(x=SAME)
    outcome = _evaluate(spec, counts)
    data = report.build(
        spec=spec,
        outcome=outcome,
        profile=PROFILE,
        counts=counts,
        policy="<b>p</b>",
        namespace="ml",
        deployment="iris",
        model_version="iris-v3",
        time=NOW,
        retrain=None,
    )
    page = report.render(data)
    assert '<div class="banner ok"><strong>No drift: 0 of 3 features drifted</strong>' in page
    assert "<b>p</b>" not in page
    assert "&lt;b&gt;p&lt;/b&gt;" in page


def test_reports_go_next_to_the_models_runs_with_a_json_twin():
    uri = report.report_uri(bucket="lw", namespace="ml", model="iris", policy="watch", time=NOW)
    assert uri == "s3://lw/models/ml/iris/drift/watch/20260101T120000Z.html"
    assert html.json_twin(uri) == "s3://lw/models/ml/iris/drift/watch/20260101T120000Z.json"


def test_status_records_the_report_and_keeps_the_last_checks_in_brief():
    spec = _spec()
    outcome = _evaluate(spec, _counts(x=SHIFTED, y=SHIFTED), check.Previous(consecutive=1))
    previous = [
        {"time": "2026-01-01T11:59:00Z", "modelVersion": "iris-v3", "samples": 400, "drifted": False}
    ] * 10
    fields = check.status(
        outcome,
        reference="iris-v3",
        now=NOW,
        retrain_token="iris-1",
        retrain_trigger=outcome.retrain,
        report_uri="s3://lw/r.html",
        previous_checks=previous,
    )
    assert fields["reportUri"] == "s3://lw/r.html"
    assert fields["lastRetrainReportUri"] == "s3://lw/r.html"
    assert len(fields["checks"]) == 10
    assert fields["checks"][0] == {
        "time": "2026-01-01T12:00:00Z",
        "modelVersion": "iris-v3",
        "samples": 400,
        "drifted": True,
        "driftShare": fields["driftShare"],
        "driftedFeatures": ["x", "y"],
        "predictionDrifted": False,
        "reportUri": "s3://lw/r.html",
    }
    DriftPolicyStatus.model_validate({k: v for k, v in fields.items() if v is not None})
    few = _evaluate(spec, _counts(x=[1, 1, 1, 1]))
    brief = check.status(few, reference="iris-v3", now=NOW, retrain_token=None)
    assert "reportUri" not in brief
    assert "drifted" not in brief["checks"][0]  # no verdict


def test_the_controller_writes_the_page_and_its_twin(tmp_path, monkeypatch):
    api = FakeApi()
    policy = {"apiVersion": "loopwright.dev/v1alpha1", "kind": "DriftPolicy",
              "metadata": {"name": "iris", "namespace": NS, "uid": "u"}}
    uri = str(tmp_path / "r.html")
    assert api.run(reads.write_report(api.context(), policy, data=_data(), uri=uri)) == uri
    assert (tmp_path / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert json.loads((tmp_path / "r.json").read_text())["policy"] == "iris"
    # A refused write is a Warning Event and no URI in the status, never a failed check.
    monkeypatch.setattr(
        reads.storage,
        "put_bytes",
        lambda *_a, **_k: (_ for _ in ()).throw(reads.storage.AccessDeniedError("no")),
    )
    assert api.run(reads.write_report(api.context(), policy, data=_data(), uri=uri)) is None
    assert [e["reason"] for e in api.all(EVENTS).values()] == ["ReportFailed"]
