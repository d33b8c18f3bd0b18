"""manifests/monitoring against what is exported: every series an alert or a dashboard panel reads
exists (operator and predictor), with the labels it filters and groups on; names follow Prometheus'
conventions; the gauges restate each object's status. promtool checks the rules, unit-tests the loop's
alerts, and checks what the operator and a predictor serve on /metrics when it is on PATH or in
LOOPWRIGHT_PROMTOOL (`make test` builds it and sets that)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from sklearn.linear_model import LogisticRegression

from loopwright.core import telemetry
from loopwright.operator import metrics
from loopwright.operator import telemetry as exported
from loopwright.operator.metrics import REGISTRY
from loopwright.operator.telemetry import LoopCollector
from unit.test_manifests import image_versions
from unit.test_predictor import _app, _served

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "monitoring"
TARGET_LABELS = {"namespace", "pod", "container", "instance", "job", "service", "endpoint", "le"}
"""Labels Prometheus adds to a scraped series (PodMonitor/ServiceMonitor targets), and le of buckets."""

T0, T1 = "2026-12-02T10:00:00Z", "2026-12-02T10:03:20Z"
OBJECTS: list[tuple[str, dict[str, Any]]] = [
    ("Deployment", {"metadata": {"namespace": "ml", "name": "churn"}, "spec": {"model": "churn"}, "status": {
        "phase": "Progressing", "rejectedVersions": [2],
        "stable": {"version": 3, "modelVersion": "churn-v3", "readyReplicas": 2},
        "canary": {"version": 4, "modelVersion": "churn-v4", "readyReplicas": 1, "weight": 50,
                   "desiredWeight": 50},
        "analysis": {"failures": 1, "results": [{"metric": "errorRate", "value": 0.01, "verdict": "Pass"}]},
        "conditions": [{"type": "Reconciling", "status": "True", "reason": "CanaryStep"},
                       {"type": "Stalled", "status": "False", "reason": "NotStalled"}]}}),
    ("ModelVersion", {"metadata": {"namespace": "ml", "name": "churn-v3"},
                      "spec": {"model": "churn", "version": 3},
                      "status": {"phase": "Validated", "aliases": ["production"]}}),
    ("TrainingPipeline", {"metadata": {"namespace": "ml", "name": "churn"},
                          "spec": {"model": {"name": "churn"}},
                          "status": {"runs": [{"id": 2, "phase": "Running"},
                                              {"id": 1, "phase": "Failed", "startTime": T0,
                                               "completionTime": T1}]}}),
    ("DriftPolicy", {"metadata": {"namespace": "ml", "name": "churn-watch"},
                     "spec": {"deploymentRef": {"name": "churn"}},
                     "status": {"samples": 900, "driftShare": 0.5,
                                "features": [{"name": "tenure", "method": "psi", "statistic": 0.4,
                                              "threshold": 0.2, "drifted": True}],
                                "prediction": {"method": "psi", "statistic": 0.1, "threshold": 0.2,
                                               "drifted": False},
                                "performance": {"metric": "accuracy", "value": 0.8, "degraded": True},
                                "conditions": [
                                    {"type": "DriftDetected", "status": "True", "reason": "DriftConfirmed"},
                                    {"type": "PerformanceDegraded", "status": "True", "reason": "X"}]}}),
]


def _exposition(registry: Any) -> dict[str, set[str]]:
    """Sample name -> label names, from a registry or a predictor's rendered /metrics."""
    from prometheus_client.exposition import generate_latest  # noqa: PLC0415

    text = registry if isinstance(registry, str) else generate_latest(registry).decode()
    out: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


@functools.cache
def _exported() -> dict[str, set[str]]:
    with contextlib.suppress(RuntimeError), metrics.reconcile(kind="Dataset", handler="h"):
        raise RuntimeError("an error, so the error counter has a sample")
    collector = LoopCollector()
    for kind, obj in OBJECTS:
        collector.observe(kind, obj)
    registry = CollectorRegistry()
    registry.register(collector)
    app = _app(_served(LogisticRegression()))
    app.plane.served.metrics.observe_request(code=200, seconds=0.001)  # type: ignore[union-attr]
    text = app.plane.served.metrics.render().decode()  # type: ignore[union-attr]
    return {**_exposition(REGISTRY), **_exposition(registry), **_exposition(text)}


