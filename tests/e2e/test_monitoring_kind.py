"""manifests/monitoring against a real Prometheus on kind (`make kind-monitoring`).

`images/kind/cluster.sh monitoring` installs the Prometheus Operator (its CRDs from its Go module,
manifests/overlays/kind-prometheus) and a Prometheus that selects the bundle; this test applies the
bundle as a user would (`kubectl apply -k manifests/monitoring`), serves a model with the in-cluster
operator under traffic, rolls a failing canary back, and asks Prometheus' HTTP API (through a
port-forward) whether:

* the operator's Service and the predictor pods are scraped targets, and up;
* the operator's gauges carry the namespace of the object they describe (not the operator's);
* every rule group is loaded and every rule evaluates without error;
* LoopwrightRolloutAborted fires for the rolled-back Deployment, and an operator restart neither
  resolves nor restarts it; LoopwrightPredictorErrors' condition holds for a predictor answering 5xx;
* every PromQL expression of the dashboard parses and runs, and returns data over the test's time
  range whenever the series it selects exist (the dashboard's variables list the test's objects);
* promtool accepts what the operator's and a predictor's /metrics really serve.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes.client import ApiException

from conftest import Kube
from e2e import deployment_support as lw
from operator_fixture import OPERATOR_NAMESPACE, Operator
from unit.test_monitoring import check_metrics, promtool

pytestmark = [pytest.mark.cluster, pytest.mark.monitoring, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "monitoring"
PROMETHEUS_NAMESPACE = "monitoring"
OPERATOR_POOL = "serviceMonitor/loopwright-system/loopwright-operator/0"
PREDICTOR_POOL = "podMonitor/loopwright-system/loopwright-predictors/0"
ROLLOUT = {"steps": [{"weight": 50, "pause": "30s"}],
           "analysis": {"interval": "3s", "failureLimit": 1, "minRequests": 10,
                        "metrics": {"errorRate": {"max": 0.05}}}}


@pytest.fixture(scope="module")
def prometheus(kube: Kube) -> Iterator[httpx.Client]:
    """The Prometheus of manifests/overlays/kind-prometheus, with the bundle applied; its HTTP API."""
    try:
        kube.custom.get_namespaced_custom_object("monitoring.coreos.com", "v1", PROMETHEUS_NAMESPACE,
                                                 "prometheuses", "loopwright")
    except ApiException as exc:
        if exc.status == 404:
            pytest.skip("no Prometheus in `monitoring`: `make kind-monitoring` installs it")
        raise
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(MONITORING))
    with kube.port_forward(PROMETHEUS_NAMESPACE, "svc/prometheus-operated", 9090) as address, \
            httpx.Client(base_url=f"http://{address}/api/v1", timeout=30) as client:
        yield client


def _api(prometheus: httpx.Client, path: str, **params: Any) -> Any:
    """GET one Prometheus API endpoint; its `data`, after asserting the call succeeded."""
    response = prometheus.get(path, params=params)
    body = response.json()
    assert response.status_code == 200, (path, params, body)
    assert body["status"] == "success", (path, params, body)
    return body["data"]


def _targets(prometheus: httpx.Client, pool: str, namespace: str) -> list[dict[str, Any]]:
    active = _api(prometheus, "/targets", state="active")["activeTargets"]
    return [t for t in active if t["scrapePool"] == pool and t["labels"].get("namespace") == namespace]


def _up(kube: Kube, prometheus: httpx.Client, pool: str, namespace: str) -> list[dict[str, Any]]:
    """The pool's targets in `namespace` once one is up (the bundle's configuration reaches
    Prometheus through a Secret volume, so a new monitor takes up to a minute or two)."""
    def probe() -> list[dict[str, Any]] | None:
        found = _targets(prometheus, pool, namespace)
        return found if any(t["health"] == "up" for t in found) else None

    try:
        found: list[dict[str, Any]] = kube.wait(probe, timeout=240, what=f"a target of {pool} up", interval=3)
    except BaseException:
        print(json.dumps(_api(prometheus, "/targets", state="active"), indent=1)[:8000])
        raise
    return found


def _alerts(prometheus: httpx.Client, alertname: str, state: str, /, **labels: str) -> list[dict[str, Any]]:
    """The active alerts called `alertname` in `state` whose labels include `labels`."""
    return [a for a in _api(prometheus, "/alerts")["alerts"] if a["labels"]["alertname"] == alertname
            and a["state"] == state and labels.items() <= a["labels"].items()]


def _expressions(namespace: str, deployment: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard query, its variables set to the test's objects."""
    dashboard = json.loads((MONITORING / "loopwright-dashboard.json").read_text())
    variables = {"$namespace": namespace, "$deployment": deployment}
    return [(panel["title"], re.sub(r"\$[a-z]+", lambda m: variables[m.group()], target["expr"]))
            for panel in dashboard["panels"] for target in panel["targets"]]