def _expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    out = [(f"alert {r['alert']}", r["expr"]) for g in rules["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads((MONITORING / "loopwright-dashboard.json").read_text())
    out += [(f"panel {p['title']}", t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    out += [(f"variable {v['name']}", v["query"]) for v in dashboard["templating"]["list"]
            if v["type"] == "query"]
    return out


_SELECTOR = re.compile(r"\b(loopwright_[a-z0-9_]+)\s*(\{[^}]*\})?")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


@pytest.mark.parametrize(("where", "expr"), _expressions())
def test_every_series_read_is_exported_with_its_labels(where: str, expr: str) -> None:
    exported_names = _exported()
    selectors = _SELECTOR.findall(expr)
    assert selectors, f"{where}: reads no Loopwright series"
    used: set[str] = set()
    for name, matchers in selectors:
        assert name in exported_names, f"{where}: {name} is not exported"
        labels = set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers or ""))
        missing = labels - exported_names[name] - TARGET_LABELS
        assert not missing, f"{where}: {name} has no label {missing}"
        used |= exported_names[name]
    for group in _GROUPING.findall(expr):
        labels = {label.strip() for label in group.split(",") if label.strip()}
        assert labels <= used | TARGET_LABELS, f"{where}: groups by {labels - used - TARGET_LABELS}"


def test_names_follow_prometheus_conventions() -> None:
    for name, doc in telemetry.METRICS.items():
        assert doc
        assert not name.endswith("_total"), f"{name}: a gauge must not end in _total"
    text = _app(_served(LogisticRegression())).plane.served.metrics.render().decode()  # type: ignore[union-attr]
    for registry in (REGISTRY, text):
        from prometheus_client.exposition import generate_latest  # noqa: PLC0415

        raw = registry if isinstance(registry, str) else generate_latest(registry).decode()
        for family in text_string_to_metric_families(raw):
            if family.type == "counter":
                assert all(s.name.endswith(("_total", "_created")) for s in family.samples), family.name


def test_the_gauges_restate_the_status() -> None:
    every = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for kind, obj in OBJECTS for s in telemetry.samples(kind, obj)}

    def value(metric: str, /, **labels: str) -> float:
        hits = [v for (n, ls), v in every.items()
                if n == f"loopwright_{metric}" and labels.items() <= dict(ls).items()]
        assert len(hits) == 1, (metric, labels, hits)
        return hits[0]

    assert value("deployment_stable_version", name="churn") == 3
    assert value("deployment_canary_version", name="churn") == 4
    assert value("deployment_canary_weight_ratio", name="churn") == 0.5
    assert value("deployment_phase_info", phase="Progressing") == 1
    assert value("deployment_analysis_verdict_info", metric="errorRate", verdict="Pass") == 1
    assert value("deployment_rejected_versions") == 1
    assert value("modelversion_alias_info", alias="production", version="3") == 1
    assert value("training_last_run_duration_seconds", name="churn") == 200
    assert value("training_last_run_failed") == 1
    assert value("training_runs_active") == 1
    assert value("drift_feature_statistic", feature="tenure", method="psi", deployment="churn") == 0.4
    assert value("drift_detected", name="churn-watch") == 1
    assert value("performance_degraded") == 1
    assert value("resource_reconciling", kind="Deployment", reason="CanaryStep") == 1
    assert value("resource_stalled", kind="Deployment") == 0


def test_a_deleted_object_takes_its_series_along() -> None:
    collector = LoopCollector()
    collector.observe(*OBJECTS[0])
    assert any(f.samples for f in collector.collect())
    collector.observe(OBJECTS[0][0], OBJECTS[0][1], deleted=True)
    assert list(collector.collect()) == []
    assert exported.COLLECTOR is not None  # the operator's own, registered on its /metrics


def test_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    generated = {f for g in kustomization["configMapGenerator"] for f in g["files"]}
    listed = set(kustomization["resources"]) | generated
    assert listed == {p.name for p in MONITORING.iterdir() if p.name != "kustomization.yaml"}
    kinds = {yaml.safe_load((MONITORING / r).read_text())["kind"] for r in kustomization["resources"]}
    assert kinds == {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_operator_series_keep_the_namespace_of_their_object() -> None:
    # The gauges restate objects of every namespace under a `namespace` label; a scrape without
    # honorLabels would rename it exported_namespace and stamp the operator's own namespace instead,
    # and every alert and panel filtering on namespace would see loopwright-system.
    labelled = {label for name, labels in _exported().items() if not name.startswith("loopwright_predictor_")
                for label in labels}
    monitor = yaml.safe_load((MONITORING / "operator-servicemonitor.yaml").read_text())
    assert "namespace" in labelled
    assert all(e.get("honorLabels") is True for e in monitor["spec"]["endpoints"])


def test_the_kind_prometheus_selects_the_bundle_and_runs_what_images_build() -> None:
    """manifests/overlays/kind-prometheus (make kind-monitoring): its Prometheus selects each object
    of the bundle by its labels and namespace, and every pod runs an image images/ builds, under the
    restricted Pod Security Standard its namespace enforces."""
    overlay = REPO / "manifests" / "overlays" / "kind-prometheus"
    docs = [d for f in sorted(overlay.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())
            if d and d["kind"] != "Kustomization"]
    (prometheus,) = (d["spec"] for d in docs if d["kind"] == "Prometheus")
    selectors = {"ServiceMonitor": "serviceMonitor", "PodMonitor": "podMonitor", "PrometheusRule": "rule"}
    for resource in yaml.safe_load((MONITORING / "kustomization.yaml").read_text())["resources"]:
        obj = yaml.safe_load((MONITORING / resource).read_text())
        key = selectors[obj["kind"]]
        assert prometheus[f"{key}Selector"]["matchLabels"].items() <= obj["metadata"]["labels"].items()
        assert prometheus[f"{key}NamespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": obj["metadata"]["namespace"]}
    versions = image_versions()
    assert prometheus["image"] == f"quay.io/prometheus/prometheus:{versions['PROMETHEUS_TAG']}"
    assert prometheus["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (deployment,) = (d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment")
    (container,) = deployment["containers"]
    operator = versions["PROMETHEUS_OPERATOR_VERSION"]
    assert container["image"] == f"quay.io/prometheus-operator/prometheus-operator:{operator}"
    assert (f"--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:{operator}"
            in container["args"])
    assert deployment["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    (namespace,) = (d for d in docs if d["kind"] == "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def promtool() -> str:
    """promtool's path: LOOPWRIGHT_PROMTOOL (`make test` builds it and sets it) or PATH; else skip."""
    found = os.environ.get("LOOPWRIGHT_PROMTOOL") or shutil.which("promtool")
    if not found:
        pytest.skip("promtool is not installed (`make promtool` builds it; LOOPWRIGHT_PROMTOOL=its path)")
    return found


def check_metrics(exposition: str) -> None:
    """`promtool check metrics` accepts a /metrics page: names, suffixes, units, help texts."""
    result = subprocess.run([promtool(), "check", "metrics"], input=exposition, capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["spec"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_what_the_operator_and_a_predictor_serve() -> None:
    from prometheus_client.exposition import generate_latest  # noqa: PLC0415

    _exported()  # an error counted, so that every family of the operator's registry has a sample
    for kind, obj in OBJECTS:  # the operator's own collector, as its watches would fill it
        exported.COLLECTOR.observe(kind, obj)
    try:
        check_metrics(generate_latest(REGISTRY).decode())  # the body of the operator's /metrics
    finally:
        for kind, obj in OBJECTS:
            exported.COLLECTOR.observe(kind, obj, deleted=True)
    app = _app(_served(LogisticRegression()))
    app.plane.served.metrics.observe_request(code=500, seconds=0.002)  # type: ignore[union-attr]
    check_metrics(app.plane.served.metrics.render().decode())  # type: ignore[union-attr]


OPERATOR_TARGET = {"job": "loopwright-operator", "service": "loopwright-operator", "endpoint": "metrics",
                   "container": "operator", "namespace": "loopwright-system"}
"""The operator pod's target labels (a ServiceMonitor scrape); its samples' own namespace wins
(honorLabels), the pod and instance change with each restart."""


def _stalled(kind: str, name: str, reason: str, **status: Any) -> tuple[str, dict[str, Any]]:
    spec = {"model": name} if kind == "Deployment" else {"model": {"name": name}}
    conditions = [{"type": "Stalled", "status": "True", "reason": reason}]
    return kind, {"metadata": {"namespace": "ml", "name": name}, "spec": spec,
                  "status": {**status, "conditions": conditions}}


STALLED_OBJECTS = [
    _stalled("Deployment", "churn", "RolledBack", phase="RolledBack", stable={"version": 3}),
    _stalled("Deployment", "fraud", "ModelVersionMissing", phase="Stable", stable={"version": 5}),
    _stalled("TrainingPipeline", "churn", "ValidationFailed"),
]


def _rendered(template: str, labels: dict[str, str]) -> str:
    """An annotation as Prometheus renders it: these templates only read `$labels`."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), template)


def test_promtool_unit_tests_the_loop_alerts_across_an_operator_restart(tmp_path: Path) -> None:
    """The operator's real series for a rolled-back canary, a Deployment whose served version was
    deleted and a pipeline whose data fails validation, scraped from one operator pod for 5 minutes
    and from its replacement after a missed scrape: LoopwrightRolloutAborted fires at once and keeps
    firing through the restart; LoopwrightStalled fires after its 15 minutes (its timer not reset by
    the restart) for the other two, not a second time for the rollback."""
    spec = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    rules = {r["alert"]: r for g in spec["groups"] for r in g["rules"]}
    series = []
    for kind, obj in STALLED_OBJECTS:
        for sample in telemetry.samples(kind, obj):
            value = f"{sample.value:g}"
            for pod, values in (("loopwright-operator-a", f"{value}x10 stale"),
                                ("loopwright-operator-b", f"_x12 {value}x40")):
                labels = {**OPERATOR_TARGET, "instance": f"{pod}:8080", "pod": pod, **sample.labels}
                selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
                series.append({"series": f"{sample.name}{{{selector}}}", "values": values})

    def expected(alert: str, labels: dict[str, str]) -> dict[str, Any]:
        return {"exp_labels": {**labels, **rules[alert]["labels"]},
                "exp_annotations": {k: _rendered(v, labels) for k, v in rules[alert]["annotations"].items()}}

    aborted = expected("LoopwrightRolloutAborted",
                       {"namespace": "ml", "name": "churn", "model": "churn", "phase": "RolledBack"})
    stalled = [expected("LoopwrightStalled", {
        "kind": kind, "namespace": "ml", "name": obj["metadata"]["name"],
        "reason": obj["status"]["conditions"][0]["reason"]}) for kind, obj in STALLED_OBJECTS[1:]]
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "30s", "tests": [{
        "interval": "30s", "input_series": series,
        "alert_rule_test": [
            {"eval_time": "1m", "alertname": "LoopwrightRolloutAborted", "exp_alerts": [aborted]},
            {"eval_time": "14m", "alertname": "LoopwrightStalled", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "LoopwrightRolloutAborted", "exp_alerts": [aborted]},
            {"eval_time": "20m", "alertname": "LoopwrightStalled", "exp_alerts": stalled},
        ]}]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = subprocess.run([promtool(), "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