_SELECTOR = re.compile(r"\b(loopwright_[a-z0-9_]+)\s*(\{[^}]*\})?")


def _has_series(prometheus: httpx.Client, expr: str, start: float, end: float) -> bool:
    """Whether every series selector in `expr` matches a series between start and end."""
    return all(_api(prometheus, "/series", **{"match[]": f"{name}{matchers}", "start": start, "end": end})
               for name, matchers in _SELECTOR.findall(expr))


def test_prometheus_scrapes_the_loop_loads_the_rules_and_fires_an_alert(
    kube: Kube, s3: Any, namespace: str, operator: Operator, prometheus: httpx.Client,
) -> None:
    promtool()  # skips now, not after the cluster work, when promtool is missing (make promtool)
    started = time.time()
    client = lw.serve_under_traffic(kube, s3, namespace, model="churn", rollout=ROLLOUT, seconds=600)

    # Scraped: the operator through its Service, each predictor pod of the test's namespace.
    (operator_target,) = _up(kube, prometheus, OPERATOR_POOL, OPERATOR_NAMESPACE)
    predictors = _up(kube, prometheus, PREDICTOR_POOL, namespace)
    print(f"targets up after {time.time() - started:.0f} s: operator {operator_target['scrapeUrl']}, "
          f"predictors {[t['scrapeUrl'] for t in predictors]}")

    # A failing canary is rolled back: the alert on rolled-back Deployments fires.
    lw.register(kube, s3, namespace, model="churn", version=2, kind="erroring")
    lw.wait_phase(kube, namespace, "churn", "RolledBack", timeout=240)
    rolled_back = time.time()

    def firing() -> list[dict[str, Any]]:
        return _alerts(prometheus, "LoopwrightRolloutAborted", "firing", namespace=namespace, name="churn")

    (alert,) = kube.wait(firing, timeout=180, what="LoopwrightRolloutAborted firing", interval=3)
    print(f"LoopwrightRolloutAborted firing {time.time() - rolled_back:.0f} s after the rollback: "
          f"{alert['annotations']['summary']}")
    assert "pod" not in alert["labels"]  # about the Deployment, not the operator pod that restates it

    # The alert outlives an operator restart: same alert, same activeAt, once the new pod is scraped.
    before = operator.pod().metadata.name
    operator.restart(kill=True)
    after = operator.pod().metadata.name
    query = f'loopwright_deployment_phase_info{{namespace="{namespace}", pod="{after}"}}'
    kube.wait(lambda: _api(prometheus, "/query", query=query)["result"], timeout=120,
              what=f"the gauges of the new operator pod {after} scraped", interval=3)
    (still,) = firing()
    assert still["activeAt"] == alert["activeAt"], (alert, still)
    print(f"operator {before} -> {after}: LoopwrightRolloutAborted still firing since {still['activeAt']}")

    # A predictor answering 5xx to every request: LoopwrightPredictorErrors' condition holds (it is
    # pending: it fires after 5 minutes of that, which this test does not wait for).
    kube.custom.create_namespaced_custom_object(lw.GROUP, lw.VERSION, namespace, "deployments", lw.deployment(
        "broken", model="churn", version=2, rollout=ROLLOUT))
    lw.wait_serving(kube, namespace, "broken", timeout=120)
    broken = lw.start_client(kube, namespace, service="broken", model="churn", seconds=300,
                             name="client-broken")

    errors_scraped = ("loopwright_predictor_requests_total"
                      f'{{namespace="{namespace}", pod=~"broken-.*", code="500"}}')
    kube.wait(lambda: _api(prometheus, "/query", query=errors_scraped)["result"], timeout=120,
              what="the broken predictor's 500s scraped", interval=3)

    def pending() -> list[dict[str, Any]]:
        return _alerts(prometheus, "LoopwrightPredictorErrors", "pending", namespace=namespace, version="2")

    errors = kube.wait(pending, timeout=180, what="LoopwrightPredictorErrors pending", interval=3)
    print(f"LoopwrightPredictorErrors {errors[0]['state']}: {errors[0]['annotations']['summary']}")
    lw.stop_client(kube, namespace, broken)

    # The gauges describe the test's objects, by their own namespace (one series per object, once
    # the operator pods that restated them are aggregated away, as the dashboard and alerts do);
    # the operator is scraped every 30 s, so "broken" may be a scrape away.
    query = ("max without (instance, pod, container, endpoint, job, service) "
             f'(loopwright_deployment_stable_version{{namespace="{namespace}"}})')

    def served() -> list[tuple[str, str]]:
        result = _api(prometheus, "/query", query=query)["result"]
        return sorted((s["metric"]["name"], s["value"][1]) for s in result)

    try:
        kube.wait(lambda: served() == [("broken", "2"), ("churn", "1")], timeout=90,
                  what="the stable versions of both Deployments", interval=3)
    finally:
        print(f"stable versions by Deployment: {served()}")

    # Every rule loaded, evaluated, and healthy.
    shipped = yaml.safe_load((MONITORING / "alerts.yaml").read_text())["spec"]["groups"]
    def evaluated() -> list[dict[str, Any]] | None:
        groups: list[dict[str, Any]] = _api(prometheus, "/rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return groups if rules and all(r["health"] != "unknown" for r in rules) else None

    groups = kube.wait(evaluated, timeout=60, what="every rule evaluated", interval=2)
    assert sorted(g["name"] for g in groups) == sorted(g["name"] for g in shipped)
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) == sum(len(g["rules"]) for g in shipped)
    unhealthy = [(r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not unhealthy, unhealthy
    print(f"rules: {len(groups)} groups, {len(rules)} rules, all ok")

    # The dashboard: its variables list the test's objects; every query runs, and shows data where
    # the series it reads exist (the canary's appeared and went; drift and training have none here).
    assert namespace in _api(prometheus, "/label/namespace/values",
                             **{"match[]": "loopwright_deployment_stable_version"})
    assert "churn" in _api(prometheus, "/label/name/values",
                           **{"match[]": f'loopwright_deployment_stable_version{{namespace="{namespace}"}}'})
    shown, empty = [], []
    for title, expr in _expressions(namespace, "churn"):
        def series(expr: str = expr) -> list[Any]:
            found: list[Any] = _api(prometheus, "/query_range", query=expr, start=started, end=time.time(),
                                    step=5)["result"]
            return found

        if _has_series(prometheus, expr, started, time.time()):
            # A rate needs two scrapes of a series: the newest series may be a scrape short yet.
            kube.wait(series, timeout=60, what=f"data in panel {title!r}: {expr}", interval=5)
        (shown if series() else empty).append(title)
    print(f"dashboard queries with data: {sorted(set(shown))}; without (no such series here): "
          f"{sorted(set(empty) - set(shown))}; to picture them (tests/report_samples/dashboard.py): "
          f"{namespace} churn {started:.0f} {time.time():.0f}")
    # A rolled-back Deployment is Stalled (kstatus: it waits for a new version or a human).
    for needed in ("Stable and canary versions", "Aliases (registry)", "Canary weight", "Analysis verdicts",
                   "Analysis values", "Rollout phase", "Prediction latency", "Requests and errors",
                   "Objects that need a human (Stalled)"):
        assert needed in shown, f"panel {needed!r} shows nothing"

    # promtool on what the pods really serve.
    with kube.port_forward(OPERATOR_NAMESPACE, f"pod/{operator.pod().metadata.name}", 8000) as address:
        check_metrics(httpx.get(f"http://{address}/metrics", timeout=10).text)
    pods = kube.core.list_namespaced_pod(namespace, label_selector="loopwright.dev/deployment=churn").items
    pod = pods[0]
    with kube.port_forward(namespace, f"pod/{pod.metadata.name}", 8080) as address:
        check_metrics(httpx.get(f"http://{address}/metrics", timeout=10).text)
    lw.stop_client(kube, namespace, client)
